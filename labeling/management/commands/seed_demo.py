"""Create the YouTube spam demo project, import its bundled comments and make three demo logins.

Safe to run again: an existing project, its examples and existing users are left as they are, and the
passwords kept in `<data dir>/demo-passwords.json` are printed again.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import string
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Q

from labeling import services
from labeling.models import (
    Annotation,
    AnnotationKind,
    Example,
    ImportJob,
    ImportSource,
    JobState,
    Project,
    ProjectRole,
    QueueItem,
    QueueState,
)

DEMO_DIR = Path(__file__).resolve().parents[3] / "demo" / "youtube_spam"
DEMO_FILES = (
    "Youtube01-Psy.csv",
    "Youtube02-KatyPerry.csv",
    "Youtube03-LMFAO.csv",
    "Youtube04-Eminem.csv",
    "Youtube05-Shakira.csv",
)
PROJECT_SLUG = "youtube-spam"
PROJECT_NAME = "YouTube comment spam"
PROJECT_DESCRIPTION = (
    "Comments on five popular music videos from the YouTube Spam Collection "
    "(UCI Machine Learning Repository), each labelled spam or ham by its authors."
)
LABELS = [
    {"name": "spam", "description": "Promotes a channel, product or link instead of responding to the video"},
    {"name": "ham", "description": "A genuine comment about the video"},
]
IMPORT_OPTIONS = services.ImportOptions(label_map={"1": "spam", "0": "ham"}, unescape_html=True)
# The last two videos arrive as new, unlabeled data: their rows wait in the queue for the demo annotators.
QUEUED_FILES = ("Youtube04-Eminem.csv", "Youtube05-Shakira.csv")
QUEUED_OPTIONS = services.ImportOptions(unescape_html=True, ignore_labels=True)
# Two people label each queued comment (so agreement can be measured) and one claim in ten is a gold question.
DEMO_LABELING_SETTINGS = {"overlap": 2, "gold_rate": 0.1}
GOLD_COUNT = 20
GOLD_SEED = 7
PASSWORDS_FILENAME = "demo-passwords.json"
# (username, project role or None, what the login is for)
DEMO_USERS = (
    ("admin", None, "superuser: every project, the admin site, API tokens"),
    ("reviewer", ProjectRole.REVIEWER, "reviewer of youtube-spam: labels, reviews, gold"),
    ("annotator", ProjectRole.ANNOTATOR, "annotator of youtube-spam: labels the queue"),
)


def _password_generate(length: int = 16) -> str:
    """Return a random password of letters and digits, easy to copy from a terminal."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def passwords_path() -> Path:
    return Path(settings.DATA_DIR) / PASSWORDS_FILENAME


