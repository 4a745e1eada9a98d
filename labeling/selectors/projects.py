"""Reads for the labeling room: projects visible to a user, counts, jobs, examples, annotations."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404

from labeling import rows
from labeling.models import (
    LIVE_STATUSES,
    Annotation,
    Example,
    ImportJob,
    Label,
    Membership,
    Project,
    QueueItem,
    QueueState,
)
from labeling.permissions import is_global_admin, project_role, role_allows


class ProjectAccessDenied(Exception):
    """The user is a member of the project but their role is too low for this page or endpoint."""


def project_list_for_user(*, user: Any) -> QuerySet[Project]:
    """Projects the user may open: all of them for global admins, their memberships otherwise."""
    projects = Project.objects.all()
    if not is_global_admin(user):
        projects = projects.filter(memberships__user_id=user.pk)
    return projects.order_by("name")


def project_get_for_user(*, user: Any, slug: str, minimum_role: str) -> tuple[Project, str]:
    """Return the project and the user's role; Http404 for non-members, ProjectAccessDenied for low roles.

    The project and the user's membership come back in one statement: every page and endpoint starts here.
    """
    sql = f"""
        SELECT {rows.columns(Project, "p")}, m.role
          FROM {Project._meta.db_table} p
          LEFT JOIN {Membership._meta.db_table} m ON m.project_id = p.id AND m.user_id = %s
         WHERE p.slug = %s"""
    row = rows.fetch_one(sql, [getattr(user, "pk", None), slug])
    if row is None:
        raise Http404("No such project.")
    project = rows.from_row(Project, row)
    if getattr(user, "pk", None) is not None:
        project.member_role_of = {user.pk: row[-1]}
    return project, project_role_require(user=user, project=project, minimum_role=minimum_role)


def project_role_require(*, user: Any, project: Project, minimum_role: str) -> str:
    """Return the user's role in the project; Http404 for non-members, ProjectAccessDenied for low roles."""
    role = project_role(user, project)
    if role is None:
        raise Http404("No such project.")
    if not role_allows(role, minimum_role):
        raise ProjectAccessDenied(f"This needs the {minimum_role} role in {project.slug}.")
    return role


def example_get_for_user(*, user: Any, example_id: int, minimum_role: str) -> Example:
    """Return the example with its project, checking the user's role there in the same statement.

    Http404 when the example does not exist or the user is not a member; ProjectAccessDenied for low roles.
    """
    user_id = getattr(user, "pk", None)
    sql = f"""
        SELECT {rows.columns(Example, "e")}, {rows.columns(Project, "p")}, m.role
          FROM {Example._meta.db_table} e
          JOIN {Project._meta.db_table} p ON p.id = e.project_id
          LEFT JOIN {Membership._meta.db_table} m ON m.project_id = p.id AND m.user_id = %s
         WHERE e.id = %s"""
    row = rows.fetch_one(sql, [user_id, example_id])
    if row is None:
        raise Http404("No such example.")
    example = rows.from_row(Example, row)
    example.project = rows.from_row(Project, row[rows.width(Example) :])
    if user_id is not None:
        example.project.member_role_of = {user_id: row[-1]}
    project_role_require(user=user, project=example.project, minimum_role=minimum_role)
    return example


def project_counts(*, project: Project) -> dict[str, int]:
    """Count examples, labeled examples and queue slots still waiting for a label (ready or leased)."""
    examples = Example.objects.filter(project=project)
    labeled_filter = Exists(Annotation.objects.filter(example_id=OuterRef("pk"), status__in=LIVE_STATUSES))
    totals = examples.aggregate(total=Count("id"), labeled=Count("id", filter=Q(labeled_filter)))
    queued = QueueItem.objects.filter(project_id=project.pk, state__in=(QueueState.READY, QueueState.LEASED)).count()
    return {"examples": totals["total"], "labeled": totals["labeled"], "queued": queued}


