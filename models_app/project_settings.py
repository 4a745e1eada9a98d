"""A project's learning settings, read from `Project.settings["learning"]` with defaults and bounds in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from labeling.models import Project
from labeling.project_settings import (  # the messages are shared with labeling settings
    ERROR_SETTING_CHOICE,
    ERROR_SETTING_RANGE,
    ERROR_SETTING_TYPE,
    settings_fields_parse,
    settings_section_get,
)

from .models import FeaturizerName


@dataclass(frozen=True)
class LearningSettings:
    """How the project's models are built: the featurizer, the holdout, and when retraining starts."""

    # The featurizer whose vectors training, scoring and serving use (one of FeaturizerName).
    featurizer: str = FeaturizerName.HASHING.value
    # Share of the human-labeled examples, the newest by source time, held out for evaluation.
    holdout_share: float = 0.2
    # Retrain after this many new human labels since the last run started.
    retrain_every_labels: int = 50
    # Weight of an LLM's label in training, relative to a person's label (1.0).
    llm_label_weight: float = 0.5
    # Retrain at least this often, in hours, when anything changed; 0 turns the schedule off.
    schedule_hours: int = 24


BOUNDS: dict[str, tuple[float, float]] = {
    "holdout_share": (0.05, 0.5),
    "retrain_every_labels": (1, 100_000),
    "llm_label_weight": (0.0, 1.0),
    "schedule_hours": (0, 24 * 30),
}
CHOICES: dict[str, tuple[str, ...]] = {"featurizer": tuple(FeaturizerName.values)}


def learning_settings_get(project: Project) -> LearningSettings:
    """Return the project's learning settings; each missing or unusable stored value falls back to its default."""
    return settings_section_get(project, "learning", learning_settings_parse)


def learning_settings_parse(data: dict[str, Any]) -> LearningSettings:
    """Validate a dict of settings (missing keys keep their defaults); raise ValueError with a clear message."""
    return settings_fields_parse(LearningSettings, data, bounds=BOUNDS, choices=CHOICES)


def learning_settings_as_dict(settings: LearningSettings) -> dict[str, Any]:
    return asdict(settings)


@dataclass(frozen=True)
class QueueSettings:
    """How the cascade fills the front of the queue after each model: the slice, the sources' shares, the filters."""

    # Uncertainty measure of the "uncertain" source (least_confidence, margin or entropy).
    uncertainty: str = "entropy"
    # Items each rebuild ranks to the front of the queue; the rest wait in random (exploration) order behind them.
    slice_size: int = 500
    # Shares of the slice per source. A source without candidates (no LLM labels yet, no feedback) gives its
    # slots to the others in proportion to their shares; exploration keeps its share whenever it has candidates.
    quota_uncertain: float = 0.5
    quota_hard_negative: float = 0.15
    quota_label_error: float = 0.05
    quota_llm_disagrees: float = 0.1
    quota_feedback: float = 0.1
    quota_exploration: float = 0.1
    # Cosine similarity at or above which two items of one slice count as near duplicates (only the first stays).
    near_duplicate: float = 0.95
    # Metadata field whose values stratify exploration ("" picks one automatically when the data has one).
    stratify_by: str = ""

    def quotas(self) -> dict[str, float]:
        return {
            "uncertain": self.quota_uncertain,
            "hard_negative": self.quota_hard_negative,
            "label_error": self.quota_label_error,
            "llm_disagrees": self.quota_llm_disagrees,
            "feedback": self.quota_feedback,
            "exploration": self.quota_exploration,
        }


QUEUE_BOUNDS: dict[str, tuple[float, float]] = {
    "slice_size": (20, 20_000),
    "quota_uncertain": (0.0, 1.0),
    "quota_hard_negative": (0.0, 1.0),
    "quota_label_error": (0.0, 1.0),
    "quota_llm_disagrees": (0.0, 1.0),
    "quota_feedback": (0.0, 1.0),
    "quota_exploration": (0.0, 1.0),
    "near_duplicate": (0.5, 1.0),
}
QUEUE_CHOICES: dict[str, tuple[str, ...]] = {"uncertainty": ("least_confidence", "margin", "entropy")}
ERROR_QUOTAS_ZERO = "At least one source needs a share above 0."


@dataclass(frozen=True)
class LLMSettings:
    """Which LLM labeler pre-labels the project, how, and how far its labels are trusted without review."""

    # causal_lm (a local model scoring each label), embedding (MiniLM similarity + neighbours) or openai (HTTP).
    labeler: str = "causal_lm"
    # causal_lm: a local Hugging Face model folder; empty uses the bundled SmolLM2-135M-Instruct.
    model_dir: str = ""
    # openai: the endpoint (e.g. http://127.0.0.1:8080/v1), its model name, and the environment variable that
    # holds the key (the key itself is never stored).
    base_url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    # Nearest labeled examples shown to the labeler with each text.
    few_shot: int = 3
    # causal_lm: divide out the label prior the model gives content-free inputs (contextual calibration).
    calibrate: bool = True
    # Accept LLM labels whose confidence reaches the calibrated threshold, without review.
    auto_accept: bool = False
    # The precision auto-accepted labels must reach, by a 95% lower confidence bound on reviewed examples.
    target_precision: float = 0.95

    def labeler_params(self) -> dict[str, Any]:
        """The params `labeler_from_spec` takes for the chosen labeler."""
        if self.labeler == "causal_lm":
            return {"model_dir": self.model_dir or None, "calibrate": self.calibrate}
        if self.labeler == "openai":
            return {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env}
        return {}


