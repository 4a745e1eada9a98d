"""The dashboard in one call: every series over one window, arranged for the charts, the tables and the tiles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from labeling.models import Project

from .series import (
    DAYS_DEFAULT,
    PROVENANCES,
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

LLM_KEYS = ("accepted", "corrected", "rejected", "auto")
PREDICTION_KEYS = ("served", "abstained", "low_confidence", "calls")


def dashboard_get(*, project: Project, days: int = DAYS_DEFAULT, now: datetime | None = None) -> Dashboard:
    """Read every dashboard series of the project over the last `days` local days, in a fixed number of queries."""
    window = window_get(days=days, now=now)
    labels = label_series(project=project, window=window)
    queue = queue_now(project=project)
    versions = model_history(project=project)
    llm = llm_agreement(project=project, window=window)
    people = annotator_throughput(project=project, window=window)
    predictions = prediction_series(project=project, window=window)
    provenance_keys = [key for key, _ in PROVENANCES]
    people_keys = [entry["key"] for entry in people["annotators"]]
    charts = {
        "days": [day.isoformat() for day in window.days],
        "labels": {
            "keys": [{"key": key, "name": name} for key, name in PROVENANCES],
            "series": labels,
            "any": any(any(values) for values in labels.values()),
        },
        "queue": {"now": queue["by_reason"], "history": queue_history(project=project, window=window)},
        "models": versions,
        "llm": {**llm, "any": any(any(llm[key]) for key in LLM_KEYS)},
        "annotators": {"annotators": people["annotators"], "series": people["series"], "any": bool(people_keys)},
        "predictions": {**predictions, "any": any(predictions["calls"])},
    }
    tables = {
        "labels": table_rows(window, labels, provenance_keys),
        "llm": table_rows(window, llm, LLM_KEYS, extra=("share",)),
        "annotators": table_rows(window, people["series"], people_keys),
        "pace": people["pace"],
        "pace_days": people["pace_days"],
        "predictions": table_rows(window, predictions, PREDICTION_KEYS, extra=("mean_ms",)),
    }
    tiles = {
        "labels_total": label_total(project=project),
        "labels_today": sum(labels[key][-1] for key in provenance_keys if key != "llm_pending"),
        "queue_ready": queue["ready"],
        "queue_leased": queue["leased"],
        "queue_done": queue["done"],
        "published": published_get(project=project),
        "predictions_today": predictions["served"][-1],
    }
    return Dashboard(charts=charts, tables=tables, tiles=tiles)


def table_rows(
    window: Window, series: dict[str, list], keys: Sequence[str], *, extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Return one table row per day that has a non-zero count, newest first, with the `extra` series beside them."""
    rows = []
    for position in range(len(window.days) - 1, -1, -1):
        values = [series[key][position] for key in keys]
        if any(values):
            row = {"day": window.days[position], "values": values, "total": sum(values)}
            row.update({name: series[name][position] for name in extra})
            rows.append(row)
    return rows
