"""Flywheel settings: every value that differs between machines comes from the environment.

See `.env.example` for the full list with defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


DATA_DIR = Path(os.environ.get("FLYWHEEL_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
UPLOAD_DIR = DATA_DIR / "uploads"
REPORT_DIR = DATA_DIR / "reports"
# Feature shards and model artifacts: big files that every worker reads, so they may live on shared storage.
FEATURE_DIR = Path(os.environ.get("FLYWHEEL_FEATURE_DIR") or DATA_DIR / "features").resolve()
ARTIFACT_DIR = Path(os.environ.get("FLYWHEEL_ARTIFACT_DIR") or DATA_DIR / "artifacts" / "models").resolve()
for _folder in (UPLOAD_DIR, REPORT_DIR, FEATURE_DIR, ARTIFACT_DIR):
    _folder.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """Return DJANGO_SECRET_KEY, or a random key kept (0600) in the data folder."""
    from_env = os.environ.get("DJANGO_SECRET_KEY", "").strip()
    if from_env:
        return from_env
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = [
    origin.strip() for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if origin.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "ninja",
    "labeling",
    "models_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "flywheel.urls"
WSGI_APPLICATION = "flywheel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite in the data folder (WAL) unless DATABASE_URL names another server.
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{DATA_DIR / 'flywheel.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=_env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _env_bool("DB_PREPARED_STATEMENTS", True):
    # The queue's claim and submit statements run as server-side prepared statements after a few uses on a
    # connection (`labeling/rows.py`); the ORM's own queries are not prepared. Set DB_PREPARED_STATEMENTS=0
    # behind a transaction-mode connection pooler such as PgBouncer before 1.21.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "labeling:project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = _env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Uploads are streamed to a temporary file past this size, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = _env_int("FLYWHEEL_JSON_BODY_MAX_BYTES", 20 * 1024 * 1024)

# Import limits.
FLYWHEEL_IMPORT_MAX_BYTES = _env_int("FLYWHEEL_IMPORT_MAX_BYTES", 512 * 1024 * 1024)
FLYWHEEL_IMPORT_MAX_TEXT_CHARS = _env_int("FLYWHEEL_IMPORT_MAX_TEXT_CHARS", 100_000)
FLYWHEEL_IMPORT_CHUNK_ROWS = _env_int("FLYWHEEL_IMPORT_CHUNK_ROWS", 10_000)

# Celery: a broker that needs no server (kombu's filesystem transport) unless CELERY_BROKER_URL is set.
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip() or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("queue", "control", "processed"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("FLYWHEEL_CELERY_QUEUE", "flywheel")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = _env_int("FLYWHEEL_TASK_SOFT_TIME_LIMIT", 3600)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-import-jobs": {
        "task": "labeling.tasks.import_jobs_sweep_task",
        "schedule": 60.0,
    },
    "sweep-stuck-feature-jobs": {
        "task": "models_app.tasks.feature_jobs_sweep_task",
        "schedule": 60.0,
    },
    "expire-queue-leases": {
        "task": "labeling.tasks.queue_leases_expire_task",
        "schedule": 30.0,
    },
    "sweep-stuck-training-runs": {
        "task": "models_app.tasks.training_runs_sweep_task",
        "schedule": 60.0,
    },
    "sweep-stuck-queue-builds": {
        "task": "models_app.tasks.queue_builds_sweep_task",
        "schedule": 60.0,
    },
    "sweep-stuck-prelabel-jobs": {
        "task": "models_app.tasks.prelabel_jobs_sweep_task",
        "schedule": 60.0,
    },
    "ingest-lost-feedback": {
        "task": "models_app.tasks.feedback_sweep_task",
        "schedule": 60.0,
    },
    "prune-prediction-logs": {
        "task": "models_app.tasks.prediction_logs_prune_task",
        "schedule": 3600.0,
    },
    "start-due-retraining": {
        "task": "models_app.tasks.training_triggers_check_task",
        "schedule": 60.0,
    },
}
# Threads a worker gives a local LLM labeler (transformers on the CPU).
FLYWHEEL_LLM_THREADS = _env_int("FLYWHEEL_LLM_THREADS", 2)
# A running import, featurizing job or training run whose heartbeat is older than this is taken to have lost its worker.
FLYWHEEL_JOB_STALE_SECONDS = _env_int("FLYWHEEL_JOB_STALE_SECONDS", 300)
# Prediction logs older than this many days are deleted once their feedback is queued (0 keeps them forever).
FLYWHEEL_PREDICTION_LOG_DAYS = _env_int("FLYWHEEL_PREDICTION_LOG_DAYS", 90)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("FLYWHEEL_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
