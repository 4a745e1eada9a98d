"""Build a labeler from its stored name and params."""

from __future__ import annotations

from typing import Any

from models_app.ml.llm.causal import CausalLMLabeler
from models_app.ml.llm.common import MISSING_PARAMS, UNKNOWN_LABELER, UNKNOWN_PARAMS, Labeler
from models_app.ml.llm.embedding import EmbeddingLabeler
from models_app.ml.llm.openai_http import OpenAILabeler

_SPEC_PARAMS: dict[str, tuple[set[str], set[str]]] = {
    "causal_lm": (
        set(),
        {"model_dir", "gguf_file", "prompt_version", "calibrate", "batch_size", "max_chars", "content_free"},
    ),
    "embedding": (set(), {"k", "temperature", "neighbour_weight"}),
    "openai": (
        {"base_url", "model"},
        {
            "api_key_env",
            "timeout",
            "max_retries",
            "backoff",
            "prompt_version",
            "use_logprobs",
            "no_logprobs_confidence",
            "max_tokens",
            "max_chars",
            "max_retry_after",
        },
    ),
}


def labeler_from_spec(name: str, params: dict[str, Any], *, threads: int | None = None) -> Labeler:
    """Build a labeler from its name and stored params (``params()`` of a labeler round-trips).

    ``threads`` is a per-worker setting for the local models and is ignored by ``openai``.
    """
    if name not in _SPEC_PARAMS:
        raise ValueError(UNKNOWN_LABELER.format(name=name))
    required, optional = _SPEC_PARAMS[name]
    unknown = sorted(set(params) - required - optional)
    if unknown:
        raise ValueError(UNKNOWN_PARAMS.format(name=name, keys=", ".join(unknown)))
    missing = sorted(required - set(params))
    if missing:
        raise ValueError(MISSING_PARAMS.format(name=name, keys=", ".join(missing)))
    if name == "causal_lm":
        kwargs = dict(params)
        if isinstance(kwargs.get("content_free"), list):
            kwargs["content_free"] = tuple(kwargs["content_free"])
        return CausalLMLabeler(**kwargs, threads=threads)
    if name == "embedding":
        return EmbeddingLabeler(**params, threads=threads)
    return OpenAILabeler(**params)