def label_names(*, project: Project) -> list[str]:
    """The project's label names in display order (one bare statement: the claim endpoint sends them each time)."""
    with rows.cursor() as cursor:
        cursor.execute(
            f'SELECT name FROM {Label._meta.db_table} WHERE project_id = %s ORDER BY "order", name', [project.pk]
        )
        return [row[0] for row in cursor.fetchall()]


def label_list(*, project: Project) -> QuerySet[Label]:
    return Label.objects.filter(project=project).select_related("parent").order_by("order", "name")


def import_job_list(*, project: Project, limit: int = 20) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(project=project).select_related("created_by").order_by("-id")[:limit]


def import_job_get_for_user(*, user: Any, job_id: int, minimum_role: str) -> ImportJob:
    """Return a job the user may see; Http404 when the job or its project is not theirs."""
    job = ImportJob.objects.select_related("project", "created_by").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    project_get_for_user(user=user, slug=job.project.slug, minimum_role=minimum_role)
    return job


def example_list(*, project: Project, search: str = "", labeled: str = "") -> QuerySet[Example]:
    """Examples newest first by source time, with their annotations and labels prefetched."""
    examples = Example.objects.filter(project=project)
    if search:
        examples = examples.filter(text__icontains=search)
    if labeled in {"yes", "no"}:
        has_label = Exists(Annotation.objects.filter(example_id=OuterRef("pk"), status__in=LIVE_STATUSES))
        examples = examples.filter(has_label if labeled == "yes" else ~has_label)
    return examples.prefetch_related("annotations__label", "annotations__author").order_by("-observed_at", "-id")


def annotation_list(*, project: Project, kind: str = "") -> QuerySet[Annotation]:
    annotations = Annotation.objects.filter(example__project=project)
    if kind:
        annotations = annotations.filter(kind=kind)
    return annotations.select_related("example", "label", "author").order_by("-created_at", "-id")


def member_list(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")


def project_list_with_labels_for_user(*, user: Any) -> QuerySet[Project]:
    """Projects the user may open, with their labels (and each label's parent) prefetched in order."""
    labels = Label.objects.select_related("parent").order_by("order", "name")
    return project_list_for_user(user=user).prefetch_related(Prefetch("labels", queryset=labels))


def member_role_get(*, project: Project, username: str) -> str | None:
    """Return the role the named user holds in the project, or None when they are not a member."""
    return Membership.objects.filter(project=project, user__username=username).values_list("role", flat=True).first()


def project_list_with_counts_for_user(*, user: Any) -> QuerySet[Project]:
    """Projects the user may open, each annotated with example, labeled-example and label counts and the user's role."""
    examples = Example.objects.filter(project_id=OuterRef("pk")).order_by().values("project_id")
    labeled = examples.filter(Exists(Annotation.objects.filter(example_id=OuterRef("pk"), status__in=LIVE_STATUSES)))
    labels = Label.objects.filter(project_id=OuterRef("pk")).order_by().values("project_id")
    return project_list_for_user(user=user).annotate(
        example_count=Coalesce(Subquery(examples.annotate(n=Count("id")).values("n")), 0),
        labeled_count=Coalesce(Subquery(labeled.annotate(n=Count("id")).values("n")), 0),
        label_count=Coalesce(Subquery(labels.annotate(n=Count("id")).values("n")), 0),
        member_role=Subquery(Membership.objects.filter(project_id=OuterRef("pk"), user_id=user.pk).values("role")[:1]),
    )


def label_list_with_counts(*, project: Project) -> QuerySet[Label]:
    """The project's labels in display order, each annotated with its number of annotations."""
    return label_list(project=project).annotate(annotation_count=Count("annotations"))


def import_job_get(*, project: Project, job_id: int) -> ImportJob:
    """Return one import job of the project; Http404 when it belongs to another project or does not exist."""
    job = ImportJob.objects.select_related("created_by").filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404("No such import job.")
    return job


def example_get(*, project: Project, example_id: int) -> Example | None:
    """Return the project's example with this id, or None when it belongs elsewhere or does not exist."""
    return Example.objects.filter(project_id=project.pk, pk=example_id).first()
