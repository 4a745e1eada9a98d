"""Shared pieces of the LLM labelers: label and result types, prompts, error messages, input checks, softmax."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from models_app.ml.featurizers import clean_text

LABELERS = ("causal_lm", "embedding", "openai")

UNKNOWN_LABELER = "Unknown labeler {name!r}: choose one of " + ", ".join(LABELERS) + "."
UNKNOWN_PARAMS = "Unknown params for the {name} labeler: {keys}."
MISSING_PARAMS = "Missing params for the {name} labeler: {keys}."
UNKNOWN_PROMPT = "Unknown prompt_version {version!r} for the {labeler} labeler: choose one of {choices}."
NO_LABELS = "At least one label is needed to label texts."
DUPLICATE_LABELS = "Label names must be unique and non-empty, got {names}."
FEW_SHOT_LENGTH = "few_shot needs one list of shots per text: {shots} lists for {texts} texts."
BAD_POSITIVE_INT = "{field} must be a positive integer, got {value!r}."
BAD_NON_NEGATIVE_INT = "{field} must be a non-negative integer, got {value!r}."
BAD_POSITIVE_NUMBER = "{field} must be a positive number, got {value!r}."
BAD_NON_NEGATIVE_NUMBER = "{field} must be a non-negative number, got {value!r}."
BAD_FRACTION = "{field} must be a number between 0 and 1, got {value!r}."
BAD_BOOL = "{field} must be True or False, got {value!r}."
BAD_TEXT = "{field} must be a non-empty string, got {value!r}."
BAD_CONTENT_FREE = "content_free must be a non-empty list of strings, got {value!r}."
BAD_ENCODER_OUTPUT = "The encoder returned shape {shape} for {count} texts; it must return one vector per text."
HTTP_FAILED = "The labeling endpoint {url} failed with HTTP {status} after {attempts} attempt(s): {body}"
HTTP_UNREACHABLE = "The labeling endpoint {url} could not be reached after {attempts} attempt(s): {error}."
HTTP_BAD_RESPONSE = "The labeling endpoint {url} answered with a body that is not a chat completion: {body}"

ProgressCallback = Callable[[int, int], None]


class LabelerError(Exception):
    """A labeler could not produce labels (an endpoint failed or answered nonsense); the message says why."""


@dataclass(frozen=True)
class LabelSpec:
    """One label of the project as the labelers see it: the name to answer with and what it means."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class Shot:
    """One labeled example shown to a labeler alongside a text."""

    text: str
    label: str


@dataclass(frozen=True)
class LabelerResult:
    """Label probabilities, one row per text and one column per label in the order given, with their provenance.

    ``details`` holds JSON values, except ``uncalibrated`` (an ndarray like ``proba``) where a labeler calibrates.
    """

    proba: np.ndarray
    labeler: str
    model: str
    prompt_version: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Labeler(Protocol):
    """What pre-labeling needs from a labeler."""

    name: ClassVar[str]

    def params(self) -> dict[str, Any]: ...

    def predict_proba(
        self,
        texts: Sequence[str],
        labels: Sequence[LabelSpec],
        few_shot: Sequence[Sequence[Shot]] | None = None,
        progress: ProgressCallback | None = None,
    ) -> LabelerResult: ...


@dataclass(frozen=True)
class PromptTemplate:
    """One versioned prompt: the system message, the user message per text, and the form of the answer.

    ``system`` takes ``{labels}`` (one ``- name: description`` line per label); ``user`` takes ``{text}``. ``answer``
    is ``"plain"`` (the label name) or ``"json"`` (``{"label": name}``). ``cue`` ends a plain-text prompt for models
    without a chat template.
    """

    system: str
    user: str
    answer: str
    cue: str = "Label:"


