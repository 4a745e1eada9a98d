"""The demo seed creates the youtube-spam project, its data and three logins, and is safe to run again."""

from __future__ import annotations

import io
import json
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count

from labeling.management.commands.seed_demo import QUEUED_FILES
from labeling.models import Annotation, Example, ImportJob, Label, Membership, Project, QueueItem

DEMO_ROWS = 350 + 350 + 438 + 448 + 370  # the five files of the YouTube Spam Collection
EMINEM_ROWS_WITHOUT_DATE = 245


@pytest.fixture
def data_dir(settings, tmp_path):
    """Keep the passwords file, uploads and reports of each test in its own folder; hash passwords fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DATA_DIR = tmp_path
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.REPORT_DIR = tmp_path / "reports"
    settings.UPLOAD_DIR.mkdir()
    settings.REPORT_DIR.mkdir()
    return tmp_path


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "projects": Project.objects.count(),
        "labels": Label.objects.count(),
        "examples": Example.objects.count(),
        "annotations": Annotation.objects.count(),
        "jobs": ImportJob.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": Membership.objects.count(),
    }


def passwords_in(output: str) -> dict[str, str]:
    """Read `  name  password  purpose` lines from the seed's output."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("  ") and parts and parts[0] in {"admin", "reviewer", "annotator"}:
            found[parts[0]] = parts[1]
    return found


@pytest.mark.django_db
def test_seed_creates_the_demo_project_with_its_data(data_dir):
    output = seed()

    project = Project.objects.get(slug="youtube-spam")
    assert project.name == "YouTube comment spam"
    labels = {label.name: label.description for label in project.labels.all()}
    assert labels == {
        "spam": "Promotes a channel, product or link instead of responding to the video",
        "ham": "A genuine comment about the video",
    }
    jobs = ImportJob.objects.filter(project=project, source="demo")
    assert jobs.count() == 5 and all(job.state == "succeeded" for job in jobs)
    assert sum(job.result["rows_read"] for job in jobs) == DEMO_ROWS
    created = sum(job.result["examples_created"] for job in jobs)
    duplicates = sum(job.result["duplicates"] for job in jobs)
    assert Example.objects.filter(project=project).count() == created
    assert created + duplicates == DEMO_ROWS
    assert 1600 < created < DEMO_ROWS
    assert f"{created:,} examples imported" in output
    assert f"{duplicates:,} duplicates skipped" in output


@pytest.mark.django_db
def test_seed_reports_the_eminem_rows_without_a_timestamp(data_dir):
    output = seed()

    eminem = ImportJob.objects.get(filename="Youtube04-Eminem.csv")
    assert eminem.result["rows_without_timestamp"] == EMINEM_ROWS_WITHOUT_DATE
    assert sum(job.result["rows_without_timestamp"] for job in ImportJob.objects.all()) == EMINEM_ROWS_WITHOUT_DATE
    assert f"{EMINEM_ROWS_WITHOUT_DATE} rows without a usable timestamp" in output
    assert f"{EMINEM_ROWS_WITHOUT_DATE} in Youtube04-Eminem.csv" in output
    assert "imported without a timestamp" in output
    undated = Example.objects.filter(observed_at__isnull=True)
    assert 0 < undated.count() <= EMINEM_ROWS_WITHOUT_DATE
    assert Example.objects.filter(observed_at__isnull=False).count() > 1300


@pytest.mark.django_db
def test_seed_labels_are_plausible(data_dir):
    seed()

    imported = Annotation.objects.filter(kind="imported")
    spam = imported.filter(label__name="spam").count()
    ham = imported.filter(label__name="ham").count()
    labeled_jobs = ImportJob.objects.exclude(filename__in=QUEUED_FILES)
    assert spam + ham == imported.count() == sum(job.result["examples_created"] for job in labeled_jobs)
    # Three of the five videos keep their labels; the collection is close to balanced.
    assert 400 < spam < 600
    assert 400 < ham < 600
    # Duplicate spam messages across videos are stored once: no example carries two imported labels.
    per_example = imported.values("example_id").order_by().annotate(n=Count("id"))
    assert not per_example.filter(n__gt=1).exists()


@pytest.mark.django_db
def test_seed_creates_the_logins_with_their_roles(data_dir):
    output = seed()

    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.groups.filter(name="admin").exists()
    project = Project.objects.get(slug="youtube-spam")
    assert Membership.objects.get(project=project, user__username="reviewer").role == "reviewer"
    assert Membership.objects.get(project=project, user__username="annotator").role == "annotator"
    passwords = passwords_in(output)
    assert set(passwords) == {"admin", "reviewer", "annotator"}
    for username, password in passwords.items():
        assert users.get(username=username).check_password(password)
    kept = data_dir / "demo-passwords.json"
    assert json.loads(kept.read_text()) == passwords
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


@pytest.mark.django_db
def test_seeding_again_adds_nothing_and_prints_the_same_passwords(data_dir):
    first_output = seed()
    first_counts = counts()
    kept = (data_dir / "demo-passwords.json").read_text()

    second_output = seed()

    assert counts() == first_counts
    assert passwords_in(second_output) == passwords_in(first_output)
    assert (data_dir / "demo-passwords.json").read_text() == kept
    assert "not imported again" in second_output
    assert f"{EMINEM_ROWS_WITHOUT_DATE} rows without a usable timestamp" in second_output


@pytest.mark.django_db
def test_existing_users_keep_their_password(data_dir):
    get_user_model().objects.create_user(username="reviewer", password="chosen-by-the-reviewer")

    output = seed()

    reviewer = get_user_model().objects.get(username="reviewer")
    assert reviewer.check_password("chosen-by-the-reviewer")
    assert Membership.objects.get(user=reviewer).role == "reviewer"
    assert "reviewer" not in passwords_in(output) or passwords_in(output)["reviewer"].startswith("(")
    assert "reviewer" not in json.loads((data_dir / "demo-passwords.json").read_text())


@pytest.mark.django_db
def test_a_new_database_reuses_the_kept_passwords(data_dir):
    (data_dir / "demo-passwords.json").write_text(json.dumps({"annotator": "kept-from-an-earlier-run"}))

    output = seed()

    assert passwords_in(output)["annotator"] == "kept-from-an-earlier-run"
    assert get_user_model().objects.get(username="annotator").check_password("kept-from-an-earlier-run")


@pytest.mark.django_db
def test_seed_queues_the_unlabeled_videos_for_two_annotators_with_gold_questions(data_dir):
    output = seed()

    project = Project.objects.get(slug="youtube-spam")
    assert project.settings["labeling"] == {"overlap": 2, "gold_rate": 0.1}
    queued_jobs = ImportJob.objects.filter(filename__in=QUEUED_FILES)
    queued_examples = sum(job.result["examples_created"] for job in queued_jobs)
    assert queued_examples == sum(job.result["queued"] for job in queued_jobs) > 600
    assert QueueItem.objects.filter(project=project, state="ready").count() == 2 * queued_examples
    assert not Annotation.objects.filter(example__import_job__in=queued_jobs).exists()
    gold = Annotation.objects.filter(kind="gold", status="accepted")
    assert gold.count() == 20
    assert not QueueItem.objects.filter(example__in=gold.values("example_id")).exists()
    assert f"{2 * queued_examples:,} queue slots ready" in output
    # Seeding again adds no second set of gold questions.
    seed()
    assert Annotation.objects.filter(kind="gold").count() == 20
