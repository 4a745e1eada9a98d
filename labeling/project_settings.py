"""A project's labeling settings, read from `Project.settings` with defaults and bounds in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from .models import Project

ERROR_SETTING_RANGE = "{name} must be between {low} and {high}."
ERROR_SETTING_TYPE = "{name} must be {expected}."
ERROR_SETTING_CHOICE = "{name} must be one of {choices}."
ERROR_TEXT_LENGTH = "{name} must be text of at most {limit} characters."

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


def settings_fields_parse(
    cls: type[T],
    data: dict[str, Any],
    *,
    bounds: dict[str, tuple[float, float]],
    choices: dict[str, tuple[str, ...]] | None = None,
    text_limits: dict[str, int] | None = None,
) -> T:
    """Build a settings dataclass from a dict, each missing key keeping its default; ValueError names a bad value.

    A field listed in `choices` must be one of them; a bool must be true or false; a string is stripped and at most
    its `text_limits` long; any other field is a number within its `bounds`, of its default's type.
    """
    choices = choices or {}
    text_limits = text_limits or {}
    defaults = cls()
    values: dict[str, Any] = {}
    for item in fields(cls):
        name = item.name
        default = getattr(defaults, name)
        raw = data.get(name, default)
        if name in choices:
            if raw not in choices[name]:
                raise ValueError(ERROR_SETTING_CHOICE.format(name=name, choices=", ".join(choices[name])))
            values[name] = str(raw)
        elif isinstance(default, bool):
            if not isinstance(raw, bool):
                raise ValueError(ERROR_SETTING_TYPE.format(name=name, expected="true or false"))
            values[name] = raw
        elif isinstance(default, str):
            if not isinstance(raw, str) or len(raw) > text_limits[name]:
                raise ValueError(ERROR_TEXT_LENGTH.format(name=name, limit=text_limits[name]))
            values[name] = raw.strip()
        else:
            values[name] = setting_number_parse(name, raw, default=default, bounds=bounds[name])
    return cls(**values)


def labeling_settings_parse(data: dict[str, Any]) -> LabelingSettings:
    """Validate a dict of settings (missing keys keep their defaults); raise ValueError with a clear message."""
    return settings_fields_parse(LabelingSettings, data, bounds=BOUNDS)


def labeling_settings_as_dict(settings: LabelingSettings) -> dict[str, Any]:
    return asdict(settings)
