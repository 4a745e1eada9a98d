"""Writes for the labeling room."""

from .exports import EXPORT_FORMATS, export_stream
from .imports import (
    ImportOptions,
    import_job_claim,
    import_job_create,
    import_job_enqueue,
    import_job_run,
    import_jobs_sweep,
    import_summary,
    parse_label_map,
)
from .projects import (
    ProjectError,
    api_token_authenticate,
    api_token_create,
    member_add,
    project_create,
    user_groups_sync,
)

__all__ = [
    "EXPORT_FORMATS",
    "ImportOptions",
    "ProjectError",
    "api_token_authenticate",
    "api_token_create",
    "export_stream",
    "import_job_claim",
    "import_job_create",
    "import_job_enqueue",
    "import_job_run",
    "import_jobs_sweep",
    "import_summary",
    "member_add",
    "parse_label_map",
    "project_create",
    "user_groups_sync",
]
