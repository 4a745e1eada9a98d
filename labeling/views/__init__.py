"""Server-rendered pages of the labeling room, one module per area; urls.py routes to the names below."""

from .annotate import annotate, annotate_heartbeat, annotate_skip, annotate_submit, annotate_undo
from .common import project_view
from .llm_review import llm_review, llm_review_act
from .pages import (
    ERROR_NO_FILE,
    ERROR_UNKNOWN_EXPORT_FORMAT,
    annotation_review,
    example_browse,
    import_job,
    import_report,
    import_upload,
    member_list,
    project_export,
    project_list,
    project_overview,
)
from .reviewing import adjudicate, gold_list, project_settings, quality, queue_overview

__all__ = [
    "adjudicate",
    "annotate",
    "annotate_heartbeat",
    "annotate_skip",
    "annotate_submit",
    "annotate_undo",
    "gold_list",
    "llm_review",
    "llm_review_act",
    "project_settings",
    "quality",
    "queue_overview",
    "ERROR_NO_FILE",
    "ERROR_UNKNOWN_EXPORT_FORMAT",
    "annotation_review",
    "example_browse",
    "import_job",
    "import_report",
    "import_upload",
    "member_list",
    "project_export",
    "project_list",
    "project_overview",
    "project_view",
]
