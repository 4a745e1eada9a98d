"""Shared fixtures: users for every role, a project with labels, clients logged in as each."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Hash test passwords with a fast hasher; the default one costs about a second per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache():
    """Start every test with an empty cache: cached counts are keyed by ids that tests reuse."""
    from django.core.cache import cache

    from models_app.services import model_cache_clear, serving_refresh

    cache.clear()
    serving_refresh()
    model_cache_clear()
    yield
    cache.clear()
    serving_refresh()


@pytest.fixture
def project(db):
    from labeling import services

    return services.project_create(
        slug="reviews",
        name="Product reviews",
        labels=[
            {"name": "spam", "description": "Advertising or links unrelated to the video."},
            {"name": "ham", "description": "A genuine comment."},
        ],
    )


@pytest.fixture
def other_project(db):
    from labeling import services

    return services.project_create(slug="other", name="Other team", labels=[{"name": "yes"}, {"name": "no"}])


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str, **extra):
        user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
        return user

    return make


@pytest.fixture
def users(project, make_user):
    """One user per access level: a global admin, project admin, reviewer, annotator and a non-member."""
    from django.contrib.auth.models import Group

    from labeling import services

    global_admin = make_user("boss")
    global_admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    result = {"global_admin": global_admin, "outsider": make_user("outsider")}
    for role in ("admin", "reviewer", "annotator"):
        user = make_user(f"project-{role}")
        services.member_add(project=project, username=user.username, role=role)
        result[role] = user
    return result


@pytest.fixture
def client_for(client):
    """Return a test client logged in as the given user (None for anonymous)."""
    from django.test import Client

    def make(user):
        if user is None:
            return Client()
        logged_in = Client()
        logged_in.force_login(user)
        return logged_in

    return make


def _database_url(settings_dict: dict) -> str:
    """Rebuild a DATABASE_URL for the test database so a worker process opens the same one."""
    from urllib.parse import quote

    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start one real Celery worker process against the test database and the configured broker."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = os.environ.copy()
    env.update(
        DATABASE_URL=_database_url(connection.settings_dict),
        FLYWHEEL_DATA_DIR=str(settings.DATA_DIR),
        FLYWHEEL_CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        OMP_NUM_THREADS="1",
        DJANGO_SETTINGS_MODULE="flywheel.settings",
    )
    root = Path(__file__).resolve().parent.parent
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "flywheel", "worker",
                "--concurrency=1", "--loglevel=INFO", "--without-gossip", "--without-mingle",
                "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-n", f"test-{os.getpid()}@%h",
            ],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while b" ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Celery worker did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    process.log_path = log_path
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def wait_for_job():
    """Poll a job row until it finishes; fail with the worker's log when it does not."""
    import time

    def wait(model, pk: int, timeout: float = 60.0, worker=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = model.objects.get(pk=pk)
            if job.state in ("succeeded", "failed"):
                return job
            time.sleep(0.2)
        log = worker.log_path.read_text(errors="replace")[-4000:] if worker is not None else ""
        raise AssertionError(f"job {pk} still {job.state} after {timeout}s\n{log}")

    return wait
