"""Orchestration of the data flywheel across apps: label → retrain → evaluate → gate → publish → rescore → queue.

The loop's steps arrive with the training and queue rooms; today it runs the import step only.
"""

from __future__ import annotations

from labeling import services
from labeling.models import ImportJob


def import_step(*, job: ImportJob) -> None:
    """Queue an import so the examples it brings join the flywheel."""
    services.import_job_enqueue(job=job)
