"""What reaches users: rule sets, gate decisions, the published (model version, rule set) switch, prediction logs."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labeling.models import Project

from .training import ModelVersion


class RuleSet(models.Model):
    """One saved version of a project's business rules; never edited after saving (an edit saves a new number)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rule_sets")
    number = models.PositiveIntegerField(help_text="1, 2, 3… within the project.")
    note = models.TextField(blank=True, help_text="What changed and why, from the person who saved it.")
    preview = models.JSONField(
        default=dict,
        blank=True,
        help_text="The holdout preview seen when it was saved: changes, metrics with and without.",
    )
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="rule_set_unique_number"),
            models.CheckConstraint(condition=Q(number__gt=0), name="rule_set_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} rules v{self.number}"


class RuleAction(models.TextChoices):
    FORCE = "force", "Force a label"
    FORBID = "forbid", "Forbid a label (take the next best)"
    ABSTAIN = "abstain", "Abstain (send to people)"
    TAG = "tag", "Tag the prediction"


class Rule(models.Model):
    """One ordered rule of a rule set: conditions that must all hold, and one action (see models_app.ml.rules)."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveSmallIntegerField(help_text="Rules run in this order, from 1.")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    conditions = models.JSONField(default=list, blank=True, help_text="Every condition must hold for the rule to fire.")
    action = models.CharField(max_length=16, choices=RuleAction.choices)
    label = models.CharField(max_length=200, blank=True, help_text="The label a force or forbid rule names.")
    tag = models.CharField(max_length=100, blank=True, help_text="The tag a tag rule adds.")

    class Meta:
        ordering = ["rule_set_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "position"], name="rule_unique_position"),
            models.UniqueConstraint(fields=["rule_set", "name"], name="rule_unique_name"),
            models.CheckConstraint(condition=Q(action__in=RuleAction.values), name="rule_action_valid"),
            models.CheckConstraint(
                condition=~Q(action__in=["force", "forbid"]) | ~Q(label=""), name="rule_label_for_force_and_forbid"
            ),
            models.CheckConstraint(condition=~Q(action="tag") | ~Q(tag=""), name="rule_tag_for_tag"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_set_id}#{self.position} {self.name}"

    def as_spec(self) -> dict:
        """Return the rule in the form `models_app.ml.rules.compile_rules` takes."""
        spec = {"name": self.name, "enabled": self.enabled, "conditions": self.conditions, "action": self.action}
        if self.action in (RuleAction.FORCE, RuleAction.FORBID):
            spec["label"] = self.label
        if self.action == RuleAction.TAG:
            spec["tag"] = self.tag
        return spec


class GateDecision(models.Model):
    """The evaluate-before-deploy gate's verdict on a candidate against the version published at the time."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gate_decisions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="gate_decisions")
    against = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The published version it was compared with; empty for a first version (compared with the "
        "majority-class baseline).",
    )  # fmt: skip
    rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    passed = models.BooleanField()
    reasons = models.JSONField(default=list, blank=True, help_text="One sentence per check, failed ones first.")
    checks = models.JSONField(default=list, blank=True, help_text="Each check: name, passed, detail, numbers.")
    comparison = models.JSONField(
        default=dict, blank=True, help_text="The shared holdout and both models' metrics on it, with and without rules."
    )
    created_at = models.DateTimeField(default=timezone.now)
    overridden_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    override_reason = models.TextField(blank=True)
    overridden_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(overridden_at__isnull=True) | ~Q(override_reason=""), name="gate_override_needs_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"gate {self.model_version_id}: {'passed' if self.passed else 'failed'}"


class Deployment(models.Model):
    """The project's published (model version, rule set): one row, switched atomically; serving reads it."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="deployment")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    serial = models.PositiveIntegerField(default=1, help_text="Grows by one at every switch.")
    switched_at = models.DateTimeField(default=timezone.now)
    switched_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.project_id}: model {self.model_version_id}, rules {self.rule_set_id}"


class DeploymentAction(models.TextChoices):
    PUBLISH = "publish", "Published a model that passed the gate"
    OVERRIDE = "override", "Published over the gate's objection"
    ROLLBACK = "rollback", "Rolled back to an earlier version"
    RULES = "rules", "Published a rule set"


class DeploymentEvent(models.Model):
    """One switch of the published pair, kept forever: who, when, from what, to what, and why."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployment_events")
    action = models.CharField(max_length=16, choices=DeploymentAction.choices)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    previous_model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    gate_decision = models.ForeignKey(GateDecision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True)
    by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=DeploymentAction.values), name="deployment_action_valid"),
            models.CheckConstraint(
                condition=~Q(action="override") | ~Q(reason=""), name="deployment_override_needs_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} {self.action} {self.model_version_id}"


class PredictionLog(models.Model):
    """One call of the prediction API: what answered, for whom, how fast, and the uncertain inputs fed back."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prediction_logs")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_number = models.PositiveIntegerField()
    rules_number = models.PositiveIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    count = models.PositiveIntegerField()
    abstained = models.PositiveIntegerField(default=0)
    low_confidence = models.PositiveIntegerField(default=0, help_text="Predictions below the feedback threshold.")
    predictions = models.JSONField(
        default=list, blank=True, help_text="Per text: [label, confidence, abstained, rules fired]."
    )
    feedback = models.JSONField(
        default=list, blank=True, help_text="The abstained or low-confidence inputs to queue: [{text, meta}]."
    )
    feedback_done_at = models.DateTimeField(null=True, blank=True)
    feedback_result = models.JSONField(default=dict, blank=True, help_text="Examples created and duplicates skipped.")
    duration_ms = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "created_at"], name="prediction_log_project_time")]

    def __str__(self) -> str:
        return f"predict {self.pk} ({self.count})"
