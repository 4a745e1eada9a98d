"""Reads for the labeling room, one module per area."""

from .projects import (
    ProjectAccessDenied,
    annotation_list,
    example_list,
    import_job_get,
    import_job_get_for_user,
    import_job_list,
    label_list,
    label_list_with_counts,
    member_list,
    member_role_get,
    project_counts,
    project_get_for_user,
    project_list_for_user,
    project_list_with_counts_for_user,
    project_list_with_labels_for_user,
)
from .queue import (
    annotation_count_today,
    lease_list,
    queue_composition,
    queue_item_labels,
    queue_progress,
)

__all__ = [
    "annotation_count_today",
    "lease_list",
    "queue_composition",
    "queue_item_labels",
    "queue_progress",
    "ProjectAccessDenied",
    "annotation_list",
    "example_list",
    "import_job_get",
    "import_job_get_for_user",
    "import_job_list",
    "label_list",
    "label_list_with_counts",
    "member_list",
    "member_role_get",
    "project_counts",
    "project_get_for_user",
    "project_list_for_user",
    "project_list_with_counts_for_user",
    "project_list_with_labels_for_user",
]
