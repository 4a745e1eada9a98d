"""Import a CSV, JSON Lines or Label Studio file into a project, in this process, with progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling import services
from labeling.importing.formats import ImportFileError
from labeling.models import ImportFormat, ImportSource, JobState, Project


class Command(BaseCommand):
    help = "Import examples (and any labels they carry) into a project; re-importing adds only what is new."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="Project slug.")
        parser.add_argument("file", help="A .csv, .jsonl or Label Studio .json export.")
        parser.add_argument("--format", choices=ImportFormat.values, default=ImportFormat.AUTO)
        parser.add_argument("--text-field", help="Column holding the text (default: text, content, body, …).")
        parser.add_argument(
            "--time-field", help="Column holding the source timestamp (default: observed_at, timestamp, date, …)."
        )
        parser.add_argument("--label-field", help="Column holding an existing label (default: label, class, category).")
        parser.add_argument("--label-map", default="", help="Map values in the file to label names, e.g. 1=spam,0=ham.")
        parser.add_argument(
            "--create-labels", action="store_true", help="Add label names the project does not have yet."
        )
        parser.add_argument(
            "--unescape-html", action="store_true", help="Turn HTML entities and tags in the text into plain text."
        )
        parser.add_argument("--encoding", default="utf-8", help="The file's encoding (default utf-8).")
        parser.add_argument(
            "--ignore-labels",
            action="store_true",
            help="Import the text only; every new example is queued for labeling.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['project']!r}.")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        try:
            import_options = services.ImportOptions(
                format=options["format"],
                text_field=options["text_field"],
                time_field=options["time_field"],
                label_field=options["label_field"],
                label_map=services.parse_label_map(options["label_map"]),
                create_missing_labels=options["create_labels"],
                unescape_html=options["unescape_html"],
                encoding=options["encoding"],
                ignore_labels=options["ignore_labels"],
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        job = services.import_job_create(
            project=project, source=ImportSource.COMMAND, filename=path.name, options=import_options, path=path
        )
        interactive = sys.stderr.isatty()

        def show(progress_job: Any) -> None:
            if interactive:
                rows = progress_job.result.get("rows_read", 0)
                sys.stderr.write(f"\r{progress_job.progress:6.1%}  {rows:,} rows read")
                sys.stderr.flush()

        job = services.import_job_run(job_id=job.pk, on_progress=show)
        if interactive:
            sys.stderr.write("\n")
        job.refresh_from_db()
        for error in job.errors[:20]:
            where = f"line {error['line']}" if error.get("line") else "file"
            self.stderr.write(f"  {where}: {error['reason']}")
        if job.error_count > 20:
            self.stderr.write(f"  … and {job.error_count - 20:,} more")
        if job.report_path:
            self.stderr.write(f"Rejected rows, with reasons: {job.report_path}")
        if job.state != JobState.SUCCEEDED:
            raise CommandError(f"Import {job.pk} failed: {job.message}")
        self.stdout.write(f"Import {job.pk}: {job.message}")
