"""Create projects with their label schema; add members; issue and check API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from labeling import rows
from labeling.models import ROLE_RANK, ApiToken, Label, Membership, Project, ProjectRole
from labeling.permissions import ADMIN_GROUP, GLOBAL_ROLE_GROUPS

ERROR_SLUG_TAKEN = "A project with the slug {slug!r} already exists."
ERROR_BAD_SLUG = "A slug uses only letters, digits, hyphens and underscores (got {slug!r})."
ERROR_NO_NAME = "A project needs a name."
ERROR_DUPLICATE_LABEL = "The label {name!r} is listed twice."
ERROR_EMPTY_LABEL = "A label needs a name."
ERROR_BAD_ROLE = "Role must be one of annotator, reviewer, admin (got {role!r})."
ERROR_SLUG_TOO_LONG = "A slug has at most 64 characters (got {length})."
ERROR_NAME_TOO_LONG = "A project name has at most 200 characters (got {length})."
ERROR_LABEL_TOO_LONG = "A label name has at most 100 characters (got {length})."
TOKEN_PREFIX = "fw_"
# How stale `ApiToken.last_used_at` may get: one write a minute per token, not one per request.
TOKEN_USE_RESOLUTION_S = 60


class ProjectError(Exception):
    """A project, label or member request that cannot be carried out as asked."""


def project_create(
    *,
    slug: str,
    name: str,
    description: str = "",
    labels: list[dict[str, Any]] | None = None,
    created_by: Any = None,
) -> Project:
    """Create a project and its labels in one transaction; the first nine labels get keys 1–9."""
    slug = (slug or "").strip()
    try:
        validate_slug(slug)
    except ValidationError as exc:
        raise ProjectError(ERROR_BAD_SLUG.format(slug=slug)) from exc
    if len(slug) > 64:
        raise ProjectError(ERROR_SLUG_TOO_LONG.format(length=len(slug)))
    if not (name or "").strip():
        raise ProjectError(ERROR_NO_NAME)
    if len(name.strip()) > 200:
        raise ProjectError(ERROR_NAME_TOO_LONG.format(length=len(name.strip())))
    seen: set[str] = set()
    for label in labels or []:
        label_name = str(label.get("name") or "").strip()
        if not label_name:
            raise ProjectError(ERROR_EMPTY_LABEL)
        if len(label_name) > 100:
            raise ProjectError(ERROR_LABEL_TOO_LONG.format(length=len(label_name)))
        if label_name.casefold() in seen:
            raise ProjectError(ERROR_DUPLICATE_LABEL.format(name=label_name))
        seen.add(label_name.casefold())
    try:
        with transaction.atomic():
            project = Project.objects.create(
                slug=slug,
                name=name.strip(),
                description=description or "",
                created_by=created_by if getattr(created_by, "pk", None) else None,
            )
            Label.objects.bulk_create(
                Label(
                    project=project,
                    name=str(label["name"]).strip(),
                    description=str(label.get("description") or ""),
                    shortcut=str(label.get("shortcut") or (str(order + 1) if order < 9 else "")),
                    order=order,
                )
                for order, label in enumerate(labels or [])
            )
    except IntegrityError as exc:
        if Project.objects.filter(slug=slug).exists():
            raise ProjectError(ERROR_SLUG_TAKEN.format(slug=slug)) from exc
        raise
    return project


def member_add(*, project: Project, username: str, role: str, password: str | None = None) -> tuple[Membership, bool]:
    """Give a user a role in a project, creating the user when missing; return (membership, user_created)."""
    if role not in ProjectRole.values:
        raise ProjectError(ERROR_BAD_ROLE.format(role=role))
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(username=username)
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        elif created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
        user_groups_sync(user=user)
    return membership, created


def user_groups_sync(*, user: Any) -> None:
    """Put the user in the group of their highest project role (groups mirror roles for the admin site)."""
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in GLOBAL_ROLE_GROUPS}
    roles = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    if not roles:
        return
    highest = max(roles, key=lambda role: ROLE_RANK[ProjectRole(role)])
    if highest == ProjectRole.ADMIN:
        # A project admin is not a global admin: keep the global `admin` group for explicit grants.
        highest = ProjectRole.REVIEWER if ProjectRole.REVIEWER in roles else None
    for name, group in groups.items():
        if name == "admin":
            continue
        if name == highest:
            user.groups.add(group)
        else:
            user.groups.remove(group)


def api_token_create(*, user: Any, name: str = "") -> tuple[ApiToken, str]:
    """Create a token and return it with its plain value, which is not stored and cannot be shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:10], key_hash=hashlib.sha256(raw.encode()).hexdigest()
    )
    return token, raw


def api_token_authenticate(*, raw: str, now: datetime | None = None) -> Any:
    """Return the active user owning an unrevoked token, or None.

    One statement reads the token, its user and whether the user is a global admin (API requests are
    latency-bound, so the permission check that follows needs no second query); `last_used_at` is written
    at most once a minute.
    """
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = now or timezone.now()
    user_model = get_user_model()
    groups_through = user_model.groups.through._meta.db_table
    sql = f"""
        SELECT {rows.columns(user_model, "u")}, t.id,
               (t.last_used_at IS NULL OR t.last_used_at < %s),
               EXISTS (SELECT 1 FROM {groups_through} ug JOIN {Group._meta.db_table} g ON g.id = ug.group_id
                        WHERE ug.user_id = u.id AND g.name = %s)
          FROM {ApiToken._meta.db_table} t JOIN {user_model._meta.db_table} u ON u.id = t.user_id
         WHERE t.key_hash = %s AND t.revoked_at IS NULL"""
    stale_before = connection.ops.adapt_datetimefield_value(now - timedelta(seconds=TOKEN_USE_RESOLUTION_S))
    row = rows.fetch_one(sql, [stale_before, ADMIN_GROUP, digest])
    if row is None:
        return None
    user = rows.from_row(user_model, row)
    token_id, token_use_stale, is_admin = row[rows.width(user_model) :]
    if not user.is_active:
        return None
    user._flywheel_is_admin = bool(is_admin)
    if token_use_stale:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    return user
