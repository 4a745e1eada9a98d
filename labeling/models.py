"""Projects, their labels and examples, annotations with provenance, the queue and its leases, membership,
tokens and import jobs."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ProjectRole(models.TextChoices):
    """A member's role in one project; each role includes the rights of the ones before it."""

    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


ROLE_RANK = {ProjectRole.ANNOTATOR: 1, ProjectRole.REVIEWER: 2, ProjectRole.ADMIN: 3}


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.slug


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, help_text="Shown to annotators and used in LLM prompts.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    shortcut = models.CharField(max_length=1, blank=True, help_text="One key that applies this label.")
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["project_id", "order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_unique_name_per_project"),
            models.UniqueConstraint(
                fields=["project", "shortcut"],
                condition=~Q(shortcut=""),
                name="label_unique_shortcut_per_project",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="label_name_not_empty"),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="label_not_own_parent"),
        ]

    def __str__(self) -> str:
        return self.name


class ExampleOrigin(models.TextChoices):
    IMPORTED = "imported", "Imported"
    FEEDBACK = "feedback", "Feedback from predictions"
    SYNTHETIC = "synthetic", "Synthetic"


class Example(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="examples")
    text = models.TextField()
    meta = models.JSONField(default=dict, blank=True)
    observed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the source saw this text; empty when the source had no usable time."
    )
    content_hash = models.CharField(max_length=64)
    origin = models.CharField(max_length=16, choices=ExampleOrigin.choices, default=ExampleOrigin.IMPORTED)
    ingested_at = models.DateTimeField(default=timezone.now)
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="examples"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="example_unique_hash_per_project"),
            models.CheckConstraint(condition=~Q(text=""), name="example_text_not_empty"),
            models.CheckConstraint(condition=Q(origin__in=ExampleOrigin.values), name="example_origin_valid"),
        ]
        indexes = [models.Index(fields=["project", "observed_at"], name="example_project_observed")]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.pk}"


class AnnotationKind(models.TextChoices):
    HUMAN = "human", "Human"
    LLM = "llm", "LLM"
    GOLD = "gold", "Gold"
    IMPORTED = "imported", "Imported"
    ADJUDICATED = "adjudicated", "Adjudicated"


# Kinds whose labels come from people; imported labels count as human labels.
HUMAN_KINDS = (AnnotationKind.HUMAN, AnnotationKind.IMPORTED, AnnotationKind.GOLD, AnnotationKind.ADJUDICATED)


class AnnotationStatus(models.TextChoices):
    PENDING = "pending", "Pending review"
    SUBMITTED = "submitted", "Submitted"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    SUPERSEDED = "superseded", "Superseded"
    WITHDRAWN = "withdrawn", "Withdrawn (undone)"


# Statuses of a label that still stands; rejected, superseded and withdrawn ones are kept for the record only.
LIVE_STATUSES = (AnnotationStatus.PENDING, AnnotationStatus.SUBMITTED, AnnotationStatus.ACCEPTED)


