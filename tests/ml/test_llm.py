"""LLM labelers: scores are exact log-likelihoods, calibration flattens content-free inputs, endpoints fail safely.

The causal LM tests run on a tiny random Llama built offline for the session; SmolLM2 runs once, marked slow. The
OpenAI labeler talks to a local HTTP server speaking the chat-completions wire format.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from models_app.ml.llm import (
    DUPLICATE_LABELS,
    FEW_SHOT_LENGTH,
    LABELERS,
    MISSING_PARAMS,
    PROMPTS,
    UNKNOWN_LABELER,
    UNKNOWN_PARAMS,
    UNKNOWN_PROMPT,
    CausalLMLabeler,
    EmbeddingLabeler,
    Labeler,
    LabelerError,
    LabelerResult,
    LabelSpec,
    OpenAILabeler,
    Shot,
    labeler_from_spec,
    prompt_text,
)

LABELS = [
    LabelSpec("positive", "The writer is happy."),
    LabelSpec("negative", "The writer complains."),
    LabelSpec("neutral and long label name", "Neither."),
]
NAMES = [label.name for label in LABELS]
TEXTS = ["I love this film", "terrible flight, refund please", "the cat sat on the mat", "ok"]
SHOT_A = [Shot("great movie", "positive"), Shot("awful", "negative")]
SHOT_B = [Shot("the dog sat", "neutral and long label name")]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NO_SYSTEM = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('no system role') }}"
    "{% endif %}{{ '[' + message['role'] + '] ' + message['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)
KEY = "sk-test-7f3a9c-very-secret"


# ---------------------------------------------------------------------------------------------------------------------
# A tiny causal LM, built offline


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Train a byte-level BPE tokenizer and save a random 1-layer Llama with it: plain, ChatML and no-system chat."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "on",
        "mat",
        "great",
        "terrible",
        "love",
        "hate",
        "this",
        "film",
        "movie",
        "flight",
        "refund",
        "please",
        "cancelled",
        "thank",
        "you",
        "so",
        "much",
        "positive",
        "negative",
        "neutral",
        "and",
        "long",
        "label",
        "name",
        "text",
        "classify",
        "into",
        "exactly",
        "one",
        "of",
        "these",
        "labels",
        "answer",
        "with",
        "only",
        "as",
        "written",
        "writer",
        "is",
        "happy",
        "complains",
        "neither",
        "awful",
        "ok",
    ]
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 3
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,  # larger than usual, so the scores clearly depend on the text
    )
    model = LlamaForCausalLM(config)
    root = tmp_path_factory.mktemp("tiny-llm")
    folders = {}
    for variant, template, eos in (
        ("plain", None, "<|endoftext|>"),
        ("chat", CHATML, "<|im_end|>"),
        ("no-system", NO_SYSTEM, "<|endoftext|>"),
    ):
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos, pad_token="<pad>", bos_token="<s>")
        if template is not None:
            fast.chat_template = template
        folder = root / variant
        model.save_pretrained(folder)
        fast.save_pretrained(folder)
        folders[variant] = str(folder)
    return folders


def naive_scores(labeler: CausalLMLabeler, texts: list[str], few_shot: list[list[Shot]]) -> np.ndarray:
    """Score each (text, label) pair with one plain forward pass over prompt + answer, no cache, no padding."""
    import torch

    tokenizer, model = labeler.load()
    label_ids = labeler._label_token_ids(tokenizer, labeler._messages(texts[0], LABELS, few_shot[0]), LABELS)
    scores = np.zeros((len(texts), len(LABELS)))
    with torch.inference_mode():
        for row, (text, shots) in enumerate(zip(texts, few_shot, strict=True)):
            prompt = labeler._encode(tokenizer, labeler.render_prompt(text, LABELS, shots))
            for column, ids in enumerate(label_ids):
                logprobs = torch.log_softmax(model(input_ids=torch.tensor([prompt + ids])).logits[0].double(), dim=-1)
                scores[row, column] = sum(float(logprobs[len(prompt) - 1 + k, ids[k]]) for k in range(len(ids)))
    return scores


@pytest.mark.parametrize("variant", ["plain", "chat"])
def test_causal_scores_equal_plain_forward_passes_despite_caching_and_packing(tiny_models, variant):
    labeler = CausalLMLabeler(model_dir=tiny_models[variant], batch_size=3)
    few_shot = [SHOT_A, [], SHOT_A, SHOT_B]  # two texts share their shots, one has none

    scores, _ = labeler.label_log_likelihoods(TEXTS, LABELS, few_shot)

    assert scores.shape == (4, 3)
    assert np.all(scores < 0)
    assert np.allclose(scores, naive_scores(labeler, TEXTS, few_shot), atol=1e-3)
    single, _ = CausalLMLabeler(model_dir=tiny_models[variant], batch_size=1).label_log_likelihoods(
        TEXTS, LABELS, few_shot
    )
    assert np.allclose(single, scores, atol=1e-4)


def test_causal_probabilities_are_valid_ordered_and_deterministic(tiny_models):
    labeler = CausalLMLabeler(model_dir=tiny_models["plain"], calibrate=False)

    result = labeler.predict_proba(TEXTS, LABELS)

    assert isinstance(result, LabelerResult)
    assert result.proba.shape == (4, 3)
    assert np.allclose(result.proba.sum(axis=1), 1.0)
    assert (result.labeler, result.model, result.prompt_version) == ("causal_lm", "plain", "causal-v1")
    scores, _ = labeler.label_log_likelihoods(TEXTS, LABELS)
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    assert np.allclose(result.proba, expected / expected.sum(axis=1, keepdims=True))  # column j is LABELS[j]
    assert np.array_equal(labeler.predict_proba(TEXTS, LABELS).proba, result.proba)
    assert np.ptp(scores[:, 0] - scores[:, 1]) > 0.1  # the text matters
    # The long label's answer has many more tokens; it still gets a finite, positive probability.
    assert np.all(np.isfinite(result.proba)) and np.all(result.proba[:, 2] > 0)


def test_few_shot_examples_enter_the_prompt_and_change_the_scores(tiny_models):
    labeler = CausalLMLabeler(model_dir=tiny_models["plain"], calibrate=False)

    prompt = labeler.render_prompt(TEXTS[0], LABELS, SHOT_A)

    assert "Text: great movie\nLabel: positive\n" in prompt
    assert "Text: awful\nLabel: negative\n" in prompt
    assert prompt.endswith("Text: I love this film\nLabel:")
    assert "- negative: The writer complains." in prompt
    plain, _ = labeler.label_log_likelihoods(TEXTS[:1], LABELS)
    shown, _ = labeler.label_log_likelihoods(TEXTS[:1], LABELS, few_shot=[SHOT_A])
    assert np.abs(plain - shown).max() > 0.1
    with pytest.raises(ValueError, match=FEW_SHOT_LENGTH.format(shots=1, texts=2)):
        labeler.predict_proba(TEXTS[:2], LABELS, few_shot=[SHOT_A])


def test_chat_templates_are_used_and_a_template_without_system_role_still_works(tiny_models):
    chat = CausalLMLabeler(model_dir=tiny_models["chat"]).render_prompt("hello", LABELS, SHOT_B)
    merged = CausalLMLabeler(model_dir=tiny_models["no-system"])

    assert chat.startswith("<|im_start|>system\nClassify the text")
    assert "<|im_start|>assistant\nneutral and long label name<|im_end|>" in chat
    assert chat.endswith("<|im_start|>user\nText: hello<|im_end|>\n<|im_start|>assistant\n")
    assert merged.render_prompt("hello", LABELS).startswith("[user] Classify the text")
    assert np.allclose(merged.predict_proba(["hello"], LABELS).proba.sum(axis=1), 1.0)


def test_contextual_calibration_makes_a_content_free_input_uniform(tiny_models):
    one = CausalLMLabeler(model_dir=tiny_models["chat"], content_free=("N/A",))

    assert np.allclose(one.predict_proba(["N/A"], LABELS).proba, 1 / 3, atol=1e-6)
    # The prior is computed under each text's own shots, so it holds with few-shot examples too.
    assert np.allclose(one.predict_proba(["N/A"], LABELS, few_shot=[SHOT_A]).proba, 1 / 3, atol=1e-6)

    labeler = CausalLMLabeler(model_dir=tiny_models["chat"])
    calibrated = labeler.predict_proba(TEXTS, LABELS)
    raw = CausalLMLabeler(model_dir=tiny_models["chat"], calibrate=False).predict_proba(TEXTS, LABELS)
    prior = np.array([calibrated.details["content_free_prior"][name] for name in NAMES])

    assert calibrated.details["calibrated"] is True and raw.details["calibrated"] is False
    assert "content_free_prior" not in raw.details
    assert calibrated.details["content_free_inputs"] == ["N/A", "", "[MASK]"]
    assert prior.sum() == pytest.approx(1.0)
    assert np.allclose(calibrated.details["uncalibrated"], raw.proba)
    assert not np.allclose(calibrated.proba, raw.proba, atol=1e-3)
    expected = raw.proba / prior
    assert np.allclose(calibrated.proba, expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    # The three content-free inputs, calibrated by their own average, sit much closer to uniform than before.
    free = labeler.predict_proba(["N/A", "", "[MASK]"], LABELS)
    assert (
        np.abs(free.proba.mean(axis=0) - 1 / 3).max() < np.abs(free.details["uncalibrated"].mean(axis=0) - 1 / 3).max()
    )


def test_causal_reports_progress_and_refuses_bad_input(tiny_models):
    labeler = CausalLMLabeler(model_dir=tiny_models["plain"])
    calls: list[tuple[int, int]] = []

    labeler.predict_proba(TEXTS, LABELS, few_shot=[SHOT_A, [], SHOT_A, []], progress=lambda *call: calls.append(call))

    assert calls == [(2, 4), (4, 4)]  # one call per distinct set of shots
    assert labeler.predict_proba([], LABELS).proba.shape == (0, 3)
    with pytest.raises(ValueError, match=DUPLICATE_LABELS[:20]):
        labeler.predict_proba(TEXTS, [LABELS[0], LABELS[0]])
    with pytest.raises(
        ValueError, match=UNKNOWN_PROMPT.format(version="causal-v9", labeler="causal_lm", choices="causal-v1")
    ):
        CausalLMLabeler(model_dir=tiny_models["plain"], prompt_version="causal-v9")
    with pytest.raises(ValueError, match="openai-v1"):
        CausalLMLabeler(prompt_version="openai-v1")
    with pytest.raises(ValueError, match="batch_size"):
        CausalLMLabeler(batch_size=0)


def test_prompt_text_is_cleaned_flattened_and_cut():
    assert prompt_text("  fish &amp; chips\n\nLabel: positive\ufeff ", 1000) == "fish & chips Label: positive"
    assert prompt_text("abcdef", 3) == "abc"
    assert set(PROMPTS) >= {"causal-v1", "openai-v1"}


@pytest.mark.slow
def test_smollm2_labels_offline_with_calibration_details():
    labeler = CausalLMLabeler(threads=1)
    labels = [LabelSpec("positive", "The customer is happy."), LabelSpec("negative", "The customer complains.")]
    texts = ["I love this, thank you so much!", "Refund my cancelled flight now.", "What time do you open?"]

    result = labeler.predict_proba(texts, labels, few_shot=[[Shot("Great, thanks!", "positive")], [], []])

    assert result.proba.shape == (3, 2)
    assert np.allclose(result.proba.sum(axis=1), 1.0)
    assert (result.model, result.prompt_version) == ("SmolLM2-135M-Instruct.Q4_1.gguf", "causal-v1")
    assert set(result.details["content_free_prior"]) == {"positive", "negative"}
    assert result.details["uncalibrated"].shape == (3, 2)
    assert result.proba[0, 0] > result.proba[0, 1]  # observed: 0.95 raw, still the larger after calibration


# ---------------------------------------------------------------------------------------------------------------------
# embedding


VECTORS = {
    "pos: happy": [1.0, 0.0, 0.0],
    "neg: sad": [0.0, 1.0, 0.0],
    "good day": [0.8, 0.6, 0.0],
    "meh": [0.0, 0.0, 1.0],
    "sunny": [0.6, 0.8, 0.0],
    "rainy": [0.0, 0.6, 0.8],
    "unrelated": [-1.0, 0.0, 0.0],
}
EMBED_LABELS = [LabelSpec("pos", "happy"), LabelSpec("neg", "sad")]


def fake_encoder(texts):
    """Map known texts to fixed unit vectors, so the expected probabilities can be written down."""
    return np.array([VECTORS[text] for text in texts])


def softmax(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    weights = np.exp(values - values.max())
    return weights / weights.sum()


def test_embedding_zero_shot_is_a_softmax_of_similarity_over_temperature():
    labeler = EmbeddingLabeler(temperature=0.5, encoder=fake_encoder)

    result = labeler.predict_proba(["good day", "meh"], EMBED_LABELS)

    assert np.allclose(result.proba[0], softmax([0.8 / 0.5, 0.6 / 0.5]))
    assert np.allclose(result.proba[1], [0.5, 0.5])
    assert (result.labeler, result.model, result.prompt_version) == ("embedding", "custom-encoder", "")


def test_embedding_mixes_in_a_similarity_weighted_vote_of_the_shots():
    labeler = EmbeddingLabeler(k=2, temperature=0.5, encoder=fake_encoder)
    shots = [[Shot("sunny", "pos"), Shot("rainy", "neg"), Shot("unrelated", "neg"), Shot("meh", "other")], []]

    result = labeler.predict_proba(["good day", "good day"], EMBED_LABELS, few_shot=shots)

    zero_shot = softmax([1.6, 1.2])
    # Similarities to "good day": sunny 0.96, rainy 0.36, unrelated -0.8 (clipped to 0); "other" is no label here.
    vote = np.array([0.96, 0.36]) / 1.32
    weight = 3 / (3 + 2)
    assert np.allclose(result.proba[0], (1 - weight) * zero_shot + weight * vote)
    assert np.allclose(result.proba[1], zero_shot)
    assert result.details["with_neighbours"] == 1 and result.details["unknown_shot_labels"] == 1

    fixed = EmbeddingLabeler(temperature=0.5, neighbour_weight=1.0, encoder=fake_encoder)
    assert np.allclose(fixed.predict_proba(["good day"], EMBED_LABELS, few_shot=shots[:1]).proba[0], vote)
    opposite = fixed.predict_proba(["good day"], EMBED_LABELS, few_shot=[[Shot("unrelated", "neg")]])
    assert np.allclose(opposite.proba[0], [0.0, 1.0])  # all weights clipped to zero: the shots vote equally


def test_embedding_with_minilm_matches_a_text_to_the_described_label():
    labels = [LabelSpec("complaint", "complaints about flights"), LabelSpec("praise", "praise")]

    result = EmbeddingLabeler(threads=1).predict_proba(["refund my cancelled flight", "you are wonderful"], labels)

    assert result.model == "all-MiniLM-L6-v2"
    assert result.proba[0, 0] > result.proba[0, 1]
    assert result.proba[1, 1] > result.proba[1, 0]


# ---------------------------------------------------------------------------------------------------------------------
# openai


class Endpoint:
    """A scripted chat-completions server: replies are popped in order; each request is recorded."""

    def __init__(self) -> None:
        self.replies: deque[tuple[int, dict[str, str], Any, float]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    def reply(self, status: int = 200, payload: Any = None, headers: dict[str, str] | None = None, delay: float = 0.0):
        self.replies.append((status, headers or {}, payload, delay))


def completion(content: str, tokens: list[tuple[str, float, list[tuple[str, float]]]] | None = None) -> dict:
    """Build a chat completion; ``tokens`` are (token, logprob, top alternatives) in the OpenAI logprobs format."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if tokens is not None:
        choice["logprobs"] = {
            "content": [
                {"token": token, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}
                for token, logprob, top in tokens
            ]
        }
    return {"id": "x", "object": "chat.completion", "model": "m", "choices": [choice]}


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if state.replies:
                status, headers, payload, delay = state.replies.popleft()
            else:
                enum = body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
                status, headers, payload, delay = 200, {}, completion(json.dumps({"label": enum[0]})), 0.0
            time.sleep(delay)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_port}/v1"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("FW_TEST_LLM_KEY", KEY)
    return "FW_TEST_LLM_KEY"


