"""Benchmark the LLM labelers on real airline tweets: accuracy, speed, and whether a calibrated threshold holds.

Data: Twitter US Airline Sentiment (`--data`), one row per tweet_id (the first copy kept), split in time with the
app's `time_split` (newest 20% held out). From the holdout, a fixed random sample (seed 0) gives `--rows` evaluation
rows and a disjoint `--calibration-rows` calibration rows; the dataset's labels play the humans. Few-shot neighbours
come only from the older (train) part, found by MiniLM cosine with `neighbours.top_k`, as the pre-labeling job does.

Labelers, each on the same rows, through `labeler_from_spec` and `predict_proba` in chunks of 16 (the pre-labeling
job's chunk):

* `embedding`: MiniLM similarity to the label descriptions (zero shot), and mixed with a vote of 10 neighbours.
* `causal_lm`: SmolLM2-135M-Instruct (the bundled GGUF, via transformers) label likelihoods; one run gives both the
  contextually calibrated `proba` and `details["uncalibrated"]`. Zero shot on every row; with 3 neighbour shots on as
  many rows as fit in the time budget (`--causal-shots-minutes`), a prefix of the same random rows.
* `openai`: the `OpenAILabeler`'s real code path (requests, JSON-schema constrained answer, log-probs) against an
  OpenAI-compatible server this script starts on 127.0.0.1: a small `http.server` in a child process wrapping the same
  GGUF with llama_cpp (`create_chat_completion`, grammar from the JSON schema, `logprobs`/`top_logprobs`).

Per variant: accuracy, macro-F1, examples/s (median of per-chunk rates; model load apart), predicted-label
distribution, precision/coverage at fixed confidence thresholds on the evaluation rows, and the threshold
`trust_report(target=0.95)` chooses on the calibration rows, then its precision and coverage measured on the
evaluation rows (overall and per label).

Run from the repository root:

    .venv/bin/python bench/llm.py [--rows 1000] [--calibration-rows 1000] [--labelers embedding,causal_lm,openai]
                                  [--quick] [--data PATH] [--out PATH] [--threads auto|1|2]

Writes bench/results/llm.json and the LLM section of bench/RESULTS.md; `--quick` (30 + 30 rows, a tenth of the train
part as neighbour pool) writes bench/results/llm-quick.json only, so a check never replaces the real numbers, and so
does any `--out` other than the default.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# bench/ holds queue.py, which shadows the standard library's `queue` (imported by http.server's socketserver users,
# requests and torch): keep this folder off the import path before importing anything else.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
# Everything loads from disk: never let transformers or huggingface_hub reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict  # noqa: E402
from http.server import BaseHTTPRequestHandler, HTTPServer  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from models_app.ml.llm import (  # noqa: E402
    SMOLLM2_GGUF,
    LabelerResult,
    LabelSpec,
    Shot,
    labeler_from_spec,
    smollm2_folder,
)
from models_app.ml.metrics import classification_report  # noqa: E402
from models_app.ml.timesplit import HUMAN, LabeledRow, time_split  # noqa: E402
from models_app.ml.trust import lower_bound, precision_coverage_curve, trust_report  # noqa: E402

RESULTS_JSON = BENCH / "results" / "llm.json"
QUICK_JSON = BENCH / "results" / "llm-quick.json"
RESULTS_MD = BENCH / "RESULTS.md"
SECTION_HEADING = "## LLM labelers"
DEFAULT_TWEETS = Path("/work/shared/datasets/twitter_airline_sentiment/Tweets.csv")
LABELS = (
    LabelSpec("negative", "a complaint or bad experience with the airline"),
    LabelSpec("neutral", "a question or statement without clear feeling"),
    LabelSpec("positive", "praise or thanks for the airline"),
)
NAMES = tuple(label.name for label in LABELS)
HOLDOUT_SHARE = 0.2
SAMPLE_SEED = 0
TARGET = 0.95
# The pre-labeling job (models_app/services/prelabel.py) sends texts to a labeler 16 at a time.
CHUNK = 16
EMBEDDING_SHOTS = 10
CAUSAL_SHOTS = 3
# Rows (three chunks) the causal_lm shot variant is timed on before deciding how many rows fit its budget.
SPEED_PROBE_ROWS = 48
QUICK_ROWS = 30
QUICK_BASE_EVERY = 10
CURVE_THRESHOLDS = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))
TABLE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SERVER_READY = "LLM_SERVER_READY "
SERVER_CONTEXT = 2048
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")
# A module or a package (hashed over its .py files); llm may be either.
CODE_UNDER_TEST = (
    "models_app/ml/llm",
    "models_app/ml/llm.py",
    "models_app/ml/trust.py",
    "models_app/ml/timesplit.py",
    "models_app/ml/neighbours.py",
    "models_app/ml/featurizers.py",
    "models_app/ml/metrics.py",
)
REFERENCE = (
    "Reference numbers measured earlier elsewhere (quoted from the issue, not measured by this script): MiniLM "
    "similarity to the label descriptions 0.53 accuracy on the holdout and never 95% precise at any threshold; "
    "SmolLM2 label likelihood 0.58 accuracy at 3.9 examples/s."
)


# ---------------------------------------------------------------------------------------------------------------------
# The machine


def busy_cores(seconds: float = 1.0) -> float:
    """Return the cores busy over a short pause while this benchmark is idle: other work sharing the machine."""
    first = psutil.cpu_times()
    time.sleep(seconds)
    second = psutil.cpu_times()
    return round(sum(getattr(second, name, 0.0) - getattr(first, name, 0.0) for name in BUSY_FIELDS) / seconds, 2)


def machine_info() -> dict[str, Any]:
    """Describe the machine: cores, the CPU model from /proc/cpuinfo, memory, Python and the OS."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def versions() -> dict[str, str]:
    """Return the versions of the libraries the labelers run on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "llama_cpp_python", "numpy", "scipy", "requests"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def code_fingerprint() -> dict[str, str]:
    """Return the first 12 hex digits of the sha256 of each measured module (a package: all its .py files)."""
    prints = {}
    for name in CODE_UNDER_TEST:
        path = REPO / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
        prints[name] = digest.hexdigest()[:12] if files else "missing"
    return prints


def load_state() -> dict[str, float]:
    """Record how busy the machine is right before a measurement."""
    return {"load_1m_before": round(os.getloadavg()[0], 2), "others_busy_cores_before": busy_cores()}


# ---------------------------------------------------------------------------------------------------------------------
# Data


def read_tweets(path: Path) -> tuple[list[LabeledRow], dict[str, Any]]:
    """Return one human-labelled row per tweet_id (the first copy in the file), and what de-duplication dropped."""
    with open(path, encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    seen: set[str] = set()
    rows: list[LabeledRow] = []
    for record in records:
        if record["tweet_id"] in seen:
            continue
        seen.add(record["tweet_id"])
        rows.append(
            LabeledRow(
                example_id=int(record["tweet_id"]),
                text=record["text"],
                observed_at=dt.datetime.strptime(record["tweet_created"], "%Y-%m-%d %H:%M:%S %z"),
                label=record["airline_sentiment"],
                provenance=HUMAN,
            )
        )
    counts = {
        "rows_in_file": len(records),
        "duplicate_rows_dropped": len(records) - len(rows),
        "duplicates_resolved_by": "the first copy of each tweet_id in the file",
        "tweets": len(rows),
        "labels": dict(Counter(row.label for row in rows)),
    }
    return rows, counts


def sample_holdout(holdout: Sequence[int], rows: int, calibration_rows: int) -> tuple[list[int], list[int]]:
    """Draw the evaluation rows and disjoint calibration rows from the holdout, in one fixed random order (seed 0)."""
    if rows + calibration_rows > len(holdout):
        raise SystemExit(
            f"--rows {rows} + --calibration-rows {calibration_rows} exceed the {len(holdout)} holdout rows."
        )
    order = np.random.default_rng(SAMPLE_SEED).permutation(len(holdout))
    picked = [int(holdout[position]) for position in order[: rows + calibration_rows]]
    return picked[:rows], picked[rows:]


# ---------------------------------------------------------------------------------------------------------------------
# Threads


def _seconds(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def probe_torch_threads(name: str, run: Any, choices: Sequence[int]) -> dict[str, Any]:
    """Time one workload under each torch thread count (after a warm-up) and return the faster count with timings."""
    import torch

    torch.set_num_threads(choices[-1])
    run()
    timings = {}
    for threads in choices:
        torch.set_num_threads(threads)
        timings[str(threads)] = round(min(_seconds(run), _seconds(run)), 3)
    best = min(choices, key=lambda threads: timings[str(threads)])
    print(f"  {name}: {timings} s per probe → {best} thread(s)", flush=True)
    return {"seconds_by_threads": timings, "chosen": best}


# ---------------------------------------------------------------------------------------------------------------------
# Running a labeler


def run_labeler(
    labeler: Any, texts: Sequence[str], shots: Sequence[Sequence[Shot]] | None, *, name: str
) -> dict[str, Any]:
    """Label texts CHUNK at a time as the pre-labeling job does; return probabilities, details and chunk timings."""
    proba, raw, chunks = [], [], []
    details: dict[str, Any] = {}
    priors: list[tuple[int, dict[str, float]]] = []
    started = time.perf_counter()
    for start in range(0, len(texts), CHUNK):
        part = list(texts[start : start + CHUNK])
        part_shots = None if shots is None else [list(row) for row in shots[start : start + CHUNK]]
        began = time.perf_counter()
        result: LabelerResult = labeler.predict_proba(part, LABELS, few_shot=part_shots)
        seconds = time.perf_counter() - began
        chunks.append({"texts": len(part), "seconds": round(seconds, 4)})
        proba.append(np.asarray(result.proba, dtype=np.float64))
        if "uncalibrated" in result.details:
            raw.append(np.asarray(result.details["uncalibrated"], dtype=np.float64))
        if "content_free_prior" in result.details:
            priors.append((len(part), result.details["content_free_prior"]))
        for key, value in result.details.items():
            if key in ("uncalibrated", "content_free_prior"):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "temperature":
                details[key] = details.get(key, 0) + value
            else:
                details.setdefault(key, value)
        done = start + len(part)
        if done % (CHUNK * 10) == 0 or done == len(texts):
            elapsed = time.perf_counter() - started
            print(f"    {name}: {done}/{len(texts)} in {elapsed:.0f} s ({done / elapsed:.2f}/s)", flush=True)
        details["model"], details["prompt_version"] = result.model, result.prompt_version
    if priors:
        total = sum(count for count, _ in priors)
        details["content_free_prior"] = {
            label: round(sum(count * prior[label] for count, prior in priors) / total, 4) for label in NAMES
        }
    return {
        "proba": np.vstack(proba) if proba else np.zeros((0, len(NAMES))),
        "uncalibrated": np.vstack(raw) if raw else None,
        "details": details,
        "chunks": chunks,
        "seconds": time.perf_counter() - started,
    }


def speed(chunks: Sequence[dict[str, Any]], total_seconds: float) -> dict[str, Any]:
    """Summarise throughput: the median of per-chunk rates, its spread, and the overall mean."""
    rates = [chunk["texts"] / chunk["seconds"] for chunk in chunks if chunk["seconds"] > 0]
    texts = sum(chunk["texts"] for chunk in chunks)
    return {
        "examples_per_s": round(statistics.median(rates), 3) if rates else None,
        "chunk_rate_p10": round(float(np.percentile(rates, 10)), 3) if rates else None,
        "chunk_rate_p90": round(float(np.percentile(rates, 90)), 3) if rates else None,
        "mean_examples_per_s": round(texts / total_seconds, 3) if total_seconds > 0 else None,
        "chunks": len(chunks),
        "chunk_size": CHUNK,
        "texts": texts,
        "seconds": round(total_seconds, 2),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Scoring a variant


def _distribution(labels: Sequence[str]) -> dict[str, float]:
    counts = Counter(labels)
    return {name: round(counts[name] / len(labels), 4) if labels else 0.0 for name in NAMES}


def _predictions(proba: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Return the argmax label and its probability per row, the confidence the app stores with an LLM label."""
    best = proba.argmax(axis=1)
    confidence = np.clip(proba[np.arange(len(proba)), best], 0.0, 1.0)
    return [NAMES[index] for index in best], confidence