LLM_BOUNDS: dict[str, tuple[float, float]] = {"few_shot": (0, 10), "target_precision": (0.5, 0.999)}
LLM_CHOICES: dict[str, tuple[str, ...]] = {"labeler": ("causal_lm", "embedding", "openai")}
LLM_TEXT_LIMITS: dict[str, int] = {"model_dir": 500, "base_url": 500, "model": 200, "api_key_env": 100}
ERROR_OPENAI_NEEDS = "The openai labeler needs base_url and model."
ERROR_BASE_URL = "base_url must start with http:// or https://."


def llm_settings_get(project: Project) -> LLMSettings:
    """Return the project's LLM settings; each missing or unusable stored value falls back to its default."""
    return settings_section_get(project, "llm", llm_settings_parse)


def llm_settings_parse(data: dict[str, Any]) -> LLMSettings:
    """Validate a dict of LLM settings (missing keys keep their defaults); raise ValueError with a clear message."""
    settings = settings_fields_parse(
        LLMSettings, data, bounds=LLM_BOUNDS, choices=LLM_CHOICES, text_limits=LLM_TEXT_LIMITS
    )
    if settings.base_url and not settings.base_url.startswith(("http://", "https://")):
        raise ValueError(ERROR_BASE_URL)
    if settings.labeler == "openai" and not (settings.base_url and settings.model):
        raise ValueError(ERROR_OPENAI_NEEDS)
    return settings


def queue_settings_get(project: Project) -> QueueSettings:
    """Return the project's queue settings; each missing or unusable stored value falls back to its default."""
    return settings_section_get(project, "queue", queue_settings_parse)


def queue_settings_parse(data: dict[str, Any]) -> QueueSettings:
    """Validate a dict of queue settings (missing keys keep their defaults); raise ValueError with a clear message."""
    settings = settings_fields_parse(
        QueueSettings, data, bounds=QUEUE_BOUNDS, choices=QUEUE_CHOICES, text_limits={"stratify_by": 100}
    )
    if not any(share > 0 for share in settings.quotas().values()):
        raise ValueError(ERROR_QUOTAS_ZERO)
    return settings


@dataclass(frozen=True)
class ServingSettings:
    """How a model reaches users: the gate's thresholds, publishing, and which predictions come back as work."""

    # Publish a candidate that passes the gate right away; off, an admin publishes it from its page.
    auto_publish: bool = True
    # The candidate's macro-F1 may be at most this much below the published model's.
    gate_tolerance: float = 0.0
    # No class's recall may drop by more than this against the published model.
    gate_recall_drop: float = 0.05
    # The shared holdout needs at least this many examples for the gate to decide.
    gate_min_holdout: int = 30
    # Predictions below this confidence, and abstentions, become feedback examples in the queue.
    feedback_threshold: float = 0.6
    # Turn feedback off to serve without adding examples to the project.
    feedback: bool = True
    # At most this many feedback examples a day (UTC), so heavy uncertain traffic cannot flood the queue.
    feedback_per_day: int = 1000


SERVING_BOUNDS: dict[str, tuple[float, float]] = {
    "gate_tolerance": (0.0, 0.5),
    "gate_recall_drop": (0.0, 1.0),
    "gate_min_holdout": (1, 100_000),
    "feedback_threshold": (0.0, 1.0),
    "feedback_per_day": (0, 1_000_000),
}


def serving_settings_get(project: Project) -> ServingSettings:
    """Return the project's serving settings; each missing or unusable stored value falls back to its default."""
    return settings_section_get(project, "serving", serving_settings_parse)


def serving_settings_parse(data: dict[str, Any]) -> ServingSettings:
    """Validate a dict of serving settings (missing keys keep their defaults); raise ValueError with a clear message."""
    return settings_fields_parse(ServingSettings, data, bounds=SERVING_BOUNDS)


__all__ = [
    "ERROR_SETTING_CHOICE",
    "ERROR_SETTING_RANGE",
    "ERROR_SETTING_TYPE",
    "LearningSettings",
    "learning_settings_as_dict",
    "learning_settings_get",
    "learning_settings_parse",
    "LLMSettings",
    "llm_settings_get",
    "llm_settings_parse",
    "QueueSettings",
    "queue_settings_get",
    "queue_settings_parse",
    "ServingSettings",
    "serving_settings_get",
    "serving_settings_parse",
]
