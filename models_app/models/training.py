"""Feature sets and their shards, featurizing jobs, model versions and training runs."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labeling.models import JobState, Project


class FeaturizerName(models.TextChoices):
    """The featurizers of `models_app.ml.featurizers`; the values are their `.name`."""

    HASHING = "hashing", "Hashed word and character n-grams"
    MINILM = "minilm", "MiniLM sentence embeddings"


class FeatureSet(models.Model):
    """The vectors of one project's examples under one featurizer version; new params make a new set.

    Vectors live in shard files under settings.FEATURE_DIR; `rows` counts the examples that have one.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="feature_sets")
    featurizer = models.CharField(max_length=16, choices=FeaturizerName.choices)
    version = models.CharField(max_length=80, help_text="The featurizer's version; it changes with its params.")
    params = models.JSONField(default=dict, blank=True)
    dim = models.PositiveIntegerField()
    sparse = models.BooleanField()
    rows = models.PositiveIntegerField(default=0, help_text="Examples with stored vectors.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project_id", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="feature_set_unique_version_per_project"),
            models.CheckConstraint(
                condition=Q(featurizer__in=FeaturizerName.values), name="feature_set_featurizer_valid"
            ),
            models.CheckConstraint(condition=Q(dim__gt=0), name="feature_set_dim_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.version}"


class FeatureShard(models.Model):
    """One file of vectors and the file of their example ids, written once and never changed."""

    feature_set = models.ForeignKey(FeatureSet, on_delete=models.CASCADE, related_name="shards")
    number = models.PositiveIntegerField()
    path = models.CharField(max_length=1024, help_text="The matrix file, relative to settings.FEATURE_DIR.")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the matrix file's bytes, then the ids file's.")
    size_bytes = models.BigIntegerField(help_text="Bytes of the matrix file and the ids file together.")
    rows = models.PositiveIntegerField()
    first_example_id = models.BigIntegerField()
    last_example_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["feature_set_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["feature_set", "number"], name="feature_shard_unique_number"),
            models.CheckConstraint(condition=Q(rows__gt=0), name="feature_shard_not_empty"),
            models.CheckConstraint(
                condition=Q(first_example_id__lte=models.F("last_example_id")), name="feature_shard_id_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.feature_set_id}#{self.number}"


class FeatureJob(models.Model):
    """Featurizing a project's examples that have no vectors yet; the worker updates progress here."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="feature_jobs")
    feature_set = models.ForeignKey(FeatureSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    featurizer = models.CharField(max_length=16, choices=FeaturizerName.choices)
    params = models.JSONField(
        default=dict, blank=True, help_text="Params given; the featurizer's defaults fill the rest."
    )
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0.0, progress__lte=1.0), name="feature_job_progress_unit"),
            models.CheckConstraint(condition=Q(state__in=JobState.values), name="feature_job_state_valid"),
            models.CheckConstraint(
                condition=Q(featurizer__in=FeaturizerName.values), name="feature_job_featurizer_valid"
            ),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="feature_job_state_heartbeat")]

    def __str__(self) -> str:
        return f"featurize {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)


class ModelVersionStatus(models.TextChoices):
    TRAINING = "training", "Training"
    EVALUATED = "evaluated", "Evaluated"
    REJECTED = "rejected", "Rejected by the gate"
    PUBLISHED = "published", "Published"
    RETIRED = "retired", "Retired"


class ModelVersion(models.Model):
    """One trained model of a project: what it was trained on, how it scored, and whether it serves."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3… within the project.")
    featurizer = models.CharField(max_length=16, choices=FeaturizerName.choices)
    feature_version = models.CharField(max_length=80, help_text="The feature set version it was trained on.")
    algorithm = models.CharField(max_length=32)
    params = models.JSONField(default=dict, blank=True)
    seed = models.IntegerField(default=0)
    training_counts = models.JSONField(
        default=dict, blank=True, help_text="Training examples by provenance, plus what was dropped and why."
    )
    cutoff = models.DateTimeField(null=True, blank=True, help_text="Holdout examples are observed at or after this.")
    holdout = models.JSONField(default=dict, blank=True, help_text="Size, cutoff, share and support per class.")
    metrics = models.JSONField(default=dict, blank=True, help_text="The time-split evaluation report.")
    random_split_metrics = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=1024, blank=True, help_text="Relative to settings.ARTIFACT_DIR.")
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    split_path = models.CharField(
        max_length=1024,
        blank=True,
        help_text="The example ids it trained on and its holdout's (an .npz of integers), relative to ARTIFACT_DIR.",
    )
    split_sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=ModelVersionStatus.choices, default=ModelVersionStatus.TRAINING)
    status_reason = models.TextField(blank=True)
    training_run = models.ForeignKey("TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    trained_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="model_version_unique_number"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status="published"),
                name="model_version_one_published_per_project",
            ),
            models.CheckConstraint(condition=Q(number__gt=0), name="model_version_number_positive"),
            models.CheckConstraint(
                condition=Q(status__in=ModelVersionStatus.values), name="model_version_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(featurizer__in=FeaturizerName.values), name="model_version_featurizer_valid"
            ),
        ]
        indexes = [models.Index(fields=["project", "status"], name="model_version_project_status")]

    def __str__(self) -> str:
        return f"{self.project_id} v{self.number} ({self.status})"