def _point(point: Any) -> dict[str, Any]:
    return {
        "threshold": round(point.threshold, 6),
        "accepted": point.accepted,
        "coverage": round(point.coverage, 4),
        "precision": None if point.precision is None else round(point.precision, 4),
        "lower_bound": None if point.lower_bound is None else round(point.lower_bound, 4),
    }


def _accepted(
    correct: np.ndarray, mask: np.ndarray, n: int, threshold: float | None, label: str | None = None
) -> dict[str, Any]:
    """Measure precision and coverage of accepting the masked rows on the evaluation set."""
    accepted, right = int(mask.sum()), int(correct[mask].sum())
    bound = lower_bound(right, accepted) if accepted else None
    result = {
        "threshold": threshold,
        "accepted": accepted,
        "correct": right,
        "coverage": round(accepted / n, 4) if n else 0.0,
        "precision": round(right / accepted, 4) if accepted else None,
        "lower_bound_95": None if bound is None else round(bound, 4),
        "meets_target": bool(accepted and right / accepted >= TARGET),
    }
    if label is not None:
        result["label"] = label
    return result


def threshold_transfer(
    calibration: tuple[list[str], np.ndarray, list[str]], evaluation: tuple[list[str], np.ndarray, list[str]]
) -> dict[str, Any]:
    """Choose thresholds with trust_report on the calibration rows; measure what they give on the evaluation rows."""
    cal_pred, cal_conf, cal_true = calibration
    eval_pred, eval_conf, eval_true = evaluation
    report = trust_report(cal_pred, cal_conf.tolist(), cal_true, target=TARGET)
    n = len(eval_true)
    correct = np.array([said == truth for said, truth in zip(eval_pred, eval_true, strict=True)], dtype=bool)
    predicted = np.array(eval_pred)
    overall = report.overall
    measured = None
    if overall.threshold is not None:
        measured = _accepted(correct, eval_conf >= overall.threshold, n, overall.threshold)
    per_label, union = {}, np.zeros(n, dtype=bool)
    for label, rule in report.per_label.items():
        entry: dict[str, Any] = {"calibration": asdict(rule), "evaluation": None}
        if rule.threshold is not None:
            mask = (predicted == label) & (eval_conf >= rule.threshold)
            union |= mask
            entry["evaluation"] = _accepted(correct, mask, n, rule.threshold, label)
            predicted_rows = int((predicted == label).sum())
            entry["evaluation"]["coverage_of_predicted"] = (
                round(int(mask.sum()) / predicted_rows, 4) if predicted_rows else None
            )
        per_label[label] = entry
    combined = _accepted(correct, union, n, None) if any(e["evaluation"] for e in per_label.values()) else None
    return {
        "target": TARGET,
        "confidence_level": report.confidence_level,
        "calibration": {
            "rows": report.n,
            "agreement": None if report.agreement is None else round(report.agreement, 4),
            "kappa": None if report.kappa is None else round(report.kappa, 4),
            "overall": asdict(overall),
        },
        "evaluation": measured,
        "per_label": per_label,
        "per_label_combined": combined,
    }


