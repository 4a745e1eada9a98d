"""Who may do what: global admins see everything; everyone else acts through project membership."""

from __future__ import annotations

from typing import Any

from .models import ROLE_RANK, Membership, Project, ProjectRole

ADMIN_GROUP = "admin"
_UNKNOWN = object()
GLOBAL_ROLE_GROUPS = (ADMIN_GROUP, "reviewer", "annotator")


def is_global_admin(user: Any) -> bool:
    """Superusers and members of the `admin` group administer every project."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_flywheel_is_admin", None)
    if cached is None:
        cached = user.groups.filter(name=ADMIN_GROUP).exists()
        user._flywheel_is_admin = cached
    return cached


def project_role(user: Any, project: Project) -> ProjectRole | None:
    """Return the user's role in the project, ADMIN for global admins, None for non-members."""
    if is_global_admin(user):
        return ProjectRole.ADMIN
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    # A project read by `project_get_for_user` carries the reader's membership role already.
    role = getattr(project, "member_role_of", {}).get(user.pk, _UNKNOWN)
    if role is _UNKNOWN:
        role = Membership.objects.filter(project_id=project.pk, user_id=user.pk).values_list("role", flat=True).first()
    return ProjectRole(role) if role else None


def role_allows(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[ProjectRole(role)] >= ROLE_RANK[ProjectRole(minimum)]