class Annotation(models.Model):
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="annotations")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="annotations")
    author = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    labeler_name = models.CharField(
        max_length=200, blank=True, help_text="A named labeler (an LLM, an import) when there is no user."
    )
    kind = models.CharField(max_length=16, choices=AnnotationKind.choices)
    status = models.CharField(max_length=16, choices=AnnotationStatus.choices, default=AnnotationStatus.SUBMITTED)
    confidence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    lease_id = models.UUIDField(
        null=True, blank=True, unique=True, help_text="The queue lease this label answered; a repeat is idempotent."
    )
    seconds_spent = models.FloatField(
        null=True, blank=True, help_text="Seconds from the item reaching the annotator to the label (capped)."
    )
    # LLM labels: which model and prompt produced it, what the project's model said then, and who reviewed it.
    labeler_model = models.CharField(max_length=200, blank=True, help_text="The LLM's model (file, folder or name).")
    prompt_version = models.CharField(max_length=40, blank=True)
    probabilities = models.JSONField(default=dict, blank=True, help_text="The labeler's probability per label.")
    model_label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="The model's prediction."
    )
    model_confidence = models.FloatField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    auto_accepted = models.BooleanField(default=False, help_text="Accepted above the calibrated trust threshold.")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(author__isnull=False) | ~Q(labeler_name=""),
                name="annotation_has_author_or_labeler",
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0.0, confidence__lte=1.0),
                name="annotation_confidence_in_unit_range",
            ),
            models.CheckConstraint(condition=Q(kind__in=AnnotationKind.values), name="annotation_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=AnnotationStatus.values), name="annotation_status_valid"),
            models.UniqueConstraint(
                fields=["example", "label", "labeler_name"],
                condition=Q(kind="imported"),
                name="annotation_imported_once",
            ),
            models.UniqueConstraint(
                fields=["example", "author"],
                condition=Q(kind="human", status__in=["pending", "submitted", "accepted"]),
                name="annotation_one_live_human_label_per_author",
            ),
            models.UniqueConstraint(
                fields=["example"],
                condition=Q(kind__in=["gold", "adjudicated"], status="accepted"),
                name="annotation_one_live_gold_or_adjudication",
            ),
            models.CheckConstraint(
                condition=Q(seconds_spent__isnull=True) | Q(seconds_spent__gte=0.0),
                name="annotation_seconds_spent_not_negative",
            ),
            # A labeler's standing opinion on an example is one row: a retried pre-labeling chunk adds nothing.
            models.UniqueConstraint(
                fields=["example", "labeler_name"],
                condition=Q(kind="llm", status__in=["pending", "accepted"]),
                name="annotation_one_live_llm_label_per_labeler",
            ),
        ]
        indexes = [
            models.Index(fields=["kind", "status"], name="annotation_kind_status"),
            models.Index(fields=["example", "kind"], name="annotation_example_kind"),
            models.Index(fields=["author", "created_at"], name="annotation_author_created"),
            models.Index(fields=["example", "author"], name="annotation_example_author"),
        ]

    def __str__(self) -> str:
        return f"{self.example_id}={self.label_id} ({self.kind})"


class AnnotationEventKind(models.TextChoices):
    UNDO = "undo", "Undid a label"
    SKIP = "skip", "Skipped"
    ADJUDICATE = "adjudicate", "Adjudicated"
    GOLD_SET = "gold_set", "Set a gold answer"
    GOLD_UNSET = "gold_unset", "Removed a gold answer"


