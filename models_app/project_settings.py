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


__all__ = [
    "ERROR_SETTING_CHOICE",
    "ERROR_SETTING_RANGE",
    "ERROR_SETTING_TYPE",
    "LearningSettings",
    "learning_settings_as_dict",
    "learning_settings_get",
    "learning_settings_parse",
]