def score_variant(
    proba_eval: np.ndarray, proba_cal: np.ndarray, true_eval: list[str], true_cal: list[str], majority: str
) -> dict[str, Any]:
    """Score one variant: metrics and distribution on the evaluation rows, curve, and the calibrated threshold."""
    eval_pred, eval_conf = _predictions(proba_eval)
    cal_pred, cal_conf = _predictions(proba_cal)
    report = classification_report(true_eval, eval_pred, proba_eval, NAMES, train_majority=majority)
    correct = np.array([said == truth for said, truth in zip(eval_pred, true_eval, strict=True)], dtype=bool)
    fixed = precision_coverage_curve(eval_conf, correct, thresholds=CURVE_THRESHOLDS)
    full = precision_coverage_curve(eval_conf, correct)
    result: dict[str, Any] = {
        "evaluation_rows": len(true_eval),
        "calibration_rows": len(true_cal),
        "accuracy": round(report.accuracy, 4),
        "macro_f1": round(report.macro_f1, 4),
        "ece": None if report.ece is None else round(report.ece, 4),
        "per_class": {
            label: {key: round(value, 4) if isinstance(value, float) else value for key, value in scores.items()}
            for label, scores in report.per_class.items()
        },
        "confusion": {"rows_true_columns_predicted": list(NAMES), "counts": report.confusion},
        "majority_baseline": {key: _round(value) for key, value in report.majority_baseline.items()},
        "predicted_distribution": _distribution(eval_pred),
        "never_predicts": [name for name in NAMES if name not in set(eval_pred)],
        "confidence": {
            "median": round(float(np.median(eval_conf)), 4),
            "p90": round(float(np.percentile(eval_conf, 90)), 4),
            "max": round(float(eval_conf.max()), 4),
        },
        "at_thresholds": [_point(point) for point in sorted(fixed, key=lambda point: point.threshold)],
        "curve": [_point(point) for point in full],
        "threshold": threshold_transfer((cal_pred, cal_conf, true_cal), (eval_pred, eval_conf, true_eval)),
    }
    return result


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


# ---------------------------------------------------------------------------------------------------------------------
# The OpenAI-compatible server (child process)


def _no_extra_buffers(llama_module: Any) -> None:
    """Load weights into plain CPU buffers: llama.cpp's AMX buffers crash this VM (ldtilecfg, general protection).

    llama_cpp 0.3.x does not expose ``use_extra_bufts`` on ``Llama``; its default params come from one function,
    wrapped here so every model this process loads gets ``use_extra_bufts = False``.
    """
    default = llama_module.llama_cpp.llama_model_default_params

    def params() -> Any:
        value = default()
        value.use_extra_bufts = False
        return value

    llama_module.llama_cpp.llama_model_default_params = params