def passwords_load(path: Path) -> dict[str, str]:
    """Read the kept demo passwords; a missing or unreadable file means none are kept yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def passwords_save(path: Path, passwords: dict[str, str]) -> None:
    """Write the passwords readable by the owner only (0600), replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(passwords, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


class Command(BaseCommand):
    help = "Create the youtube-spam demo project with its bundled data and the admin, reviewer and annotator logins."

    def handle(self, *args: Any, **options: Any) -> None:
        project = self._project()
        self._import(project)
        self._summary(project)
        self._users(project)
        self._gold(project)

    def _project(self) -> Project:
        project = Project.objects.filter(slug=PROJECT_SLUG).first()
        if project is not None:
            self.stdout.write(f"Project {PROJECT_SLUG} exists; left as it is.")
            return project
        project = services.project_create(
            slug=PROJECT_SLUG, name=PROJECT_NAME, description=PROJECT_DESCRIPTION, labels=LABELS
        )
        project.settings = {**project.settings, "labeling": DEMO_LABELING_SETTINGS}
        project.save(update_fields=["settings"])
        self.stdout.write(f"Created project {PROJECT_SLUG} ({PROJECT_NAME}) with labels spam and ham.")
        return project

    def _import(self, project: Project) -> None:
        existing = Example.objects.filter(project=project).count()
        if existing:
            self.stdout.write(f"The project already has {existing:,} examples; the demo files are not imported again.")
            return
        for filename in DEMO_FILES:
            path = DEMO_DIR / filename
            if not path.is_file():
                raise CommandError(f"Demo file missing: {path}")
            options = QUEUED_OPTIONS if filename in QUEUED_FILES else IMPORT_OPTIONS
            job = services.import_job_create(
                project=project, source=ImportSource.DEMO, filename=filename, options=options, path=path
            )
            job = services.import_job_run(job_id=job.pk)
            job.refresh_from_db()
            if job.state != JobState.SUCCEEDED:
                raise CommandError(f"Importing {filename} failed: {job.message}")
            self.stdout.write(f"Imported {filename}: {job.message}")

    def _gold(self, project: Project) -> None:
        """Turn a fixed sample of examples with a label from the data set into gold questions, once."""
        gold = Annotation.objects.filter(example__project=project, kind=AnnotationKind.GOLD)
        if gold.exists():
            return
        admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        candidates = list(
            Annotation.objects.filter(example__project=project, kind=AnnotationKind.IMPORTED)
            .select_related("example", "label")
            .order_by("example_id")
        )
        for annotation in random.Random(GOLD_SEED).sample(candidates, min(GOLD_COUNT, len(candidates))):
            services.gold_set(user=admin, example=annotation.example, label=annotation.label)
        queued = QueueItem.objects.filter(project=project, state=QueueState.READY).count()
        self.stdout.write(
            f"Labeling: {gold.count()} gold questions (one claim in ten); {queued:,} queue slots ready "
            f"({', '.join(QUEUED_FILES)} imported without their labels, two annotators per comment)."
        )

    def _summary(self, project: Project) -> None:
        """Report what the demo imports did, from their job rows, so a second run prints the same numbers."""
        jobs = {}
        for job in ImportJob.objects.filter(project=project, source=ImportSource.DEMO, state=JobState.SUCCEEDED):
            jobs.setdefault(job.filename, job)  # newest first (the model orders by -id)
        if not jobs:
            return
        totals = dict.fromkeys(
            ("rows_read", "examples_created", "duplicates", "annotations_created", "rows_rejected"), 0
        )
        undated: list[str] = []
        for filename in DEMO_FILES:
            job = jobs.get(filename)
            if job is None:
                continue
            for key in totals:
                totals[key] += int(job.result.get(key) or 0)
            if job.result.get("rows_without_timestamp"):
                undated.append(f"{job.result['rows_without_timestamp']:,} in {filename}")
        undated_total = sum(int(job.result.get("rows_without_timestamp") or 0) for job in jobs.values())
        label_counts = _label_counts(project)
        self.stdout.write(
            "Demo data: {read:,} rows read from {files} files, {created:,} examples imported, "
            "{dup:,} duplicates skipped, {rejected:,} rows rejected, {undated:,} rows without a usable timestamp.".format(
                read=totals["rows_read"],
                files=len(jobs),
                created=totals["examples_created"],
                dup=totals["duplicates"],
                rejected=totals["rows_rejected"],
                undated=undated_total,
            )
        )
        self.stdout.write(
            "Labels from the data set: " + ", ".join(f"{name} {count:,}" for name, count in label_counts.items()) + "."
        )
        if undated:
            self.stdout.write(
                f"Rows without a timestamp ({'; '.join(undated)}): the source has no DATE for them. They were "
                "imported without a timestamp, are listed as warnings on their import job, and are never put "
                "in the time-split holdout."
            )

    def _users(self, project: Project) -> None:
        path = passwords_path()
        kept = passwords_load(path)
        passwords = dict(kept)
        lines = []
        for username, role, purpose in DEMO_USERS:
            with transaction.atomic():
                user = get_user_model().objects.filter(username=username).first()
                password = None
                if user is None:
                    password = passwords.get(username) or _password_generate()
                    passwords[username] = password
                if role is None:
                    self._superuser(username, password)
                else:
                    services.member_add(project=project, username=username, role=role, password=password)
            if user is None or (username in kept and user.check_password(kept[username])):
                shown = passwords[username]
            else:
                shown = "(existing user; password unchanged, not shown)"
            lines.append((username, shown, purpose))
        if passwords != kept:
            passwords_save(path, passwords)
        width = max(len(name) for name, _, _ in lines)
        self.stdout.write(f"Demo logins (kept in {path}):")
        for username, password, purpose in lines:
            self.stdout.write(f"  {username.ljust(width)}  {password}   {purpose}")

    def _superuser(self, username: str, password: str | None) -> None:
        """Create the superuser when missing; an existing one keeps its password but joins the `admin` group."""
        user_model = get_user_model()
        if password is not None:
            user = user_model.objects.create_superuser(username=username, email="", password=password)
        else:
            user = user_model.objects.get(username=username)
        user.groups.add(Group.objects.get_or_create(name="admin")[0])


def _label_counts(project: Project) -> dict[str, int]:
    """Count imported labels per label name, in the project's label order."""
    labels = project.labels.annotate(imported=Count("annotations", filter=Q(annotations__kind="imported"))).order_by(
        "order", "name"
    )
    return {label.name: label.imported for label in labels}
