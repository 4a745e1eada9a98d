"""A project's learning settings, read from `Project.settings["learning"]` with defaults and bounds in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from labeling.models import Project
from labeling.project_settings import (  # the messages are shared with labeling settings
    ERROR_SETTING_RANGE,
    ERROR_SETTING_TYPE,
    setting_number_parse,
    settings_section_get,
)

from .models import FeaturizerName

ERROR_SETTING_CHOICE = "{name} must be one of {choices}."


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
    defaults = LearningSettings()
    values: dict[str, Any] = {}
    for item in fields(LearningSettings):
        name = item.name
        default = getattr(defaults, name)
        raw = data.get(name, default)
        if name in CHOICES:
            if raw not in CHOICES[name]:
                raise ValueError(ERROR_SETTING_CHOICE.format(name=name, choices=", ".join(CHOICES[name])))
            values[name] = str(raw)
            continue
        values[name] = setting_number_parse(name, raw, default=default, bounds=BOUNDS[name])
    return LearningSettings(**values)


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
ERROR_TEXT_LENGTH = "{name} must be text of at most {limit} characters."


def queue_settings_get(project: Project) -> QueueSettings:
    """Return the project's queue settings; each missing or unusable stored value falls back to its default."""
    return settings_section_get(project, "queue", queue_settings_parse)


def queue_settings_parse(data: dict[str, Any]) -> QueueSettings:
    """Validate a dict of queue settings (missing keys keep their defaults); raise ValueError with a clear message."""
    defaults = QueueSettings()
    values: dict[str, Any] = {}
    for item in fields(QueueSettings):
        name = item.name
        default = getattr(defaults, name)
        raw = data.get(name, default)
        if name in QUEUE_CHOICES:
            if raw not in QUEUE_CHOICES[name]:
                raise ValueError(ERROR_SETTING_CHOICE.format(name=name, choices=", ".join(QUEUE_CHOICES[name])))
            values[name] = str(raw)
        elif name == "stratify_by":
            if not isinstance(raw, str) or len(raw) > 100:
                raise ValueError(ERROR_TEXT_LENGTH.format(name=name, limit=100))
            values[name] = raw.strip()
        else:
            values[name] = setting_number_parse(name, raw, default=default, bounds=QUEUE_BOUNDS[name])
    settings = QueueSettings(**values)
    if not any(share > 0 for share in settings.quotas().values()):
        raise ValueError(ERROR_QUOTAS_ZERO)
    return settings


__all__ = [
    "ERROR_SETTING_CHOICE",
    "ERROR_SETTING_RANGE",
    "ERROR_SETTING_TYPE",
    "LearningSettings",
    "learning_settings_as_dict",
    "learning_settings_get",
    "learning_settings_parse",
    "QueueSettings",
    "queue_settings_get",
    "queue_settings_parse",
]
