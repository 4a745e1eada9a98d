"""Settings come from the environment only; each case loads them in a fresh process with a chosen environment."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every variable settings.py reads; a case starts from none of them so the machine's own values never leak in.
SETTINGS_SOURCE = (ROOT / "flywheel" / "settings.py").read_text()
ENV_NAMES = sorted(
    set(re.findall(r"""(?:os\.environ\.get|_env_int|_env_bool)\(\s*["']([A-Z0-9_]+)["']""", SETTINGS_SOURCE))
)

PROBE = """
import json, os, sys
from django.conf import settings
out = {
    "data_dir": str(settings.DATA_DIR),
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "host": settings.DATABASES["default"].get("HOST"),
    "broker": settings.CELERY_BROKER_URL,
    "transport_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "queue": settings.CELERY_TASK_DEFAULT_QUEUE,
    "debug": settings.DEBUG,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "secret_key": settings.SECRET_KEY,
    "import_max_bytes": settings.FLYWHEEL_IMPORT_MAX_BYTES,
    "beat_schedule": settings.CELERY_BEAT_SCHEDULE_FILENAME,
}
if "--connect" in sys.argv:
    import django
    django.setup()
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        out["journal_mode"] = cursor.fetchone()[0]
print(json.dumps(out))
"""


def load_settings(data_dir: Path, *args: str, **env: str) -> dict:
    """Import flywheel.settings in a new interpreter with only the given Flywheel variables set."""
    environment = {key: value for key, value in os.environ.items() if key not in ENV_NAMES}
    environment.update(DJANGO_SETTINGS_MODULE="flywheel.settings", FLYWHEEL_DATA_DIR=str(data_dir), **env)
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_settings_reads_the_expected_variables():
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "FLYWHEEL_DATA_DIR", "DJANGO_SECRET_KEY"} <= set(ENV_NAMES)


def test_default_database_is_sqlite_in_the_data_dir_in_wal_mode(tmp_path):
    loaded = load_settings(tmp_path / "data", "--connect")

    assert loaded["data_dir"] == str((tmp_path / "data").resolve())
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["name"] == str((tmp_path / "data" / "flywheel.sqlite3").resolve())
    assert loaded["journal_mode"] == "wal"
    assert (tmp_path / "data" / "flywheel.sqlite3").exists()


def test_database_url_selects_postgresql_without_connecting(tmp_path):
    loaded = load_settings(tmp_path, DATABASE_URL="postgres://flywheel@db.internal:5432/flywheel_prod")

    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["name"] == "flywheel_prod"
    assert loaded["host"] == "db.internal"


def test_default_broker_is_the_filesystem_transport_with_its_folders_created(tmp_path):
    loaded = load_settings(tmp_path)

    assert loaded["broker"] == "filesystem://"
    options = loaded["transport_options"]
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        folder = Path(options[key])
        assert folder.is_dir(), key
        assert folder.resolve().is_relative_to(tmp_path.resolve())
    assert loaded["queue"] == "flywheel"
    assert Path(loaded["beat_schedule"]).parent == tmp_path.resolve()


def test_broker_url_and_queue_come_from_the_environment(tmp_path):
    loaded = load_settings(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:6379/5", FLYWHEEL_CELERY_QUEUE="fw-x")

    assert loaded["broker"] == "redis://127.0.0.1:6379/5"
    assert loaded["queue"] == "fw-x"
    assert "data_folder_in" not in loaded["transport_options"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("false", False), ("1", True), ("YES", True)],
)
def test_debug_is_off_unless_asked_for(tmp_path, value, expected):
    env = {} if value is None else {"DJANGO_DEBUG": value}
    assert load_settings(tmp_path, **env)["debug"] is expected


def test_allowed_hosts_default_to_this_machine(tmp_path):
    assert load_settings(tmp_path)["allowed_hosts"] == ["127.0.0.1", "localhost", "[::1]"]


def test_allowed_hosts_are_a_comma_separated_list(tmp_path):
    loaded = load_settings(tmp_path, DJANGO_ALLOWED_HOSTS=" flywheel.example.com, .internal ,,10.0.0.5 ")

    assert loaded["allowed_hosts"] == ["flywheel.example.com", ".internal", "10.0.0.5"]


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = load_settings(tmp_path)["secret_key"]
    second = load_settings(tmp_path)["secret_key"]

    assert first == second and len(first) >= 50
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings(tmp_path, DJANGO_SECRET_KEY="from-the-environment")["secret_key"] == "from-the-environment"


def test_integer_limits_come_from_the_environment(tmp_path):
    assert load_settings(tmp_path)["import_max_bytes"] == 512 * 1024 * 1024
    assert load_settings(tmp_path, FLYWHEEL_IMPORT_MAX_BYTES="1000")["import_max_bytes"] == 1000


@pytest.mark.parametrize("document", [".env.example", "README.md"])
def test_every_setting_is_documented(document):
    text = (ROOT / document).read_text()
    missing = [name for name in ENV_NAMES if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"{document} does not mention {', '.join(missing)}"
