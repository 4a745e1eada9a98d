"""A project's labeling settings, read from `Project.settings` with defaults and bounds in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from .models import Project

ERROR_SETTING_RANGE = "{name} must be between {low} and {high}."
ERROR_SETTING_TYPE = "{name} must be {expected}."

T = TypeVar("T")


@dataclass(frozen=True)
class LabelingSettings:
    """How the queue hands out work: overlap, lease length, gold checks and suggestions."""

    # Distinct annotators who label each example.
    overlap: int = 1
    # Minutes a claimed item stays reserved without a heartbeat from the open page.
    lease_minutes: int = 10
    # Share of claims that serve a gold example (a known answer), when the project has gold examples.
    gold_rate: float = 0.05
    # Show the model's or an LLM's suggestion on the annotate page (off by default: it anchors people).
    show_suggestions: bool = False
    # A new annotator's first this-many items come from the curriculum: the easiest items first (0 turns it off).
    curriculum_items: int = 0


BOUNDS: dict[str, tuple[float, float]] = {
    "overlap": (1, 5),
    "lease_minutes": (1, 120),
    "gold_rate": (0.0, 0.5),
    "curriculum_items": (0, 500),
}


def settings_section_get(project: Project, section: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """Parse `project.settings[section]`; each missing or unusable stored value falls back to its default alone."""
    stored = (project.settings or {}).get(section) or {}
    if not isinstance(stored, dict):
        return parse({})
    try:
        return parse(stored)
    except ValueError:
        usable = {}
        for name, value in stored.items():
            try:
                parse({name: value})
            except ValueError:
                continue
            usable[name] = value
        return parse(usable)


def setting_number_parse(name: str, raw: Any, *, default: float, bounds: tuple[float, float]) -> Any:
    """Return `raw` as the default's type (int or float) when it is a number within bounds; ValueError otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(ERROR_SETTING_TYPE.format(name=name, expected="a number"))
    if isinstance(default, int) and raw != int(raw):
        raise ValueError(ERROR_SETTING_TYPE.format(name=name, expected="a whole number"))
    low, high = bounds
    if not low <= raw <= high:
        raise ValueError(ERROR_SETTING_RANGE.format(name=name, low=low, high=high))
    return type(default)(raw)


def labeling_settings_get(project: Project) -> LabelingSettings:
    """Return the project's labeling settings; each missing or unusable stored value falls back to its default."""
    return settings_section_get(project, "labeling", labeling_settings_parse)


def labeling_settings_parse(data: dict[str, Any]) -> LabelingSettings:
    """Validate a dict of settings (missing keys keep their defaults); raise ValueError with a clear message."""
    defaults = LabelingSettings()
    values: dict[str, Any] = {}
    for item in fields(LabelingSettings):
        name = item.name
        raw = data.get(name, getattr(defaults, name))
        default = getattr(defaults, name)
        if isinstance(default, bool):
            if not isinstance(raw, bool):
                raise ValueError(ERROR_SETTING_TYPE.format(name=name, expected="true or false"))
            values[name] = raw
            continue
        values[name] = setting_number_parse(name, raw, default=default, bounds=BOUNDS[name])
    return LabelingSettings(**values)


def labeling_settings_as_dict(settings: LabelingSettings) -> dict[str, Any]:
    return asdict(settings)