class AnnotationEvent(models.Model):
    """What a person did to an example's labels besides labeling it (the annotation row records that).

    Undo and skip are events; nothing is deleted.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotation_events")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="annotation_events")
    annotation = models.ForeignKey(Annotation, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=AnnotationEventKind.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=AnnotationEventKind.values), name="annotation_event_kind_valid")
        ]
        indexes = [models.Index(fields=["project", "created_at"], name="annotation_event_project_time")]

    def __str__(self) -> str:
        return f"{self.kind} {self.example_id} by {self.actor_id}"


class QueueReason(models.TextChoices):
    """Why an item is in the queue; the ranking jobs choose one per item."""

    EXPLORATION = "exploration", "Exploration"
    UNCERTAIN = "uncertain", "Uncertain"
    HARD_NEGATIVE = "hard_negative", "Hard negative"
    LABEL_ERROR = "label_error", "Possible label error"
    LLM_DISAGREES = "llm_disagrees", "LLM disagrees"
    FEEDBACK = "feedback", "Feedback from predictions"
    CURRICULUM = "curriculum", "Curriculum"
    GOLD = "gold", "Gold check"


class QueueState(models.TextChoices):
    READY = "ready", "Ready"
    LEASED = "leased", "Leased"
    DONE = "done", "Done"


class QueueItem(models.Model):
    """One (example, slot) waiting for a label; an example needs as many slots as the project's overlap.

    Ranking jobs write `priority` and `reason` in the background; claiming only reads the top ready row.
    A gold item is made for one annotator at claim time, so every annotator answers each gold example once.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue_items")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="queue_items")
    slot = models.PositiveSmallIntegerField(default=0)
    priority = models.FloatField(default=0.0)
    reason_code = models.CharField(max_length=16, choices=QueueReason.choices, default=QueueReason.EXPLORATION)
    reason = models.CharField(max_length=300, help_text="Why this item was chosen, in a sentence for the annotator.")
    model_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The number of the model version that ranked it; empty before any model."
    )
    score = models.FloatField(
        null=True, blank=True, help_text="The score its source gave it (0 to 1, higher is more useful to label)."
    )
    suggested_label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    suggested_confidence = models.FloatField(null=True, blank=True)
    suggestion_source = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=8, choices=QueueState.choices, default=QueueState.READY)
    lease_id = models.UUIDField(null=True, blank=True, unique=True)
    lease_owner = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-priority", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=QueueState.values), name="queue_state_valid"),
            models.CheckConstraint(condition=Q(reason_code__in=QueueReason.values), name="queue_reason_valid"),
            models.UniqueConstraint(
                fields=["example", "slot"], condition=~Q(reason_code="gold"), name="queue_one_row_per_slot"
            ),
            # Never two rows of one example for one person: no double lease, no second label by accident.
            models.UniqueConstraint(fields=["example", "lease_owner"], name="queue_one_row_per_example_and_owner"),
            models.CheckConstraint(
                condition=Q(state="ready", lease_owner__isnull=True, lease_id__isnull=True)
                | Q(state="leased", lease_owner__isnull=False, lease_id__isnull=False, lease_expires_at__isnull=False)
                | Q(state="done", lease_owner__isnull=False),
                name="queue_lease_matches_state",
            ),
            models.CheckConstraint(
                condition=Q(suggested_confidence__isnull=True)
                | Q(suggested_confidence__gte=0.0, suggested_confidence__lte=1.0),
                name="queue_suggested_confidence_unit",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "-priority", "id"], condition=Q(state="ready"), name="queue_ready_by_priority"
            ),
            models.Index(fields=["lease_expires_at"], condition=Q(state="leased"), name="queue_leased_expiry"),
            models.Index(fields=["lease_owner", "state"], name="queue_owner_state"),
            models.Index(fields=["project", "state", "reason_code"], name="queue_project_state_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.example_id}#{self.slot} ({self.state})"


class QueueSkip(models.Model):
    """An annotator skipped this example: it goes to the back of the queue for them only."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["example", "user"], name="queue_skip_once")]

    def __str__(self) -> str:
        return f"{self.user_id} skipped {self.example_id}"


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ProjectRole.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once_per_project"),
            models.CheckConstraint(condition=Q(role__in=ProjectRole.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.project_id}:{self.role}"


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 is stored, the token itself is shown once."""

    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to tell tokens apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportFormat(models.TextChoices):
    AUTO = "auto", "Detect from the file"
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"
    LABELSTUDIO = "labelstudio", "Label Studio JSON export"


class ImportSource(models.TextChoices):
    UPLOAD = "upload", "Upload page"
    API = "api", "API"
    COMMAND = "command", "Command line"
    DEMO = "demo", "Demo data"


class ImportJob(models.Model):
    """One import of one file; the worker updates progress, counts and errors here."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=ImportSource.choices)
    format = models.CharField(max_length=16, choices=ImportFormat.choices, default=ImportFormat.AUTO)
    filename = models.CharField(max_length=255)
    path = models.CharField(max_length=1024, help_text="The stored upload the worker reads.")
    size_bytes = models.BigIntegerField(default=0)
    options = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True, help_text="The first rejected rows, with reasons.")
    error_count = models.PositiveIntegerField(default=0)
    report_path = models.CharField(max_length=1024, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0.0, progress__lte=1.0), name="import_progress_unit"),
            models.CheckConstraint(condition=Q(state__in=JobState.values), name="import_state_valid"),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="import_state_heartbeat")]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)
