"""Benchmark the prediction API: the published model and rules under gunicorn on PostgreSQL, over HTTP.

Setup (a child process with Django pointed at a fresh database): the YouTube spam demo comments are imported
with their labels, a hashing-feature model is trained, gated and published by the real services, and a rule
set of two rules (a keyword force rule, an abstain-below-confidence rule) is published on top, so every request
runs the whole serving path: token auth, membership, the deployment switch, the cached model, the rules, the
prediction log row and, for uncertain predictions, the feedback task sent to Redis.

Four workloads run `--repeat` times each, interleaved, against gunicorn (2 processes × 2 threads, as
`scripts/run.py` ships it):

1. batch 1, one client, sequential: 200 warm-up then 2,000 timed requests;
2. batch 100, one client, sequential: 20 warm-up then 200 timed requests;
3. batch 1, 10 concurrent clients in a closed loop (no think time): 3 s warm-up then 20 s;
4. batch 100, 10 concurrent clients: 3 s warm-up then 20 s.

The load generator is this process (one thread and one keep-alive connection per client) on the same 2-core
machine, so client, server and PostgreSQL share the cores. Texts are drawn from the demo comments at random.

    .venv/bin/python bench/serve.py [--repeat 3] [--quick] [--keep]

Writes bench/results/serve.json and the serving section of bench/RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py shares its name with the standard library's `queue`, which psycopg imports: keep this folder off
# the import path before importing anything else.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
import psycopg  # noqa: E402

REPO = BENCH.parent
_spec = importlib.util.spec_from_file_location("bench_results_md", BENCH / "results_md.py")
_results_md = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_results_md)
write_section = _results_md.write_section

RESULTS_JSON = BENCH / "results" / "serve.json"
SECTION_HEADING = "## Prediction API"
DEFAULT_PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
DEFAULT_BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
DATABASE = "flywheel_bench_serve"
PROJECT_SLUG = "serve-bench"
SEED = 20261128
WORKERS, THREADS = 2, 2
TARGET_P99_MS = 50.0
RULES = [
    {
        "name": "channel plugs are spam",
        "conditions": [
            {"kind": "keywords", "words": ["check out my channel", "subscribe to my channel"], "mode": "any"}
        ],
        "action": "force",
        "label": "spam",
    },
    {
        "name": "unsure goes to people",
        "conditions": [{"kind": "confidence_below", "threshold": 0.55}],
        "action": "abstain",
    },
]


def child_setup() -> None:
    """Import the demo comments with labels, train + gate + publish a model, publish the rules; print JSON."""
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from labeling import services as labeling
    from labeling.models import Example, ImportSource
    from models_app import services
    from models_app.models import ModelVersion, Rule, RuleSet, TrainingTrigger

    project = labeling.project_create(
        slug=PROJECT_SLUG, name="Serving benchmark", labels=[{"name": "spam"}, {"name": "ham"}]
    )
    membership, _ = labeling.member_add(project=project, username="bench-client", role="annotator")
    _, token = labeling.api_token_create(user=membership.user, name="serving benchmark")
    options = labeling.ImportOptions(label_map={"1": "spam", "0": "ham"}, unescape_html=True)
    for path in sorted((REPO / "demo" / "youtube_spam").glob("*.csv")):
        job = labeling.import_job_create(
            project=project, source=ImportSource.COMMAND, filename=path.name, options=options, path=path
        )
        labeling.import_job_run(job_id=job.pk)
    started = time.perf_counter()
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    run = services.training_run_execute(run_id=run.pk)
    train_seconds = time.perf_counter() - started
    version = ModelVersion.objects.get(pk=run.model_version_id)
    if version.status != "published":
        raise SystemExit(f"the model was not published: {version.status_reason}")
    rule_set = RuleSet.objects.create(project=project, number=1, note="benchmark rules")
    for position, spec in enumerate(RULES, start=1):
        Rule.objects.create(rule_set=rule_set, position=position, **spec)
    services.rules_publish(project_id=project.pk, rule_set=rule_set)
    texts = list(Example.objects.filter(project=project).values_list("text", flat=True))
    print(
        json.dumps(
            {
                "token": token,
                "examples": len(texts),
                "texts": texts,
                "model": {
                    "number": version.number,
                    "featurizer": version.featurizer,
                    "macro_f1": version.metrics.get("macro_f1"),
                    "holdout": version.holdout.get("size"),
                    "train_seconds": round(train_seconds, 2),
                },
            }
        )
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "flywheel.wsgi:application",
                "--bind", f"127.0.0.1:{self.port}", "--worker-class", "gthread",
                "--workers", str(WORKERS), "--threads", str(THREADS), "--keep-alive", "75",
                "--timeout", "120", "--no-control-socket", "--error-logfile", str(log),
            ],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/accounts/login/")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("gunicorn did not start")

    def pids(self) -> list[int]:
        parent = psutil.Process(self.process.pid)
        return [self.process.pid, *(child.pid for child in parent.children(recursive=True))]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Client:
    """One keep-alive connection posting batches of texts; records each request's latency in ms."""

    def __init__(self, port: int, token: str, texts: list[str], batch: int, seed: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.texts = texts
        self.batch = batch
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.errors = 0
        self.abstained = 0
        self.predictions = 0
        self.fired = 0

    def once(self, record: bool) -> None:
        body = json.dumps({"texts": self.rng.sample(self.texts, self.batch)})
        started = time.perf_counter()
        self.conn.request("POST", f"/api/v1/projects/{PROJECT_SLUG}/predict", body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            self.errors += 1
            return
        if record:
            self.latencies.append(elapsed)
            predictions = json.loads(data)["predictions"]
            self.predictions += len(predictions)
            self.abstained += sum(item["abstained"] for item in predictions)
            self.fired += sum(bool(item["rules_fired"]) for item in predictions)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(clients: list[Client], seconds: float) -> dict[str, Any]:
    latencies = [value for client in clients for value in client.latencies]
    predictions = sum(client.predictions for client in clients)
    return {
        "requests": len(latencies),
        "errors": sum(client.errors for client in clients),
        "seconds": round(seconds, 2),
        "p50_ms": round(percentile(latencies, 0.5) or 0, 2),
        "p95_ms": round(percentile(latencies, 0.95) or 0, 2),
        "p99_ms": round(percentile(latencies, 0.99) or 0, 2),
        "max_ms": round(max(latencies), 2) if latencies else None,
        "requests_per_s": round(len(latencies) / seconds, 1) if seconds else None,
        "predictions_per_s": round(predictions / seconds, 1) if seconds else None,
        "abstained_share": round(sum(c.abstained for c in clients) / predictions, 3) if predictions else None,
        "rules_fired_share": round(sum(c.fired for c in clients) / predictions, 3) if predictions else None,
    }


def sequential(port: int, token: str, texts: list[str], batch: int, warmup: int, count: int, seed: int) -> dict:
    client = Client(port, token, texts, batch, seed)
    for _ in range(warmup):
        client.once(record=False)
    started = time.perf_counter()
    for _ in range(count):
        client.once(record=True)
    return summary([client], time.perf_counter() - started)


def concurrent(
    port: int, token: str, texts: list[str], batch: int, clients: int, warmup: float, seconds: float, seed: int
) -> dict:
    pool = [Client(port, token, texts, batch, seed + number) for number in range(clients)]
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    def loop(client: Client) -> None:
        while time.monotonic() < stop_at:
            client.once(record=time.monotonic() >= start_at)

    threads = [threading.Thread(target=loop, args=(client,)) for client in pool]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(pool, seconds)


def server_side(base_pg: str, since: dt.datetime) -> dict[str, Any]:
    """Median and p99 of the time the app itself logged per call (from the deployment read to the log row)."""
    with psycopg.connect(f"{base_pg}/{DATABASE}", autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms),"
            " count(*) FILTER (WHERE jsonb_array_length(feedback) > 0)"
            " FROM models_app_predictionlog WHERE created_at >= %s",
            (since,),
        ).fetchone()
    return {
        "logged_calls": row[0],
        "app_p50_ms": round(row[1] or 0, 2),
        "app_p99_ms": round(row[2] or 0, 2),
        "calls_with_feedback": row[3],
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


WORKLOADS = [
    ("batch 1, sequential", "b1_seq"),
    ("batch 100, sequential", "b100_seq"),
    ("batch 1, 10 concurrent clients", "b1_conc"),
    ("batch 100, 10 concurrent clients", "b100_conc"),
]


def run_workload(key: str, port: int, token: str, texts: list[str], quick: bool, seed: int) -> dict[str, Any]:
    scale = 0.1 if quick else 1.0
    if key == "b1_seq":
        return sequential(port, token, texts, 1, 200, int(2000 * scale), seed)
    if key == "b100_seq":
        return sequential(port, token, texts, 100, 20, max(20, int(200 * scale)), seed)
    batch = 1 if key == "b1_conc" else 100
    return concurrent(port, token, texts, batch, 10, 3.0, 20.0 * scale if quick else 20.0, seed)


def median(runs: list[dict[str, Any]], name: str) -> float | None:
    values = [run[name] for run in runs if run.get(name) is not None]
    return round(statistics.median(values), 2) if values else None


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    model = report["setup"]["model"]
    lines = [
        SECTION_HEADING,
        "",
        f"`bench/serve.py`, {report['machine']['date']}: {m['cores']} cores ({m['cpu']}), {m['ram_gib']} GiB, "
        f"PostgreSQL, Redis as the broker, gunicorn {WORKERS} processes × {THREADS} threads; the load generator "
        f"runs on the same machine. Model v{model['number']} ({model['featurizer']} features, macro-F1 "
        f"{model['macro_f1']:.3f} on its holdout of {model['holdout']}) trained on the {report['setup']['examples']:,} "
        "demo comments, with two published rules on top. Texts drawn at random from the demo comments. "
        f"Medians of {report['repeat']} runs; latency is per HTTP request, measured by the client.",
        "",
        "| workload | p50 ms | p95 ms | p99 ms | requests/s | predictions/s | app p50 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for title, key in WORKLOADS:
        row = report["summary"][key]
        lines.append(
            f"| {title} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | {row['requests_per_s']} | "
            f"{row['predictions_per_s']} | {row['app_p50_ms']} | {row['errors']} |"
        )
    target = report["summary"]["b1_seq"]["p99_ms"]
    verdict = "met" if target is not None and target < TARGET_P99_MS else "not met"
    conc = report["summary"]["b1_conc"]["p99_ms"]
    lines += [
        "",
        f"Target: p99 under {TARGET_P99_MS:.0f} ms for batch 1 with hashing features: sequential p99 {target} ms "
        f"(**{verdict}**); with 10 concurrent clients p99 {conc} ms.",
        "`app p50` is the time the app logged for the call itself (deployment read, model, rules, log row), "
        "without HTTP, auth and JSON. Uncertain predictions (confidence below 0.6) each send one feedback task to "
        f"Redis; {report['summary']['b1_seq'].get('feedback_share', 0):.0%} of batch-1 calls did.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short runs, to check the script")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--child-setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_setup:
        child_setup()
        return

    base_pg = DEFAULT_PG.rstrip("/")
    data_dir = Path(tempfile.mkdtemp(prefix="flywheel-serve-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"{base_pg}/{DATABASE}",
        "CELERY_BROKER_URL": DEFAULT_BROKER,
        "FLYWHEEL_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "flywheel.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DB_CONN_MAX_AGE": "600",
        "FLYWHEEL_LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    with psycopg.connect(f"{base_pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-setup"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"setup failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    setup = json.loads(result.stdout.strip().splitlines()[-1])
    texts = setup.pop("texts")
    token = setup.pop("token")
    print(f"setup: {setup}", flush=True)

    server = Server(env, data_dir / "gunicorn.log")
    runs: dict[str, list[dict[str, Any]]] = {key: [] for _, key in WORKLOADS}
    try:
        for repeat in range(args.repeat):
            for title, key in WORKLOADS:
                since = dt.datetime.now(dt.UTC)
                measured = run_workload(key, server.port, token, texts, args.quick, SEED + repeat)
                measured.update(server_side(base_pg, since))
                calls = measured["logged_calls"] or 1
                measured["feedback_share"] = round(measured["calls_with_feedback"] / calls, 3)
                runs[key].append(measured)
                print(f"run {repeat + 1} {title}: {measured}", flush=True)
    finally:
        server.stop()
        if not args.keep:
            with psycopg.connect(f"{base_pg}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)
        try:
            import redis

            redis.Redis.from_url(DEFAULT_BROKER).flushdb()
        except Exception:  # noqa: BLE001 - the broker's leftovers are harmless
            pass
    keys = ["p50_ms", "p95_ms", "p99_ms", "max_ms", "requests_per_s", "predictions_per_s", "app_p50_ms", "app_p99_ms"]
    keys += ["errors", "abstained_share", "rules_fired_share", "feedback_share"]
    report = {
        "machine": machine(),
        "repeat": args.repeat,
        "quick": args.quick,
        "server": {"worker_class": "gthread", "workers": WORKERS, "threads": THREADS},
        "setup": setup,
        "summary": {key: {name: median(items, name) for name in keys} for key, items in runs.items()},
        "runs": runs,
    }
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(report, indent=2) + "\n")
    if not args.quick:
        write_section(SECTION_HEADING, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