PROMPTS: dict[str, PromptTemplate] = {
    "causal-v1": PromptTemplate(
        system=(
            "Classify the text into exactly one of these labels.\n{labels}\nAnswer with the label name only, "
            "exactly as written."
        ),
        user="Text: {text}",
        answer="plain",
    ),
    "openai-v1": PromptTemplate(
        system=(
            "Classify the text into exactly one of these labels.\n{labels}\n"
            'Answer with JSON of the form {{"label": "<label name>"}}, using a label name exactly as written.'
        ),
        user="Text: {text}",
        answer="json",
    ),
}


# ---------------------------------------------------------------------------------------------------------------------
# Shared helpers


def prompt_text(text: str, max_chars: int) -> str:
    """Clean a text from data for a prompt: unescape entities, collapse whitespace, cut to ``max_chars``."""
    return " ".join(clean_text(text).replace("\ufeff", "").split())[:max_chars].strip()


def _label_lines(labels: Sequence[LabelSpec]) -> str:
    """List the labels one per line, with their descriptions cleaned like any text from data."""
    lines = []
    for label in labels:
        description = prompt_text(label.description, 1000)
        lines.append(f"- {label.name}: {description}" if description else f"- {label.name}")
    return "\n".join(lines)


def _check_labels(labels: Sequence[LabelSpec]) -> list[str]:
    """Refuse an empty or ambiguous label set, so every column of ``proba`` means exactly one label."""
    names = [label.name for label in labels]
    if not names:
        raise ValueError(NO_LABELS)
    if len(set(names)) != len(names) or not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError(DUPLICATE_LABELS.format(names=names))
    return names


def _check_few_shot(texts: Sequence[str], few_shot: Sequence[Sequence[Shot]] | None) -> list[list[Shot]]:
    """Return one (possibly empty) list of shots per text, refusing lists that do not line up with the texts."""
    if few_shot is None:
        return [[] for _ in texts]
    if len(few_shot) != len(texts):
        raise ValueError(FEW_SHOT_LENGTH.format(shots=len(few_shot), texts=len(texts)))
    return [list(shots) for shots in few_shot]


def _check_prompt(version: str, labeler: str) -> PromptTemplate:
    """Return the prompt template of a version this labeler can use, or refuse it with the versions it can."""
    prefix = "causal-" if labeler == "causal_lm" else "openai-"
    choices = sorted(key for key in PROMPTS if key.startswith(prefix))
    if version not in choices:
        raise ValueError(UNKNOWN_PROMPT.format(version=version, labeler=labeler, choices=", ".join(choices)))
    return PROMPTS[version]


def _check_positive_int(name: str, value: object) -> None:
    """Reject non-integers and zero, so a bad spec fails when it is built, not halfway through a batch."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(BAD_POSITIVE_INT.format(field=name, value=value))


def _check_non_negative_int(name: str, value: object) -> None:
    """Reject non-integers and negative counts."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(BAD_NON_NEGATIVE_INT.format(field=name, value=value))


def _check_number(name: str, value: object, *, positive: bool = True) -> None:
    """Reject non-numbers, NaN and infinities, and zero or negatives as asked."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError((BAD_POSITIVE_NUMBER if positive else BAD_NON_NEGATIVE_NUMBER).format(field=name, value=value))


def _check_fraction(name: str, value: object) -> None:
    """Reject anything that is not a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(BAD_FRACTION.format(field=name, value=value))


def _check_bool(name: str, value: object) -> None:
    """Reject truthy non-booleans such as ``"false"``, which would silently mean True."""
    if not isinstance(value, bool):
        raise ValueError(BAD_BOOL.format(field=name, value=value))


def _softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return the softmax of log-scores along an axis, stable for very negative scores."""
    shifted = scores - scores.max(axis=axis, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=axis, keepdims=True)


def _logsumexp(scores: np.ndarray, axis: int) -> np.ndarray:
    """Return log(sum(exp(scores))) along an axis without overflow."""
    top = scores.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(scores - top).sum(axis=axis, keepdims=True))).squeeze(axis)
