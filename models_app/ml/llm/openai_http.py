"""The OpenAI-compatible labeler: chat-completions requests with retries, answers read through token log-probs."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models_app.ml.llm.common import (
    BAD_TEXT,
    HTTP_BAD_RESPONSE,
    HTTP_FAILED,
    HTTP_UNREACHABLE,
    PROMPTS,
    LabelerError,
    LabelerResult,
    LabelSpec,
    ProgressCallback,
    Shot,
    _check_bool,
    _check_few_shot,
    _check_fraction,
    _check_labels,
    _check_non_negative_int,
    _check_number,
    _check_positive_int,
    _check_prompt,
    _label_lines,
    prompt_text,
)

logger = logging.getLogger(__name__)

# Longest wait a Retry-After header may impose between two attempts, in seconds.
MAX_RETRY_AFTER = 30.0

_JSON_VALUE_START = re.compile(r'"label"\s*:\s*"')


def _match_label(answer: str, names: Sequence[str]) -> int | None:
    """Return the column of the label an answer names (case-insensitive, quotes and punctuation ignored), if any."""
    cleaned = answer.strip().strip("\"'`.,;:!").strip().lower()
    for index, name in enumerate(names):
        if cleaned == name.strip().lower():
            return index
    return None


def _parse_answer(content: str, names: Sequence[str]) -> tuple[int | None, int | None]:
    """Return the answered label's column and the character offset where its name starts in the content.

    A JSON object ``{"label": ...}`` is read first; any other content is taken as a plain-text label name.
    """
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("label"), str):
        found = _JSON_VALUE_START.search(content)
        return _match_label(data["label"], names), found.end() if found else None
    return _match_label(content, names), len(content) - len(content.lstrip())


def _consistent(token: str, remaining: str) -> bool:
    """Tell whether a token can continue the rest of a label: a piece of it, or all of it then a non-letter."""
    token, remaining = token.lower(), remaining.lower()
    if not token:
        return False
    if remaining.startswith(token):
        return True
    return token.startswith(remaining) and not token[len(remaining) : len(remaining) + 1].isalnum()


def _logprob_distribution(content: str, tokens: list[dict[str, Any]], start: int, names: Sequence[str]) -> np.ndarray:
    """Turn the answer's token log-probs into label masses, summing every path through the top alternatives.

    Walking the answered tokens from the one holding the label's first character, a label collects
    ``p(answered tokens so far) × p(alternative)`` for every top alternative that continues its name, and the full
    path probability when the answered tokens spell it out. A path that leaves the answered tokens is assumed to
    finish its label (top_logprobs says nothing beyond it). Mass on tokens that continue no label is dropped; the
    caller renormalises. Returns zeros when the tokens do not spell the content.
    """
    masses = np.zeros(len(names))
    texts = [str(token.get("token", "")) for token in tokens]
    if "".join(texts) != content:
        return masses
    offsets = np.cumsum([0] + [len(text) for text in texts])
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    if not 0 <= first < len(tokens):
        return masses
    lead = content[offsets[first] : start]
    for column, name in enumerate(names):
        target = lead + name
        position = 0
        path = 0.0
        for index in range(first, len(tokens)):
            remaining = target[position:]
            answered = texts[index]
            for alternative in tokens[index].get("top_logprobs") or []:
                text = str(alternative.get("token", ""))
                if text == answered:
                    continue
                check_text, check_remaining = text, remaining
                if index == first:
                    check_text, check_remaining = text.lstrip(), remaining.lstrip()
                if _consistent(check_text, check_remaining):
                    masses[column] += math.exp(path + float(alternative.get("logprob", -math.inf)))
            if not _consistent(answered, remaining):
                break
            path += float(tokens[index].get("logprob", -math.inf))
            if len(answered) >= len(remaining):
                masses[column] += math.exp(path)
                break
            position += len(answered)
    return masses


def _retry_after(value: str | None) -> float | None:
    """Return the seconds a Retry-After header asks for, or None when it is absent or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class OpenAILabeler:
    """Ask an OpenAI-compatible chat-completions endpoint for a label per text, with log-probs when offered.

    The request asks for ``{"label": <one of the names>}`` through ``response_format`` (a JSON schema whose enum is
    the label names), at temperature 0; a plain-text answer naming a label is accepted too (case-insensitive). An
    answer naming no label gives that row a uniform distribution and counts in ``details["unparsed"]``.

    Probabilities: with ``use_logprobs`` and log-probs in the answer, the top alternatives at the label's tokens are
    matched to label-name prefixes (see ``_logprob_distribution``), mass on other tokens dropped, and renormalised.
    Without them, the answered label gets ``no_logprobs_confidence`` and the rest is spread evenly over the others.

    Connection errors, timeouts, 429 and 5xx are retried up to ``max_retries`` times after waiting
    ``backoff × 2^attempt`` seconds, or the Retry-After header's seconds (at most ``max_retry_after``); other 4xx
    fail at once. The API key is read from the environment variable ``api_key_env`` at each call, sent as a Bearer
    token, and kept out of logs, errors and details.
    """

    name: ClassVar[str] = "openai"

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 30.0
    max_retries: int = 3
    backoff: float = 0.5
    prompt_version: str = "openai-v1"
    use_logprobs: bool = True
    no_logprobs_confidence: float = 0.9
    max_tokens: int = 32
    max_chars: int = 1000
    max_retry_after: float = MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        """Validate eagerly, so a bad spec is refused before any request."""
        _check_prompt(self.prompt_version, self.name)
        for name in ("base_url", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(BAD_TEXT.format(field=name, value=value))
        if not isinstance(self.api_key_env, str):
            raise ValueError(BAD_TEXT.format(field="api_key_env", value=self.api_key_env))
        _check_number("timeout", self.timeout)
        _check_non_negative_int("max_retries", self.max_retries)
        _check_number("backoff", self.backoff, positive=False)
        _check_number("max_retry_after", self.max_retry_after, positive=False)
        _check_bool("use_logprobs", self.use_logprobs)
        _check_fraction("no_logprobs_confidence", self.no_logprobs_confidence)
        _check_positive_int("max_tokens", self.max_tokens)
        _check_positive_int("max_chars", self.max_chars)

    def params(self) -> dict[str, Any]:
        """Return the params as JSON values, which ``labeler_from_spec`` turns back into this labeler."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "prompt_version": self.prompt_version,
            "use_logprobs": self.use_logprobs,
            "no_logprobs_confidence": self.no_logprobs_confidence,
            "max_tokens": self.max_tokens,
            "max_chars": self.max_chars,
            "max_retry_after": self.max_retry_after,
        }

    @property
    def url(self) -> str:
        """Return the chat-completions URL under ``base_url``."""
        return self.base_url.rstrip("/") + "/chat/completions"

    def request_body(self, text: str, labels: Sequence[LabelSpec], shots: Sequence[Shot] = ()) -> dict[str, Any]:
        """Build the JSON body for one text: system task and labels, shots as turns, the text, constrained answer."""
        template = PROMPTS[self.prompt_version]
        messages = [{"role": "system", "content": template.system.format(labels=_label_lines(labels))}]
        for shot in shots:
            messages.append(
                {"role": "user", "content": template.user.format(text=prompt_text(shot.text, self.max_chars))}
            )
            messages.append({"role": "assistant", "content": json.dumps({"label": shot.label})})
        messages.append({"role": "user", "content": template.user.format(text=prompt_text(text, self.max_chars))})
        schema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": [label.name for label in labels]}},
            "required": ["label"],
            "additionalProperties": False,
        }
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "label", "strict": True, "schema": schema},
            },
        }
        if self.use_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = 5
        return body

    def _redact(self, text: str, key: str) -> str:
        """Cut a response body for an error message and remove the API key should the server echo it."""
        text = text[:300]
        return text.replace(key, "[redacted]") if key else text

    def _post(self, session: Any, body: dict[str, Any], key: str) -> tuple[dict[str, Any], int]:
        """POST one request, retrying transient failures; return the decoded JSON and the retries it took."""
        import requests

        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            wait = self.backoff * 2**attempt
            try:
                response = session.post(self.url, json=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                transient = isinstance(exc, requests.ConnectionError | requests.Timeout)
                if not transient or attempt + 1 == attempts:
                    error = self._redact(type(exc).__name__ + ": " + str(exc), key)
                    raise LabelerError(
                        HTTP_UNREACHABLE.format(url=self.url, attempts=attempt + 1, error=error)
                    ) from None
                logger.warning("Labeling endpoint %s: %s, retrying in %.2fs", self.url, type(exc).__name__, wait)
                time.sleep(wait)
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                if attempt + 1 == attempts:
                    raise LabelerError(
                        HTTP_FAILED.format(
                            url=self.url, status=status, attempts=attempts, body=self._redact(response.text, key)
                        )
                    )
                asked = _retry_after(response.headers.get("Retry-After"))
                wait = min(asked, self.max_retry_after) if asked is not None else wait
                logger.warning("Labeling endpoint %s: HTTP %s, retrying in %.2fs", self.url, status, wait)
                time.sleep(wait)
                continue
            if status >= 400:
                raise LabelerError(
                    HTTP_FAILED.format(
                        url=self.url, status=status, attempts=attempt + 1, body=self._redact(response.text, key)
                    )
                )
            try:
                return response.json(), attempt
            except ValueError:
                raise LabelerError(
                    HTTP_BAD_RESPONSE.format(url=self.url, body=self._redact(response.text, key))
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _row(self, data: dict[str, Any], names: Sequence[str], key: str) -> tuple[np.ndarray, str]:
        """Turn one chat completion into a distribution over labels and how it was read."""
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LabelerError(
                HTTP_BAD_RESPONSE.format(url=self.url, body=self._redact(json.dumps(data), key))
            ) from None
        column, start = _parse_answer(content, names)
        if column is None:
            return np.full(len(names), 1.0 / len(names)), "unparsed"
        if self.use_logprobs and start is not None:
            tokens = ((choice.get("logprobs") or {}).get("content")) or []
            masses = _logprob_distribution(content, tokens, start, names) if tokens else np.zeros(len(names))
            if masses.sum() > 0:
                return masses / masses.sum(), "logprobs"
        if len(names) == 1:
            return np.ones(1), "answer"
        row = np.full(len(names), (1.0 - self.no_logprobs_confidence) / (len(names) - 1))
        row[column] = self.no_logprobs_confidence
        return row, "answer"

    def predict_proba(
        self,
        texts: Sequence[str],
        labels: Sequence[LabelSpec],
        few_shot: Sequence[Sequence[Shot]] | None = None,
        progress: ProgressCallback | None = None,
    ) -> LabelerResult:
        """Return label probabilities per text, one request per text."""
        import requests

        names = _check_labels(labels)
        shots_per_text = _check_few_shot(texts, few_shot)
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        proba = np.zeros((len(texts), len(names)))
        counts = {"logprobs": 0, "answer": 0, "unparsed": 0}
        retries = 0
        with requests.Session() as session:
            for row, (text, shots) in enumerate(zip(texts, shots_per_text, strict=True)):
                data, used = self._post(session, self.request_body(text, labels, shots), key)
                retries += used
                proba[row], how = self._row(data, names, key)
                counts[how] += 1
                if progress is not None:
                    progress(row + 1, len(texts))
        details = {
            "retries": retries,
            "unparsed": counts["unparsed"],
            "from_logprobs": counts["logprobs"],
            "from_answer": counts["answer"],
        }
        return LabelerResult(proba, self.name, self.model, self.prompt_version, details)
