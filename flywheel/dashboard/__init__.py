"""The flywheel dashboard: series over time for the charts (`series`, `report`) and the next steps (`steps`).

Reads only; the rooms' own selectors and settings are reused where they exist.
"""

from .report import dashboard_get, table_rows
from .series import (
    DAYS_CHOICES,
    DAYS_DEFAULT,
    PROVENANCES,
    TOP_ANNOTATORS,
    Dashboard,
    Window,
    annotator_throughput,
    label_series,
    label_total,
    llm_agreement,
    model_history,
    prediction_series,
    published_get,
    queue_history,
    queue_now,
    window_get,
)
from .steps import ACTION, PROGRESS, TIP, Step, next_steps

__all__ = [
    "ACTION",
    "DAYS_CHOICES",
    "DAYS_DEFAULT",
    "PROGRESS",
    "PROVENANCES",
    "TIP",
    "TOP_ANNOTATORS",
    "Dashboard",
    "Step",
    "Window",
    "annotator_throughput",
    "dashboard_get",
    "label_series",
    "label_total",
    "llm_agreement",
    "model_history",
    "next_steps",
    "prediction_series",
    "published_get",
    "queue_history",
    "queue_now",
    "table_rows",
    "window_get",
]
