"""Builders for labeling tests: run an import of given bytes synchronously through the job service."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from labeling import services
from labeling.models import ImportJob, ImportSource, Project


def run_import(project: Project, content: bytes | str, filename: str = "data.csv", **options: Any) -> ImportJob:
    """Store `content` as an upload and run its import job in this process (the worker's code path)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        path.write_bytes(data)
        job = services.import_job_create(
            project=project,
            source=ImportSource.COMMAND,
            filename=filename,
            options=services.ImportOptions(**options),
            path=path,
        )
    services.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job