def _response_format(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """Translate OpenAI's ``json_schema`` response format into llama_cpp's ``json_object`` with a schema."""
    if not value:
        return None, "none"
    if value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return ({"type": "json_object", "schema": schema} if schema else {"type": "json_object"}), "json_schema"
    return value, str(value.get("type"))


def serve(payload: dict[str, Any]) -> None:
    """Serve POST /v1/chat/completions (and GET /stats) on 127.0.0.1 for one llama_cpp model, one request at a time."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    _no_extra_buffers(llama_module)
    started = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=payload["model_path"],
        n_ctx=SERVER_CONTEXT,
        n_threads=payload["threads"][-1],
        n_threads_batch=payload["threads"][-1],
        logits_all=True,
        verbose=False,
    )
    load_seconds = time.perf_counter() - started
    warm = [
        {"role": "system", "content": "Classify the text."},
        {"role": "user", "content": "Text: thanks for the flight"},
    ]
    started = time.perf_counter()
    llm.create_chat_completion(messages=warm, temperature=0, max_tokens=8, logprobs=True, top_logprobs=5)
    warmup_seconds = time.perf_counter() - started
    probe: dict[str, float] = {}
    threads = payload["threads"][-1]
    if len(payload["threads"]) > 1:
        for count in payload["threads"]:
            llama_cpp.llama_set_n_threads(llm.ctx, count, count)
            began = time.perf_counter()
            for _ in range(3):
                llm.create_chat_completion(messages=warm, temperature=0, max_tokens=8, logprobs=True, top_logprobs=5)
            probe[str(count)] = round((time.perf_counter() - began) / 3, 4)
        threads = min(payload["threads"], key=lambda count: probe[str(count)])
        llama_cpp.llama_set_n_threads(llm.ctx, threads, threads)
    lock = threading.Lock()
    stats: dict[str, Any] = {"requests": 0, "errors": 0, "seconds": 0.0, "completion_tokens": 0, "prompt_tokens": 0}
    formats: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _send(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data, default=float).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/stats":
                self._send(200, {**stats, "response_formats": dict(formats)})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": payload["model_name"], "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                response_format, kind = _response_format(request.get("response_format"))
                with lock:
                    began = time.perf_counter()
                    completion = llm.create_chat_completion(
                        messages=request["messages"],
                        temperature=float(request.get("temperature", 1.0)),
                        max_tokens=request.get("max_tokens"),
                        logprobs=bool(request.get("logprobs", False)),
                        top_logprobs=request.get("top_logprobs"),
                        response_format=response_format,
                    )
                    stats["seconds"] += time.perf_counter() - began
                    stats["requests"] += 1
                    formats[kind] += 1
                    usage = completion.get("usage") or {}
                    stats["completion_tokens"] += int(usage.get("completion_tokens", 0))
                    stats["prompt_tokens"] += int(usage.get("prompt_tokens", 0))
                completion["model"] = request.get("model", payload["model_name"])
            except (KeyError, TypeError, ValueError) as error:
                stats["errors"] += 1
                self._send(400, {"error": {"message": f"{type(error).__name__}: {error}"}})
                return
            self._send(200, completion)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    ready = {
        "port": server.server_address[1],
        "load_s": round(load_seconds, 3),
        "warmup_s": round(warmup_seconds, 3),
        "threads": threads,
        "thread_probe_s_per_request": probe,
        "n_ctx": SERVER_CONTEXT,
        "logits_all": True,
        "use_extra_bufts": False,
    }
    print(SERVER_READY + json.dumps(ready), flush=True)
    server.serve_forever()


class LlamaServer:
    """Start the serving child, wait until it listens, and stop it (only it, by its own pid) at the end."""

    def __init__(self, model_path: str, model_name: str, threads: Sequence[int]) -> None:
        payload = {"model_path": model_path, "model_name": model_name, "threads": list(threads)}
        env = {**os.environ, "OMP_NUM_THREADS": str(max(threads))}
        # A file, not a pipe, for the server's stderr: nobody reads it while serving, and a full pipe would block it.
        self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server; stop() closes it
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(payload)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        self.info: dict[str, Any] = {}
        started = time.perf_counter()
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(SERVER_READY):
                self.info = json.loads(line[len(SERVER_READY) :])
                break
        if not self.info:
            code = self.process.wait(timeout=30)
            self.errors.seek(0)
            raise RuntimeError(
                f"the llama_cpp server exited with {code} before listening: {self.errors.read()[-3000:]}"
            )
        self.info["start_s"] = round(time.perf_counter() - started, 3)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.info['port']}/v1"

    def stats(self) -> dict[str, Any]:
        import requests

        return requests.get(f"http://127.0.0.1:{self.info['port']}/stats", timeout=10).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.errors.close()


# ---------------------------------------------------------------------------------------------------------------------
# Markdown


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _dist(distribution: dict[str, float]) -> str:
    return " / ".join(f"{distribution[name] * 100:.0f}" for name in NAMES)


def _threshold_cell(threshold: dict[str, Any]) -> str:
    overall = threshold["calibration"]["overall"]
    measured = threshold["evaluation"]
    if overall["threshold"] is None:
        return f"none: {overall['reason']}"
    return (
        f"≥ {overall['threshold']:.3f} (cal. {_pct(overall['precision'])} / {_pct(overall['coverage'])}) → "
        f"**{_pct(measured['precision'])}** / {_pct(measured['coverage'])}"
    )


def _per_label_cell(threshold: dict[str, Any]) -> str:
    parts = []
    for label in NAMES:
        entry = threshold["per_label"].get(label)
        if entry is None or entry["evaluation"] is None:
            continue
        measured = entry["evaluation"]
        parts.append(
            f"{label} ≥ {measured['threshold']:.3f}: {_pct(measured['precision'])} / {_pct(measured['coverage'])}"
        )
    if not parts:
        return "none"
    combined = threshold["per_label_combined"]
    return "; ".join(parts) + f" (together {_pct(combined['precision'])} / {_pct(combined['coverage'])})"


def markdown(report: dict[str, Any]) -> str:
    """Render the report as the LLM section of bench/RESULTS.md."""
    machine, config = report["machine"], report["config"]
    data = report["data"]
    lines = [
        f"{SECTION_HEADING} (`bench/llm.py`)",
        "",
        "Pre-labeling accuracy and speed of the three labelers on the real Twitter US Airline Sentiment tweets, and "
        "whether a threshold chosen for 95% precision on one set of human labels keeps it on another. "
        f"`Tweets.csv`: {data['rows_in_file']:,} rows, {data['duplicate_rows_dropped']} duplicate tweet_ids dropped "
        f"(first copy kept), {data['tweets']:,} tweets; `time_split` holds out the newest 20% "
        f"({data['holdout_size']:,} tweets from {data['cutoff'][:16]} UTC); the older {data['train_size']:,} are the "
        f"only source of few-shot neighbours. From the holdout, a fixed random sample (seed 0): "
        f"**{config['rows']:,} evaluation rows** and a disjoint **{config['calibration_rows']:,} calibration rows**"
        + (" (**--quick: a check, not a measurement**)" if config["quick"] else "")
        + ". The dataset's labels play the humans. Labels and the descriptions every labeler is given: "
        + "; ".join(f"**{label.name}** “{label.description}”" for label in LABELS)
        + f". Labelers are built with `labeler_from_spec` and called {CHUNK} texts at a time, as the pre-labeling job "
        "does; the confidence of a label is its probability, as the app stores it.",
        "",
        f"Machine: **{machine['cores']} cores** ({machine['cpu'] or 'unknown CPU'}), {machine['ram_gib']} GiB RAM, "
        f"Python {machine['python']}, torch {report['versions']['torch']}, transformers "
        f"{report['versions']['transformers']}, llama_cpp_python {report['versions']['llama_cpp_python']}; measured "
        f"{machine['date']}, {report['total_seconds'] / 60:.0f} min in all; 1-minute load "
        f"{min(report['loads_1m'])}–{max(report['loads_1m'])} before the measured runs, other processes busy "
        f"{min(report['others_busy_cores'])}–{max(report['others_busy_cores'])} cores. Threads: "
        + report["threads_summary"]
        + ". examples/s is the median of per-chunk rates (model load apart); the label distribution is the share "
        "of negative / neutral / positive predictions on the evaluation rows (humans: "
        f"{_dist(report['human_distribution']['evaluation'])}).",
        "",
        REFERENCE,
        "",
        "| labeler | variant | rows (eval + cal) | accuracy | macro-F1 | examples/s | model load s | predicted % neg / "
        "neu / pos | threshold chosen on calibration rows (its cal. precision / coverage) → precision / coverage on "
        "evaluation rows | per-label thresholds → precision / coverage on evaluation rows |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for entry in report["labelers"]:
        if entry.get("skipped"):
            lines.append(
                f"| {entry['labeler']} | {entry['variant']} | – | – | – | – | – | – | skipped: {entry['skipped']} | – |"
            )
            continue
        scores = entry["scores"]
        rate = entry["speed"]["examples_per_s"]
        load = entry.get("model_load_s")
        lines.append(
            f"| {entry['labeler']} | {entry['variant']} | {scores['evaluation_rows']:,} + "
            f"{scores['calibration_rows']:,} | **{scores['accuracy']:.3f}** | {scores['macro_f1']:.3f} | "
            f"{'–' if rate is None else f'{rate:.2f}'}{entry.get('speed_note', '')} | "
            f"{'–' if load is None else f'{load:.1f}'} | {_dist(scores['predicted_distribution'])}"
            f"{' (never ' + ', '.join(scores['never_predicts']) + ')' if scores['never_predicts'] else ''} | "
            f"{_threshold_cell(scores['threshold'])} | {_per_label_cell(scores['threshold'])} |"
        )
    lines += [
        "",
        f"Majority baseline (always “{report['majority_label']}”, the train part's majority): accuracy "
        f"{report['majority_baseline']['accuracy']:.3f}, macro-F1 {report['majority_baseline']['macro_f1']:.3f}. "
        "Thresholds: `trust_report(target=0.95)` on the calibration rows (the lowest confidence whose one-sided 95% "
        "Wilson lower bound of precision is ≥ 95% over ≥ 30 accepted rows), then applied unchanged to the evaluation "
        "rows: precision there is measured, not promised. Per label: rows the labeler gave that label, accepted at "
        "that label's own threshold; coverage is of all evaluation rows.",
        "",
        "### Precision / coverage on the evaluation rows",
        "",
        "Accepting every label with confidence ≥ t: coverage / precision (– where nothing is accepted). Every point "
        "of the curve is in the JSON.",
        "",
        "| labeler | variant | " + " | ".join(f"t = {t}" for t in TABLE_THRESHOLDS) + " |",
        "|---|---|" + "---:|" * len(TABLE_THRESHOLDS),
    ]
    for entry in report["labelers"]:
        if entry.get("skipped"):
            continue
        points = {point["threshold"]: point for point in entry["scores"]["at_thresholds"]}
        cells = []
        for t in TABLE_THRESHOLDS:
            point = points[t]
            cells.append(f"{_pct(point['coverage'])} / {_pct(point['precision'])}")
        lines.append(f"| {entry['labeler']} | {entry['variant']} | " + " | ".join(cells) + " |")
    calibration = [entry for entry in report["labelers"] if entry.get("calibration_effect")]
    if calibration:
        lines += [
            "",
            "### causal_lm: contextual calibration",
            "",
            "One run gives both: `proba` is calibrated (divided by the label prior the model gives the content-free "
            'inputs “N/A”, “” and “[MASK]”), `details["uncalibrated"]` is the raw softmax of the label '
            "log-likelihoods. Calibrating costs the content-free inputs' prompt tails: three per chunk zero-shot "
            "(all texts share the prompt), three per text with neighbour shots (every text has its own prompt).",
            "",
            "| variant | content-free prior neg / neu / pos | raw accuracy / macro-F1 | calibrated accuracy / macro-F1 "
            "| raw predicted % | calibrated predicted % |",
            "|---|---|---|---|---|---|",
        ]
        for entry in calibration:
            effect = entry["calibration_effect"]
            prior = effect["content_free_prior"]
            lines.append(
                f"| {entry['variant'].removesuffix(', calibrated')} | "
                f"{' / '.join(f'{prior[name]:.3f}' for name in NAMES)} | "
                f"{effect['raw']['accuracy']:.3f} / {effect['raw']['macro_f1']:.3f} | "
                f"{effect['calibrated']['accuracy']:.3f} / {effect['calibrated']['macro_f1']:.3f} | "
                f"{_dist(effect['raw']['predicted_distribution'])} | "
                f"{_dist(effect['calibrated']['predicted_distribution'])} |"
            )
    if report["notes"]:
        lines += ["", "### Notes", ""]
        lines += [f"- {note}" for note in report["notes"]]
    lines.append("")
    return "\n".join(lines)


def write_markdown(section: str) -> None:
    """Replace only the LLM section of bench/RESULTS.md, keeping the other benchmarks' sections."""
    spec = importlib.util.spec_from_file_location("results_md", BENCH / "results_md.py")
    results_md = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(results_md)
    results_md.write_section(SECTION_HEADING, section, RESULTS_MD)


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    """Hold the rows, the neighbours and the collected results while the labelers run one after another."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.rows_all, self.data = read_tweets(args.data)
        split = time_split(self.rows_all, holdout_share=HOLDOUT_SHARE)
        self.train = list(split.train)
        self.eval_rows, self.cal_rows = sample_holdout(split.holdout, args.rows, args.calibration_rows)
        self.data.update(
            path=str(args.data),
            train_size=len(split.train),
            holdout_size=len(split.holdout),
            cutoff=split.cutoff.astimezone(dt.UTC).isoformat() if split.cutoff else None,
            dropped_duplicates=split.dropped_duplicates,
        )
        self.texts_eval = [self.rows_all[i].text for i in self.eval_rows]
        self.texts_cal = [self.rows_all[i].text for i in self.cal_rows]
        self.true_eval = [self.rows_all[i].label for i in self.eval_rows]
        self.true_cal = [self.rows_all[i].label for i in self.cal_rows]
        self.majority = Counter(self.rows_all[i].label for i in self.train).most_common(1)[0][0]
        self.results: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.threads: dict[str, Any] = {}
        self.loads: list[float] = []
        self.busy: list[float] = []
        self.neighbours: dict[str, Any] = {}
        self.shots_eval: list[list[Shot]] = []
        self.shots_cal: list[list[Shot]] = []
        self.causal_zero: dict[str, Any] | None = None

    def quiet(self) -> dict[str, float]:
        """Record the load before a measured run."""
        seen = load_state()
        self.loads.append(seen["load_1m_before"])
        self.busy.append(seen["others_busy_cores_before"])
        return seen

    def thread_choices(self) -> list[int]:
        if self.args.threads == "auto":
            return [1, 2] if (os.cpu_count() or 1) >= 2 else [1]
        return [int(self.args.threads)]

    # -- neighbours ---------------------------------------------------------------------------------------------------

    def build_neighbours(self) -> None:
        """Embed the train part and the sampled rows with MiniLM and find each sampled row's nearest train rows."""
        import torch

        from models_app.ml.featurizers import MiniLMFeaturizer, _load_minilm
        from models_app.ml.neighbours import top_k

        started = time.perf_counter()
        _load_minilm()
        self.minilm_load_s = round(time.perf_counter() - started, 3)
        featurizer = MiniLMFeaturizer()
        choices = self.thread_choices()
        probe_texts = self.texts_eval[: 64 if not self.quick else 16]
        if len(choices) > 1:
            self.threads["minilm"] = probe_torch_threads("MiniLM", lambda: featurizer.transform(probe_texts), choices)
        else:
            self.threads["minilm"] = {"chosen": choices[0]}
        torch.set_num_threads(self.threads["minilm"]["chosen"])
        base = self.train[::QUICK_BASE_EVERY] if self.quick else self.train
        seen = self.quiet()
        started = time.perf_counter()
        base_vectors = featurizer.transform([self.rows_all[i].text for i in base])
        base_seconds = time.perf_counter() - started
        query_vectors = featurizer.transform(self.texts_eval + self.texts_cal)
        positions, similarity = top_k(query_vectors, base_vectors, EMBEDDING_SHOTS)
        shots = [
            [Shot(text=self.rows_all[base[p]].text, label=self.rows_all[base[p]].label) for p in row]
            for row in positions
        ]
        self.shots_eval, self.shots_cal = shots[: len(self.eval_rows)], shots[len(self.eval_rows) :]
        self.neighbours = {
            "featurizer": "minilm (all-MiniLM-L6-v2), cosine, neighbours.top_k",
            "pool": "train part" + (f", every {QUICK_BASE_EVERY}th row (--quick)" if self.quick else ""),
            "pool_size": len(base),
            "embed_pool_s": round(base_seconds, 2),
            "k": EMBEDDING_SHOTS,
            "median_top1_cosine": round(float(np.median(similarity[:, 0])), 4) if len(similarity) else None,
            "top1_label_agrees": round(
                float(
                    np.mean(
                        [
                            row[0].label == truth
                            for row, truth in zip(shots, self.true_eval + self.true_cal, strict=True)
                        ]
                    )
                ),
                4,
            ),
            **seen,
        }
        print(
            f"neighbours: {len(base):,} train texts embedded in {base_seconds:.0f} s; nearest neighbour's label equals "
            f"the row's in {self.neighbours['top1_label_agrees']:.1%}",
            flush=True,
        )

    # -- recording ----------------------------------------------------------------------------------------------------

    def record(
        self,
        labeler: str,
        variant: str,
        proba: np.ndarray,
        *,
        n_eval: int,
        run: dict[str, Any],
        params: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Score a variant's probabilities (evaluation rows first, then calibration rows) and keep the result."""
        n_cal = len(proba) - n_eval
        scores = score_variant(
            proba[:n_eval], proba[n_eval:], self.true_eval[:n_eval], self.true_cal[:n_cal], self.majority
        )
        entry = {
            "labeler": labeler,
            "variant": variant,
            "params": params,
            "speed": speed(run["chunks"], run["seconds"]),
            "details": run["details"],
            "scores": scores,
            **(extra or {}),
        }
        self.results.append(entry)
        threshold = scores["threshold"]
        measured = threshold["evaluation"]
        chosen = threshold["calibration"]["overall"]["threshold"]
        print(
            f"  {labeler} {variant}: accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}, "
            f"{entry['speed']['examples_per_s']} ex/s, predicted {scores['predicted_distribution']}; threshold "
            + (
                f"{chosen:.3f} → eval precision {_pct(measured['precision'])}, coverage {_pct(measured['coverage'])}"
                if chosen is not None
                else f"none ({threshold['calibration']['overall']['reason']})"
            ),
            flush=True,
        )
        return entry

    # -- labelers -----------------------------------------------------------------------------------------------------

    def run_embedding(self) -> None:
        """Run the embedding labeler zero-shot and with 10 neighbour shots."""
        threads = self.threads["minilm"]["chosen"]
        texts = self.texts_eval + self.texts_cal
        for variant, shots in (
            ("zero-shot", None),
            (f"{EMBEDDING_SHOTS} neighbours", self.shots_eval + self.shots_cal),
        ):
            labeler = labeler_from_spec("embedding", {}, threads=threads)
            seen = self.quiet()
            print(f"embedding {variant} on {len(texts)} texts …", flush=True)
            run = run_labeler(labeler, texts, shots, name=f"embedding {variant}")
            self.record(
                "embedding",
                variant,
                run["proba"],
                n_eval=len(self.eval_rows),
                run=run,
                params={**labeler.params(), "threads": threads, "shots": 0 if shots is None else EMBEDDING_SHOTS},
                extra={"model_load_s": self.minilm_load_s, "load": seen},
            )

    def _causal(self, threads: int) -> Any:
        return labeler_from_spec("causal_lm", {}, threads=threads)

    def run_causal(self) -> None:
        """Run SmolLM2 zero-shot on every row, then with 3 neighbour shots on as many rows as the budget allows."""
        import torch

        probe = self._causal(1)
        started = time.perf_counter()
        probe.load()
        load_s = round(time.perf_counter() - started, 3)
        choices = self.thread_choices()
        probe_texts = self.texts_eval[: CHUNK if not self.quick else 8]
        if len(choices) > 1:
            self.threads["causal_lm"] = probe_torch_threads(
                "SmolLM2 (transformers)",
                lambda: probe.label_log_likelihoods(probe_texts, LABELS, with_content_free=True),
                choices,
            )
        else:
            self.threads["causal_lm"] = {"chosen": choices[0]}
        threads = self.threads["causal_lm"]["chosen"]
        torch.set_num_threads(threads)

        n_eval = len(self.eval_rows)
        texts = self.texts_eval + self.texts_cal
        labeler = self._causal(threads)
        seen = self.quiet()
        print(f"causal_lm zero-shot on {len(texts)} texts …", flush=True)
        run = run_labeler(labeler, texts, None, name="causal_lm zero-shot")
        params = {**labeler.params(), "threads": threads, "shots": 0}
        self.causal_zero = run
        self._record_causal("zero-shot", run, n_eval=n_eval, params=params, load_s=load_s, seen=seen)

        budget = self.args.causal_shots_minutes * 60
        if budget <= 0:
            self.notes.append("causal_lm with neighbour shots was not run (--causal-shots-minutes 0).")
            return
        seen = self.quiet()
        probe_rows = min(n_eval, SPEED_PROBE_ROWS)
        print(f"causal_lm {CAUSAL_SHOTS} neighbours: timing {probe_rows} rows …", flush=True)
        shots_eval = [row[:CAUSAL_SHOTS] for row in self.shots_eval]
        shots_cal = [row[:CAUSAL_SHOTS] for row in self.shots_cal]
        first = run_labeler(labeler, self.texts_eval[:probe_rows], shots_eval[:probe_rows], name="probe")
        rate = probe_rows / first["seconds"]
        full = n_eval + len(self.cal_rows)
        fits = int(rate * budget)
        if fits >= full:
            use_eval, use_cal = n_eval, len(self.cal_rows)
            subset = None
        else:
            half = max(CHUNK, (fits // 2) // CHUNK * CHUNK)
            use_eval, use_cal = min(n_eval, max(half, probe_rows)), min(len(self.cal_rows), half)
            subset = (
                f"{probe_rows} rows ran at {rate:.2f} texts/s, so all {full:,} rows would take "
                f"{full / rate / 60:.0f} min, over the {self.args.causal_shots_minutes:g} min budget: run on the first "
                f"{use_eval:,} evaluation and {use_cal:,} calibration rows of the same random sample"
            )
            self.notes.append(f"causal_lm with {CAUSAL_SHOTS} neighbour shots: {subset}.")
            print(f"  {subset}", flush=True)
        rest = run_labeler(
            labeler,
            self.texts_eval[probe_rows:use_eval] + self.texts_cal[:use_cal],
            shots_eval[probe_rows:use_eval] + shots_cal[:use_cal],
            name=f"causal_lm {CAUSAL_SHOTS} neighbours",
        )
        counts = (len(first["proba"]), len(rest["proba"]))
        priors = (first["details"].get("content_free_prior"), rest["details"].get("content_free_prior"))
        details = dict(rest["details"])
        if all(priors) and sum(counts):
            details["content_free_prior"] = {
                label: round(sum(n * prior[label] for n, prior in zip(counts, priors, strict=True)) / sum(counts), 4)
                for label in NAMES
            }
        merged = {
            "proba": np.vstack([first["proba"], rest["proba"]]),
            "uncalibrated": np.vstack([first["uncalibrated"], rest["uncalibrated"]]),
            "details": details,
            "chunks": first["chunks"] + rest["chunks"],
            "seconds": first["seconds"] + rest["seconds"],
        }
        self._record_causal(
            f"{CAUSAL_SHOTS} neighbours",
            merged,
            n_eval=use_eval,
            params={**labeler.params(), "threads": threads, "shots": CAUSAL_SHOTS},
            load_s=load_s,
            seen=seen,
            n_cal=use_cal,
            subset=subset,
        )

    def _record_causal(
        self,
        variant: str,
        run: dict[str, Any],
        *,
        n_eval: int,
        params: dict[str, Any],
        load_s: float,
        seen: dict[str, float],
        n_cal: int | None = None,
        subset: str | None = None,
    ) -> None:
        """Record the calibrated and the raw probabilities of one causal_lm run as two variants, and their contrast."""
        extra: dict[str, Any] = {"model_load_s": load_s, "load": seen}
        if subset:
            extra["subset"] = subset
            if self.causal_zero is not None:
                n_cal = n_cal or 0
                zero = self.causal_zero
                rows = np.r_[np.arange(n_eval), len(self.eval_rows) + np.arange(n_cal)]
                same = score_variant(
                    zero["proba"][rows][:n_eval],
                    zero["proba"][rows][n_eval:],
                    self.true_eval[:n_eval],
                    self.true_cal[:n_cal],
                    self.majority,
                )
                extra["zero_shot_on_same_rows"] = {
                    key: same[key] for key in ("accuracy", "macro_f1", "predicted_distribution")
                }
        calibrated = self.record(
            "causal_lm", f"{variant}, calibrated", run["proba"], n_eval=n_eval, run=run, params=params, extra=extra
        )
        raw = self.record(
            "causal_lm",
            f"{variant}, uncalibrated",
            run["uncalibrated"],
            n_eval=n_eval,
            run=run,
            params={**params, "calibrate": False},
            extra={
                **extra,
                "speed_note": " (same run)",
                "probabilities": "details['uncalibrated'] of the calibrated run: what calibrate=False returns",
            },
        )
        calibrated["calibration_effect"] = {
            "content_free_prior": run["details"].get("content_free_prior"),
            "content_free_inputs": run["details"].get("content_free_inputs"),
            "raw": {key: raw["scores"][key] for key in ("accuracy", "macro_f1", "predicted_distribution")},
            "calibrated": {
                key: calibrated["scores"][key] for key in ("accuracy", "macro_f1", "predicted_distribution")
            },
        }

    def run_openai(self) -> None:
        """Serve the bundled GGUF with llama_cpp over HTTP and run the OpenAILabeler against it, zero-shot."""
        model_path = str(Path(smollm2_folder()) / SMOLLM2_GGUF)
        try:
            import llama_cpp  # noqa: F401
        except ImportError as error:
            self.skip("openai", "zero-shot", f"llama_cpp is not importable ({error})")
            return
        print("openai: starting the llama_cpp server …", flush=True)
        try:
            server = LlamaServer(model_path, SMOLLM2_GGUF, self.thread_choices())
        except (RuntimeError, OSError) as error:
            self.skip("openai", "zero-shot", f"the llama_cpp server did not start: {error}")
            return
        try:
            info = server.info
            self.threads["openai_server"] = {
                "chosen": info["threads"],
                "seconds_per_request_by_threads": info["thread_probe_s_per_request"],
            }
            print(f"  listening on {server.base_url}: {info}", flush=True)
            params = {"base_url": server.base_url, "model": SMOLLM2_GGUF, "api_key_env": ""}
            labeler = labeler_from_spec("openai", params)
            texts = self.texts_eval + self.texts_cal
            seen = self.quiet()
            print(f"openai zero-shot on {len(texts)} texts …", flush=True)
            try:
                run = run_labeler(labeler, texts, None, name="openai zero-shot")
            except Exception as error:  # noqa: BLE001 - any failure becomes the skip reason in the report
                self.skip("openai", "zero-shot", f"{type(error).__name__}: {error}")
                return
            stats = server.stats()
            client_seconds = run["seconds"]
            # Speed only: the same labeler without log-probs on the first rows, to show what they cost the server.
            plain = labeler_from_spec("openai", {**params, "use_logprobs": False})
            sample = self.texts_eval[:SPEED_PROBE_ROWS]
            print(f"openai without log-probs (speed only) on {len(sample)} texts …", flush=True)
            plain_run = run_labeler(plain, sample, None, name="openai without log-probs")
            after = server.stats()
            server_info = {
                **info,
                "requests": stats["requests"],
                "errors": stats["errors"],
                "response_formats": stats["response_formats"],
                "server_seconds": round(stats["seconds"], 2),
                "server_share_of_time": round(stats["seconds"] / client_seconds, 3) if client_seconds else None,
                "mean_completion_tokens": round(stats["completion_tokens"] / max(stats["requests"], 1), 2),
                "mean_prompt_tokens": round(stats["prompt_tokens"] / max(stats["requests"], 1), 1),
                "without_logprobs_speed_only": {
                    **speed(plain_run["chunks"], plain_run["seconds"]),
                    "server_seconds": round(after["seconds"] - stats["seconds"], 2),
                    "rows": "the first evaluation rows; accuracy not scored",
                },
            }
            self.record(
                "openai",
                "zero-shot",
                run["proba"],
                n_eval=len(self.eval_rows),
                run=run,
                params={**labeler.params(), "server": "llama_cpp via http.server on 127.0.0.1"},
                extra={"model_load_s": info["load_s"], "server": server_info, "load": seen},
            )
        finally:
            server.stop()

    def skip(self, labeler: str, variant: str, reason: str) -> None:
        """Keep a labeler that could not run in the table, with the reason."""
        print(f"  {labeler} {variant} skipped: {reason}", flush=True)
        self.results.append({"labeler": labeler, "variant": variant, "skipped": reason})


def result_notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """Explain what the table cannot: where the time goes and what a subset compares against."""
    notes = []
    for entry in results:
        if entry.get("skipped"):
            continue
        name = f"{entry['labeler']} {entry['variant']}"
        if entry["labeler"] == "embedding" and entry["params"].get("shots"):
            notes.append(
                f"{name}: each call embeds its texts, the label descriptions and every shot of the chunk (up to "
                f"{CHUNK * EMBEDDING_SHOTS} texts per {CHUNK}), as the pre-labeling job would, hence the lower rate."
            )
        same = entry.get("zero_shot_on_same_rows")
        if same and entry["variant"].endswith(", calibrated"):
            notes.append(
                f"{name} ran on a subset ({entry['scores']['evaluation_rows']:,} evaluation rows); zero-shot "
                f"calibrated on the same evaluation rows: accuracy {same['accuracy']:.3f}, macro-F1 "
                f"{same['macro_f1']:.3f}, predicted % {_dist(same['predicted_distribution'])}."
            )
        server = entry.get("server")
        if server:
            details = entry["details"]
            notes.append(
                f"{name}: {server['requests']:,} HTTP requests to the llama_cpp server ({server['errors']} errors, "
                f"response formats {server['response_formats']}), {server['threads']} thread(s); the server spent "
                f"{server['server_seconds']:.0f} s of the client's {entry['speed']['seconds']:.0f} s "
                f"({server['server_share_of_time']:.0%}) in `create_chat_completion`; mean "
                f"{server['mean_prompt_tokens']:.0f} prompt and {server['mean_completion_tokens']:.1f} completion "
                f"tokens. Probabilities from log-probs for {details.get('from_logprobs', 0):,} rows, from the answer "
                f"alone for {details.get('from_answer', 0):,}, unparsed {details.get('unparsed', 0):,}, retries "
                f"{details.get('retries', 0)}. Model load {server['load_s']:.2f} s, warm-up request "
                f"{server['warmup_s']:.2f} s, not counted."
            )
            plain = server.get("without_logprobs_speed_only")
            if plain:
                notes.append(
                    f"{name} without log-probs (`use_logprobs=False`, speed only, first {plain['texts']} evaluation "
                    f"rows, same server, still `logits_all=True`): {plain['examples_per_s']:.2f} examples/s against {entry['speed']['examples_per_s']:.2f} "
                    "with them; without log-probs every answer gets the fixed `no_logprobs_confidence` (0.9), so no "
                    "threshold can sort right from wrong."
                )
    return notes


def threads_summary(threads: dict[str, Any]) -> str:
    """Say which thread counts ran, and what the 1-vs-2 probe measured, in one line."""
    parts = []
    for name, label in (
        ("minilm", "MiniLM (neighbours, embedding labeler)"),
        ("causal_lm", "SmolLM2 via transformers"),
        ("openai_server", "llama_cpp server"),
    ):
        if name not in threads:
            continue
        entry = threads[name]
        timings = entry.get("seconds_by_threads") or entry.get("seconds_per_request_by_threads")
        measured = (
            " (probe: " + ", ".join(f"{count} → {seconds:.3f} s" for count, seconds in timings.items()) + ")"
            if timings
            else ""
        )
        parts.append(f"{label} {entry['chosen']}{measured}")
    return "; ".join(parts) if parts else "none recorded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_TWEETS, help="Tweets.csv of Twitter US Airline Sentiment.")
    parser.add_argument("--rows", type=int, default=None, help="Evaluation rows from the holdout (default 1000).")
    parser.add_argument(
        "--calibration-rows", type=int, default=None, help="Calibration rows, disjoint from them (default 1000)."
    )
    parser.add_argument(
        "--labelers", default="embedding,causal_lm,openai", help="Comma-separated: embedding, causal_lm, openai."
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS} + {QUICK_ROWS} rows, to check end to end.")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default bench/results/llm.json).")
    parser.add_argument(
        "--threads", choices=("auto", "1", "2"), default="auto", help="Threads for the local models (auto: probe)."
    )
    parser.add_argument(
        "--causal-shots-minutes",
        type=float,
        default=25.0,
        help="Time budget of the causal_lm shot variant; fewer rows when all would exceed it (0 skips it).",
    )
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(json.loads(args.serve))
        return

    args.rows = args.rows or (QUICK_ROWS if args.quick else 1000)
    args.calibration_rows = args.calibration_rows or (QUICK_ROWS if args.quick else 1000)
    labelers = [name.strip() for name in args.labelers.split(",") if name.strip()]
    unknown = sorted(set(labelers) - {"embedding", "causal_lm", "openai"})
    if unknown:
        parser.error(f"unknown labelers: {', '.join(unknown)}")
    out = args.out or (QUICK_JSON if args.quick else RESULTS_JSON)
    started_all = time.perf_counter()
    machine = machine_info()
    code_at_start = code_fingerprint()
    print(
        f"machine: {machine['cores']} cores ({machine['cpu']}), load {os.getloadavg()[0]:.2f}; "
        f"{args.rows} evaluation + {args.calibration_rows} calibration rows",
        flush=True,
    )

    bench = Bench(args)
    if "embedding" in labelers or "causal_lm" in labelers:
        bench.build_neighbours()
    if "embedding" in labelers:
        bench.run_embedding()
    if "causal_lm" in labelers:
        bench.run_causal()
    if "openai" in labelers:
        bench.run_openai()

    majority = classification_report(
        bench.true_eval, [bench.majority] * len(bench.true_eval), None, NAMES, train_majority=bench.majority
    )
    code_at_end = code_fingerprint()
    changed = sorted(name for name in CODE_UNDER_TEST if code_at_start[name] != code_at_end[name])
    notes = list(bench.notes) + result_notes(bench.results)
    if "openai" in labelers:
        notes.append(
            "openai: llama_cpp_python's AMX weight buffers crashed on this VM while this benchmark was written (general protection fault at "
            "`ldtilecfg` in `ggml_backend_amx_mul_mat`, every decode), so the server loads the GGUF with "
            "`use_extra_bufts = False` (plain CPU buffers). The labeler's `json_schema` response format is "
            'translated to llama_cpp\'s `{"type": "json_object", "schema": ...}` (a grammar built from the '
            "schema); log-probs need `logits_all=True` and are the model's unconstrained top 5 at each answer token "
            "(llama_cpp sorts the whole 49k vocabulary in Python per token, part of the server time)."
        )
    if changed:
        notes.append(f"Measured code changed during the run: {', '.join(changed)}; numbers may mix versions.")
    report: dict[str, Any] = {
        "benchmark": "llm",
        "machine": machine,
        "versions": versions(),
        "code_under_test": code_at_start,
        "code_changed_during_run": changed,
        "config": {
            "rows": args.rows,
            "calibration_rows": args.calibration_rows,
            "quick": args.quick,
            "labelers": labelers,
            "labels": [asdict(label) for label in LABELS],
            "holdout_share": HOLDOUT_SHARE,
            "sample_seed": SAMPLE_SEED,
            "chunk": CHUNK,
            "target_precision": TARGET,
            "curve_thresholds": list(CURVE_THRESHOLDS),
            "causal_shots_minutes": args.causal_shots_minutes,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "data": bench.data,
        "neighbours": bench.neighbours,
        "threads": bench.threads,
        "threads_summary": threads_summary(bench.threads),
        "human_distribution": {
            "evaluation": _distribution(bench.true_eval),
            "calibration": _distribution(bench.true_cal),
        },
        "majority_label": bench.majority,
        "majority_baseline": {"accuracy": round(majority.accuracy, 4), "macro_f1": round(majority.macro_f1, 4)},
        "reference_elsewhere": REFERENCE,
        "loads_1m": bench.loads or [round(os.getloadavg()[0], 2)],
        "others_busy_cores": bench.busy or [0.0],
        "labelers": bench.results,
        "notes": notes,
        "total_seconds": round(time.perf_counter() - started_all, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    section = markdown(report)
    if not args.quick and out.resolve() == RESULTS_JSON.resolve():
        write_markdown(section)
        print(f"wrote {out} and {RESULTS_MD} in {report['total_seconds']:.0f} s")
    else:
        print(section)
        print(f"wrote {out} in {report['total_seconds']:.0f} s (RESULTS.md untouched)")
    if changed:
        print(f"WARNING: measured code changed during the run: {', '.join(changed)}; run again.")


if __name__ == "__main__":
    main()