class TrainingTrigger(models.TextChoices):
    LABELS = "labels", "Enough new labels"
    SCHEDULE = "schedule", "Schedule"
    BUTTON = "button", "Retrain button"
    API = "api", "API"


class TrainingRun(models.Model):
    """One retraining of a project; single-flight: at most one queued or running run per project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    trigger = models.CharField(max_length=16, choices=TrainingTrigger.choices)
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    follow_up = models.BooleanField(
        default=False, help_text="A trigger arrived while this run was active: run once more after it."
    )
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    labels_at_start = models.PositiveIntegerField(default=0, help_text="Human labels counted when the run started.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(state__in=["queued", "running"]),
                name="training_run_one_active_per_project",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0.0, progress__lte=1.0), name="training_run_progress_unit"
            ),
            models.CheckConstraint(condition=Q(state__in=JobState.values), name="training_run_state_valid"),
            models.CheckConstraint(condition=Q(trigger__in=TrainingTrigger.values), name="training_run_trigger_valid"),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="training_run_state_heartbeat")]

    def __str__(self) -> str:
        return f"training {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)


class QueueBuildTrigger(models.TextChoices):
    MODEL = "model", "New model version"
    IMPORT = "import", "Examples imported"
    PRELABEL = "prelabel", "LLM pre-labels arrived"
    BUTTON = "button", "Rebuild button"
    API = "api", "API"
    SETTINGS = "settings", "Queue settings changed"
    FEEDBACK = "feedback", "Uncertain predictions fed back"


class QueueBuild(models.Model):
    """One rebuild of a project's queue slice by the cascade: which model ranked it and what each source got.

    Single-flight like training: at most one queued or running build per project; a request arriving while one
    runs asks for one more build after it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue_builds")
    trigger = models.CharField(max_length=16, choices=QueueBuildTrigger.choices)
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_number = models.PositiveIntegerField(
        null=True, blank=True, help_text="The model version that ranked this build; empty for a cold start."
    )
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    follow_up = models.BooleanField(default=False, help_text="A request arrived while this build ran: run once more.")
    pool_size = models.PositiveIntegerField(default=0, help_text="Ready examples the sources could choose from.")
    slice_size = models.PositiveIntegerField(default=0, help_text="Items the build ranked to the front of the queue.")
    composition = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per source: candidates proposed, slots, items picked; and what was dropped.",
    )
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(state__in=["queued", "running"]),
                name="queue_build_one_active_per_project",
            ),
            models.CheckConstraint(condition=Q(progress__gte=0.0, progress__lte=1.0), name="queue_build_progress_unit"),
            models.CheckConstraint(condition=Q(state__in=JobState.values), name="queue_build_state_valid"),
            models.CheckConstraint(condition=Q(trigger__in=QueueBuildTrigger.values), name="queue_build_trigger_valid"),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="queue_build_state_heartbeat")]

    def __str__(self) -> str:
        return f"queue build {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)


class PrelabelState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class PrelabelSelection(models.TextChoices):
    QUEUE = "queue", "The queue's next items"
    UNLABELED = "unlabeled", "Every example without a label"
    FILTER = "filter", "Unlabeled examples containing some text"


class PrelabelJob(models.Model):
    """One pre-labeling run of an LLM labeler over a selection of a project's examples, in chunks, cancellable."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prelabel_jobs")
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    labeler = models.CharField(max_length=16, help_text="causal_lm, embedding or openai.")
    params = models.JSONField(default=dict, blank=True, help_text="The labeler's settings for this run.")
    selection = models.CharField(max_length=16, choices=PrelabelSelection.choices, default=PrelabelSelection.QUEUE)
    filter_text = models.CharField(max_length=200, blank=True)
    limit = models.PositiveIntegerField(default=200)
    state = models.CharField(max_length=16, choices=PrelabelState.choices, default=PrelabelState.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    total = models.PositiveIntegerField(default=0, help_text="Examples selected.")
    done = models.PositiveIntegerField(default=0, help_text="Examples labeled so far.")
    created = models.PositiveIntegerField(default=0, help_text="LLM labels stored.")
    auto_accepted = models.PositiveIntegerField(default=0)
    details = models.JSONField(default=dict, blank=True, help_text="Model, prompt version, calibration, speed.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(state__in=["queued", "running"]),
                name="prelabel_job_one_active_per_project",
            ),
            models.CheckConstraint(condition=Q(progress__gte=0.0, progress__lte=1.0), name="prelabel_progress_unit"),
            models.CheckConstraint(condition=Q(state__in=PrelabelState.values), name="prelabel_state_valid"),
            models.CheckConstraint(
                condition=Q(selection__in=PrelabelSelection.values), name="prelabel_selection_valid"
            ),
            models.CheckConstraint(
                condition=Q(labeler__in=["causal_lm", "embedding", "openai"]), name="prelabel_labeler_valid"
            ),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="prelabel_state_heartbeat")]

    def __str__(self) -> str:
        return f"prelabel {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (PrelabelState.SUCCEEDED, PrelabelState.FAILED, PrelabelState.CANCELLED)