def make_openai(endpoint: Endpoint, api_key: str, **kwargs: Any) -> OpenAILabeler:
    return OpenAILabeler(base_url=endpoint.base_url, model="tiny-model", api_key_env=api_key, backoff=0.01, **kwargs)


def test_openai_request_carries_model_messages_constrained_labels_and_key(endpoint, api_key):
    endpoint.reply(payload=completion('{"label": "negative"}'))

    result = make_openai(endpoint, api_key).predict_proba(["Refund  my\nflight"], LABELS, few_shot=[SHOT_A])

    (request,) = endpoint.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "tiny-model"
    assert body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == NAMES
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["label"]
    roles = [message["role"] for message in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "- negative: The writer complains." in body["messages"][0]["content"]
    assert body["messages"][1]["content"] == "Text: great movie"
    assert json.loads(body["messages"][2]["content"]) == {"label": "positive"}
    assert body["messages"][-1]["content"] == "Text: Refund my flight"
    # No log-probs in the answer: the answered label gets 0.9, the others share the rest.
    assert np.allclose(result.proba, [[0.05, 0.9, 0.05]])
    assert (result.labeler, result.model, result.prompt_version) == ("openai", "tiny-model", "openai-v1")
    assert result.details == {"retries": 0, "unparsed": 0, "from_logprobs": 0, "from_answer": 1}


def test_openai_without_a_key_or_logprobs_sends_neither(endpoint, monkeypatch):
    monkeypatch.delenv("FW_TEST_LLM_KEY", raising=False)
    endpoint.reply(payload=completion('{"label": "positive"}'))

    result = make_openai(endpoint, "FW_TEST_LLM_KEY", use_logprobs=False, no_logprobs_confidence=0.7).predict_proba(
        ["hi"], LABELS[:2]
    )

    (request,) = endpoint.requests
    assert "Authorization" not in request["headers"]
    assert "logprobs" not in request["body"] and "top_logprobs" not in request["body"]
    assert np.allclose(result.proba, [[0.7, 0.3]])


def test_openai_probabilities_come_from_the_label_tokens_logprobs(endpoint, api_key):
    ln = math.log
    endpoint.reply(
        payload=completion(
            '{"label": "positive"}',
            [
                ('{"', 0.0, []),
                ("label", 0.0, []),
                ('":', 0.0, []),
                (' "', 0.0, []),
                ("pos", ln(0.6), [("pos", ln(0.6)), ("neg", ln(0.25)), ("neut", ln(0.1)), ("xyz", ln(0.05))]),
                ("itive", ln(0.9), [("itive", ln(0.9)), ("ition", ln(0.1))]),
                ('"}', 0.0, []),
            ],
        )
    )
    # A plain-text answer whose first token also carries the opening of the answer.
    endpoint.reply(
        payload=completion(
            " negative",
            [(" negative", ln(0.7), [(" negative", ln(0.7)), ("positive", ln(0.2)), (" banana", ln(0.1))])],
        )
    )

    result = make_openai(endpoint, api_key).predict_proba(["a", "b"], LABELS)

    assert np.allclose(result.proba[0], np.array([0.6 * 0.9, 0.25, 0.1]) / 0.89)
    assert np.allclose(result.proba[1], np.array([0.2, 0.7, 0.0]) / 0.9)
    assert result.details["from_logprobs"] == 2


def test_openai_accepts_plain_text_and_spreads_unparsed_answers(endpoint, api_key):
    endpoint.reply(payload=completion("Negative."))
    endpoint.reply(payload=completion("I cannot decide"))
    endpoint.reply(payload=completion('{"label": "maybe"}'))

    result = make_openai(endpoint, api_key).predict_proba(["a", "b", "c"], LABELS)

    assert np.allclose(result.proba[0], [0.05, 0.9, 0.05])
    assert np.allclose(result.proba[1:], 1 / 3)
    assert result.details["unparsed"] == 2


def test_openai_retries_server_errors_and_counts_them(endpoint, api_key):
    endpoint.reply(500, {"error": "overloaded"})
    endpoint.reply(503, {"error": "overloaded"})
    calls: list[tuple[int, int]] = []

    result = make_openai(endpoint, api_key).predict_proba(["a", "b"], LABELS, progress=lambda *call: calls.append(call))

    assert len(endpoint.requests) == 4
    assert result.details["retries"] == 2
    assert calls == [(1, 2), (2, 2)]


def test_openai_waits_as_long_as_retry_after_asks_up_to_a_cap(endpoint, api_key):
    endpoint.reply(429, {"error": "slow down"}, headers={"Retry-After": "1"})
    started = time.perf_counter()
    result = make_openai(endpoint, api_key).predict_proba(["a"], LABELS)
    assert time.perf_counter() - started >= 0.9
    assert result.details["retries"] == 1

    endpoint.reply(429, {"error": "slow down"}, headers={"Retry-After": "1000"})
    started = time.perf_counter()
    make_openai(endpoint, api_key, max_retry_after=0.05).predict_proba(["a"], LABELS)
    assert time.perf_counter() - started < 2


def test_openai_does_not_retry_client_errors(endpoint, api_key):
    endpoint.reply(400, {"error": "bad request"})

    with pytest.raises(LabelerError, match=r"HTTP 400 after 1 attempt") as raised:
        make_openai(endpoint, api_key).predict_proba(["a", "b"], LABELS)

    assert len(endpoint.requests) == 1
    assert endpoint.base_url + "/chat/completions" in str(raised.value)


def test_openai_gives_up_after_retries_on_timeouts_and_errors(endpoint, api_key):
    endpoint.reply(delay=0.6)
    endpoint.reply(delay=0.6)
    with pytest.raises(LabelerError, match="could not be reached after 2 attempt") as raised:
        make_openai(endpoint, api_key, timeout=0.2, max_retries=1).predict_proba(["a"], LABELS)
    assert endpoint.base_url in str(raised.value)

    for _ in range(3):
        endpoint.reply(502, "bad gateway")
    with pytest.raises(LabelerError, match="HTTP 502 after 3 attempt"):
        make_openai(endpoint, api_key, max_retries=2).predict_proba(["a"], LABELS)


def test_openai_never_logs_or_raises_the_api_key(endpoint, api_key, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint.reply(500, {"error": "overloaded"})
    endpoint.reply(payload=completion('{"label": "positive"}'))
    result = make_openai(endpoint, api_key).predict_proba(["a"], LABELS)
    endpoint.reply(401, {"error": f"invalid key {KEY}"})  # a server that echoes the key back
    with pytest.raises(LabelerError) as raised:
        make_openai(endpoint, api_key).predict_proba(["a"], LABELS)
    unreachable = OpenAILabeler(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env=api_key, max_retries=1, backoff=0
    )
    with pytest.raises(LabelerError) as refused:
        unreachable.predict_proba(["a"], LABELS)

    assert endpoint.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert "retrying" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in repr(result)
    assert "HTTP 401" in str(raised.value) and "[redacted]" in str(raised.value)
    for error in (raised.value, refused.value):
        assert KEY not in str(error) and KEY not in repr(error.__cause__) and KEY not in repr(error.__context__)


# ---------------------------------------------------------------------------------------------------------------------
# labeler_from_spec


def test_labeler_from_spec_round_trips_every_labeler(tiny_models):
    built: list[Labeler] = [
        CausalLMLabeler(model_dir=tiny_models["plain"], calibrate=False, batch_size=4, content_free=("N/A",)),
        EmbeddingLabeler(k=5, temperature=0.1, neighbour_weight=0.3),
        OpenAILabeler(base_url="http://127.0.0.1:8080/v1", model="m", timeout=5.0, use_logprobs=False),
    ]

    for labeler in built:
        again = labeler_from_spec(labeler.name, json.loads(json.dumps(labeler.params())))
        assert again == labeler
        assert isinstance(again, Labeler)
    assert [labeler.name for labeler in built] == list(LABELERS)
    assert labeler_from_spec("causal_lm", {"model_dir": None, "calibrate": True}, threads=2) == CausalLMLabeler(
        threads=2
    )
    assert labeler_from_spec("embedding", {}, threads=1).threads == 1


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("gpt", {}, UNKNOWN_LABELER.format(name="gpt")),
        ("causal_lm", {"temperature": 1}, UNKNOWN_PARAMS.format(name="causal_lm", keys="temperature")),
        ("embedding", {"k": 1, "model": "x"}, UNKNOWN_PARAMS.format(name="embedding", keys="model")),
        ("openai", {"model": "m"}, MISSING_PARAMS.format(name="openai", keys="base_url")),
        ("openai", {"base_url": "http://x/v1", "model": "m", "prompt_version": "causal-v1"}, "prompt_version"),
        ("causal_lm", {"calibrate": "yes"}, "calibrate must be True or False"),
        ("embedding", {"temperature": 0}, "temperature must be a positive number"),
        ("embedding", {"neighbour_weight": 2}, "neighbour_weight must be a number between 0 and 1"),
    ],
)
def test_labeler_from_spec_refuses_bad_specs_clearly(name: str, params: dict, message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        labeler_from_spec(name, params)
