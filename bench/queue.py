"""Benchmark the labeling queue over HTTP: annotators looping claim → submit against gunicorn on PostgreSQL.

For each size (100k and 1M examples by default) a fresh, migrated database gets a project, its examples
(one INSERT … SELECT over generate_series: short comment-like texts, distinct md5 content hashes),
the real `queue_fill` service (timed), and 151 annotators with their own API tokens. The app then runs
under gunicorn and three workloads run `--repeat` times each, interleaved:

1. sequential: one client, claim → submit, 100 warm-up pairs then 1,000 timed pairs;
2. thinking: 100 annotators in a closed loop, claim → think 2 s → submit, 10 s warm-up then 60 s;
3. saturation: 50 clients with no think time, 5 s warm-up then 30 s.

The load generator is this process: one thread and one keep-alive `http.client` connection per client,
timing each request with `time.perf_counter`. Its own CPU time, the gunicorn workers', the PostgreSQL
backends' of the benchmark database and the whole machine's are sampled over each timed window. After
each run the database is checked: no example with two standing human labels, no example handed to two
people, no lease answered twice, every 201 matched by exactly one annotation. `--sweep` first runs each
gunicorn configuration in SWEEP_CONFIGS briefly through the three workloads on a database of its own.

Run from the repository root:

    .venv/bin/python bench/queue.py [--sizes 100000,1000000] [--repeat 3] [--quick] [--sweep] [--keep]

Writes bench/results/queue.json and the queue section of bench/RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file shares its name with the standard library's `queue`, which psycopg and others import:
# keep its own folder off the import path before importing anything else.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
import psycopg  # noqa: E402

REPO = BENCH.parent
RESULTS_JSON = BENCH / "results" / "queue.json"
RESULTS_MD = BENCH / "RESULTS.md"
SECTION_HEADING = "## Queue"
DEFAULT_PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
PROJECT_SLUG = "queue-bench"
LABELS = ("spam", "ham")
SEED = 20240611
THINK_SECONDS = 2.0
CLIENTS_THINKING = 100
CLIENTS_SATURATION = 50
# gthread workers keep each client's connection open across requests (and across a 2 s think time).
DEFAULT_WORKER_CLASS = "gthread"
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 2
KEEP_ALIVE_SECONDS = 75
SERVER_RATIONALE = (
    "Why this one: 2 processes × 2 threads, as `scripts/run.py` ships it. The 2 cores are shared by PostgreSQL, "
    "the app and the load generator, and a request is mostly Python (the ORM building queries) with short waits "
    "for the database: one process per core (the GIL lets each use one) with a second thread to cover those "
    "waits. In trial runs more processes or threads did not raise throughput and lengthened the tails (a "
    "thread waits for the GIL again after each database round trip). gthread keeps each client's connection open (`--keep-alive` longer than the 2 s think time), but "
    "a connection stays with the worker that accepted it, so under saturation the split can be uneven (the "
    "sweep's last column); sync workers balance (a worker takes a request only when free), at the price of a "
    "new connection per request."
)
# (worker class, processes, threads): gthread keeps each client's connection; sync takes one request at a time.
SWEEP_CONFIGS = (("gthread", 2, 2), ("gthread", 2, 4), ("gthread", 4, 2), ("sync", 5, 1))
TARGETS = {
    "sequential_claim_p50_ms": 5.0,
    "sequential_claim_p99_ms": 15.0,
    "thinking_claim_p99_ms": 25.0,
    "saturation_labels_per_s": 150.0,
    "scaling_ratio": 1.5,
}
LABEL_STUDIO = (
    "Label Studio 1.23.2 on this kind of machine, as `label-studio start` ships it, PostgreSQL and 100k tasks: "
    "sequential next-task p50 216 ms (p99 368 ms), submit p50 172 ms; 50 annotators in a closed loop got "
    "6.1 labels/s with next-task p99 7,973 ms; on its default SQLite, 10 concurrent annotators were handed "
    "the same task 30 times in 167."
)

# Short comment-like texts; {n} makes each one distinct. Mixed YouTube comments and airline tweets.
TEXT_TEMPLATES = (
    "Check out my channel, new music every week!! subscribe plz %s",
    "@united flight %s delayed again and nobody at the gate knows why #fail",
    "this song never gets old, still listening in 2015 (%s)",
    "Make $500 a day from home, click here http://bit.ly/x%s",
    "@AmericanAir thanks for the upgrade on flight %s, crew was great",
    "who is watching this in %s? like if you are",
    "omg the drop at 2:%s gives me chills every single time",
    "@SouthwestAir lost my bag on flight %s, third time this year smh",
    "Please visit my page for free gift cards %s !!!",
    "the video is ok but the ads are too long lol %s",
    "@JetBlue wifi not working on flight %s, any update?",
    "I love this song so much, it reminds me of summer %s",
    "Subscribe to me and I'll subscribe back, deal? #%s",
    "@USAirways on hold for %s minutes, is anyone there",
    "best music video ever made, fight me (%s)",
    "@VirginAmerica seats on flight %s were really comfortable, thank you",
    "Follow me on twitter for daily giveaways %s",
    "my little brother can't stop singing this %s times a day",
    "@delta cancelled flight %s and no hotel voucher, unacceptable",
    "1 billion views and still the best, %s likes incoming",
)


# ---------------------------------------------------------------------------------------------
# Helpers shared with bench/import.py (a file named `import` cannot be imported by name)
# ---------------------------------------------------------------------------------------------


def _import_helpers() -> Any:
    spec = importlib.util.spec_from_file_location("bench_import_helpers", BENCH / "import.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


helpers = _import_helpers()


# ---------------------------------------------------------------------------------------------
# Setup: runs in a child process with Django configured for one database
# ---------------------------------------------------------------------------------------------


def child_setup(size: int) -> None:
    """Create the project, its examples, the annotators and their tokens, then fill the queue; print JSON."""
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.db import connection

    from labeling import services
    from labeling.models import Example
    from labeling.services.queue import _claim_sql

    project = services.project_create(
        slug=PROJECT_SLUG, name="Queue benchmark", labels=[{"name": name} for name in LABELS]
    )
    tokens: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for group, count in (("sequential", 1), ("thinking", CLIENTS_THINKING), ("saturation", CLIENTS_SATURATION)):
        tokens[group] = []
        for number in range(count):
            membership, _ = services.member_add(
                project=project, username=f"bench-{group}-{number:03d}", role="annotator"
            )
            _, raw = services.api_token_create(user=membership.user, name="queue benchmark")
            tokens[group].append({"user_id": membership.user_id, "token": raw})
    users_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Example._meta.db_table}
                   (project_id, text, meta, observed_at, content_hash, origin, ingested_at)
            SELECT %(project)s, t.text, '{{}}'::jsonb,
                   %(base)s - make_interval(secs => (g::bigint * 7919) %% 31536000),
                   md5(t.text), 'imported', now()
              FROM generate_series(1, %(size)s) AS g
             CROSS JOIN LATERAL (
                   SELECT format((%(templates)s::text[])[1 + g %% %(count)s], g) AS text) AS t""",
            {
                "project": project.pk,
                "base": dt.datetime(2015, 6, 1, tzinfo=dt.UTC),
                "size": size,
                "templates": list(TEXT_TEMPLATES),
                "count": len(TEXT_TEMPLATES),
            },
        )
        cursor.execute(f"ANALYZE {Example._meta.db_table}")
    examples_seconds = time.perf_counter() - started

    started = time.perf_counter()
    queued = services.queue_fill(project=project)
    fill_seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "project_id": project.pk,
                "tokens": tokens,
                "users_seconds": round(users_seconds, 2),
                "examples_seconds": round(examples_seconds, 2),
                "queue_fill_seconds": round(fill_seconds, 2),
                "queued": queued,
                "claim_sql": _claim_sql(skipped=False),
            }
        )
    )


def setup_database(*, size: int, env: dict[str, str], base_pg: str, database: str) -> dict[str, Any]:
    """Create and migrate a fresh database, then fill it through `child_setup`; return what it reported."""
    helpers.pg_recreate(base_pg, database)
    started = time.perf_counter()
    helpers.manage(env, "migrate", "--noinput", "-v", "0")
    migrate_seconds = time.perf_counter() - started
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-setup", str(size)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"setup of {database} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    started = time.perf_counter()
    with psycopg.connect(helpers.server_url(base_pg, database), autocommit=True) as conn:
        # What autovacuum does within a minute or two of a bulk insert; done now so every run starts alike.
        conn.execute("VACUUM ANALYZE labeling_example")
        conn.execute("VACUUM ANALYZE labeling_queueitem")
    report["vacuum_analyze_seconds"] = round(time.perf_counter() - started, 2)
    report["migrate_seconds"] = round(migrate_seconds, 2)
    report["table_sizes_after_setup"] = table_sizes(base_pg, database)
    return report


PG_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "max_connections",
    "synchronous_commit",
    "fsync",
    "autovacuum",
    "random_page_cost",
    "effective_cache_size",
    "jit",
)


def pg_settings(base_pg: str) -> dict[str, str]:
    with psycopg.connect(helpers.server_url(base_pg, "postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name = ANY(%s)",
            (list(PG_SETTINGS),),
        ).fetchall()
    return dict(rows)


def queue_table_stats(base_pg: str, database: str) -> dict[str, Any]:
    """Live and dead rows of the queue table and when it was last vacuumed or analyzed."""
    with psycopg.connect(helpers.server_url(base_pg, database), autocommit=True) as conn:
        row = conn.execute(
            """SELECT n_live_tup, n_dead_tup, last_vacuum::text, last_autovacuum::text, last_analyze::text,
                      last_autoanalyze::text
                 FROM pg_stat_user_tables WHERE relname = 'labeling_queueitem'"""
        ).fetchone()
    keys = ("live_rows", "dead_rows", "last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")
    return dict(zip(keys, row, strict=True)) if row else {}


def table_sizes(base_pg: str, database: str) -> dict[str, dict[str, Any]]:
    """Rows and total size (with indexes and TOAST) of the tables the queue touches."""
    sizes = {}
    with psycopg.connect(helpers.server_url(base_pg, database), autocommit=True) as conn:
        for table in ("labeling_example", "labeling_queueitem", "labeling_annotation"):
            rows, total, indexes = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}'), pg_indexes_size('{table}') FROM {table}"
            ).fetchone()
            sizes[table] = {"rows": rows, "total_mb": round(total / 2**20, 1), "indexes_mb": round(indexes / 2**20, 1)}
    return sizes


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """gunicorn with gthread workers on 127.0.0.1, started and stopped by this script."""

    def __init__(
        self, *, env: dict[str, str], workers: int, threads: int, log: Path, worker_class: str = "gthread"
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.worker_class = worker_class
        self.log = log
        self.command = [
            sys.executable, "-m", "gunicorn", "flywheel.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--worker-class", worker_class, "--workers", str(workers), "--threads", str(threads),
            "--keep-alive", str(KEEP_ALIVE_SECONDS), "--timeout", "120", "--graceful-timeout", "10",
            "--no-control-socket", "--error-logfile", str(log),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/accounts/login/")
                status = conn.getresponse().status
                conn.close()
                if status == 200 and len(self.worker_processes()) == self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def worker_processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.Error:
            return []

    def config(self) -> dict[str, Any]:
        return {
            "worker_class": self.worker_class,
            "workers": self.workers,
            "threads": self.threads,
            "keep_alive_s": KEEP_ALIVE_SECONDS,
            "db_conn_max_age_s": 600,
            "command": " ".join(part for part in self.command[1:] if not part.startswith("/")),
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------------------------
# The load generator
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str  # "claim" or "submit"
    started: float
    seconds: float
    status: int


@dataclass
class ClientLog:
    user_id: int
    samples: list[Sample] = field(default_factory=list)
    # (example_id, lease_id, resumed) for every 200 claim
    claims: list[tuple[int, str, bool]] = field(default_factory=list)
    # (annotation_id, example_id, lease_id, completed_at) for every 201 submit
    created: list[tuple[int, int, str, float]] = field(default_factory=list)
    repeats: int = 0
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    exhausted: bool = False


class Client:
    """One annotator: its own token and its own keep-alive connection."""

    def __init__(self, *, port: int, token: str, user_id: int, seed: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.log = ClientLog(user_id=user_id)
        self.rng = random.Random(seed)

    def post(self, kind: str, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            started = time.perf_counter()
            try:
                self.conn.request("POST", path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle connection: open a new one and send again (counted).
                self.conn.close()
                self.log.reconnects += 1
                if attempt:
                    raise
                continue
            self.log.samples.append(Sample(kind, started, time.perf_counter() - started, response.status))
            return response.status, payload
        raise AssertionError("unreachable")

    def claim(self) -> dict[str, Any] | None:
        """Claim the next item; None when the queue has nothing left for this user (or on an error)."""
        status, payload = self.post("claim", f"/api/v1/projects/{PROJECT_SLUG}/queue/claim", b"")
        if status == 204:
            self.log.exhausted = True
            return None
        if status != 200:
            self.log.errors.append(f"claim {status}: {payload[:200]!r}")
            return None
        item = json.loads(payload)
        self.log.claims.append((item["example_id"], item["lease_id"], item["resumed"]))
        return item

    def submit(self, item: dict[str, Any]) -> None:
        body = json.dumps({"label": self.rng.choice(LABELS), "lease_id": item["lease_id"]}).encode()
        status, payload = self.post("submit", f"/api/v1/examples/{item['example_id']}/annotations", body)
        if status == 201:
            created = json.loads(payload)
            self.log.created.append((created["id"], created["example_id"], created["lease_id"], time.perf_counter()))
        elif status == 200:
            self.log.repeats += 1
        else:
            self.log.errors.append(f"submit {status}: {payload[:200]!r}")

    def close(self) -> None:
        self.conn.close()


def annotate_until(client: Client, *, stop_at: float, think: float, start_delay: float = 0.0) -> None:
    """Loop claim → think → submit; a new claim starts only before `stop_at`, so no lease is left open."""
    if start_delay:
        time.sleep(start_delay)
    while time.perf_counter() < stop_at:
        item = client.claim()
        if item is None:
            if client.log.exhausted:
                return
            time.sleep(0.05)
            continue
        if think:
            time.sleep(think)
        client.submit(item)


BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


class Monitor:
    """CPU time of the load generator, the gunicorn workers, the benchmark database's backends and the machine."""

    def __init__(self, *, server: Server, database: str) -> None:
        self.server = server
        self.database = database

    def _backends(self) -> list[psutil.Process]:
        marker = f" {self.database} "
        found = []
        for process in psutil.process_iter(["cmdline"]):
            title = " ".join(process.info["cmdline"] or [])
            if title.startswith("postgres:") and marker in title:
                found.append(process)
        return found

    def snapshot(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        workers = {}
        for process in self.server.worker_processes():
            try:
                times = process.cpu_times()
                workers[process.pid] = times.user + times.system
            except psutil.Error:
                continue
        backends = {}
        for process in self._backends():
            try:
                times = process.cpu_times()
                backends[process.pid] = times.user + times.system
            except psutil.Error:
                continue
        machine = psutil.cpu_times()
        connections = []
        for process in self.server.worker_processes():
            try:
                connections.append(
                    sum(
                        1
                        for conn in process.net_connections("tcp")
                        if conn.status == psutil.CONN_ESTABLISHED and conn.laddr and conn.laddr.port == self.server.port
                    )
                )
            except psutil.Error:
                continue
        return {
            "client_connections_per_worker": sorted(connections, reverse=True),
            "at": time.perf_counter(),
            "loadgen": usage.ru_utime + usage.ru_stime,
            "workers": workers,
            "backends": backends,
            "machine_busy": sum(getattr(machine, name, 0.0) for name in BUSY_FIELDS),
            "load_1m": os.getloadavg()[0],
        }

    @staticmethod
    def difference(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
        seconds = second["at"] - first["at"]

        def delta(key: str) -> float:
            return sum(second[key].get(pid, 0.0) - first[key].get(pid, 0.0) for pid in second[key])

        loadgen = second["loadgen"] - first["loadgen"]
        workers = delta("workers")
        backends = delta("backends")
        machine = second["machine_busy"] - first["machine_busy"]
        return {
            "window_s": round(seconds, 2),
            "client_connections_per_worker": second["client_connections_per_worker"],
            "loadgen_cpu_s": round(loadgen, 2),
            "gunicorn_cpu_s": round(workers, 2),
            "postgres_cpu_s": round(backends, 2),
            "machine_cpu_s": round(machine, 2),
            "other_cpu_s": round(machine - loadgen - workers - backends, 2),
            "loadgen_cores": round(loadgen / seconds, 3),
            "gunicorn_cores": round(workers / seconds, 3),
            "postgres_cores": round(backends / seconds, 3),
            "machine_cores": round(machine / seconds, 3),
        }


def measure_window(monitor: Monitor, start_at: float, end_at: float, out: dict[str, Any]) -> None:
    """Sample CPU at the start and the end of the timed window (runs in its own thread)."""
    time.sleep(max(start_at - time.perf_counter(), 0.0))
    first = monitor.snapshot()
    time.sleep(max(end_at - time.perf_counter(), 0.0))
    out.update(Monitor.difference(first, monitor.snapshot()))


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)), 1)
    return round(ordered[rank - 1] * 1000, 2)


def latency_summary(samples: list[Sample]) -> dict[str, Any]:
    seconds = [sample.seconds for sample in samples]
    return {
        "count": len(seconds),
        "p50_ms": percentile(seconds, 0.50),
        "p95_ms": percentile(seconds, 0.95),
        "p99_ms": percentile(seconds, 0.99),
        "max_ms": round(max(seconds) * 1000, 2) if seconds else None,
        "mean_ms": round(statistics.fmean(seconds) * 1000, 2) if seconds else None,
        "non_2xx": sum(1 for sample in samples if sample.status >= 300),
    }


def run_sequential(*, port: int, token: dict[str, Any], warmup: int, pairs: int, monitor: Monitor) -> dict[str, Any]:
    client = Client(port=port, token=token["token"], user_id=token["user_id"], seed=SEED)
    for _ in range(warmup):
        item = client.claim()
        if item is not None:
            client.submit(item)
    window_from = len(client.log.samples)
    first = monitor.snapshot()
    started = time.perf_counter()
    for _ in range(pairs):
        item = client.claim()
        if item is None:
            if client.log.exhausted:
                break
            continue
        client.submit(item)
    seconds = time.perf_counter() - started
    cpu = Monitor.difference(first, monitor.snapshot())
    client.close()
    timed = client.log.samples[window_from:]
    created_in_window = sum(1 for entry in client.log.created if entry[3] >= started)
    return {
        "pairs": pairs,
        "warmup_pairs": warmup,
        "seconds": round(seconds, 2),
        "labels_per_s": round(created_in_window / seconds, 1),
        "claim": latency_summary([sample for sample in timed if sample.kind == "claim"]),
        "submit": latency_summary([sample for sample in timed if sample.kind == "submit"]),
        "cpu": cpu,
        "logs": [client.log],
    }


def run_loop(
    *, port: int, tokens: list[dict[str, Any]], think: float, warmup_s: float, measure_s: float, monitor: Monitor
) -> dict[str, Any]:
    """Run one client thread per token for warm-up + window; time requests that start inside the window."""
    clients = [
        Client(port=port, token=token["token"], user_id=token["user_id"], seed=SEED + number)
        for number, token in enumerate(tokens)
    ]
    origin = time.perf_counter()
    window_start = origin + warmup_s
    window_end = window_start + measure_s
    cpu: dict[str, Any] = {}
    watcher = threading.Thread(target=measure_window, args=(monitor, window_start, window_end, cpu), daemon=True)
    watcher.start()
    threads = []
    for number, client in enumerate(clients):
        # With think time, spread the first claims over one think period so the clients do not move in step.
        delay = think * number / len(clients) if think else 0.0
        thread = threading.Thread(
            target=annotate_until,
            args=(client,),
            kwargs={"stop_at": window_end, "think": think, "start_delay": delay},
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    watcher.join()
    for client in clients:
        client.close()
    samples = [sample for client in clients for sample in client.log.samples]
    timed = [sample for sample in samples if window_start <= sample.started < window_end]
    labels = sum(1 for client in clients for entry in client.log.created if window_start <= entry[3] < window_end)
    return {
        "clients": len(clients),
        "think_s": think,
        "warmup_s": warmup_s,
        "window_s": measure_s,
        "labels_in_window": labels,
        "labels_per_s": round(labels / measure_s, 1),
        "claim": latency_summary([sample for sample in timed if sample.kind == "claim"]),
        "submit": latency_summary([sample for sample in timed if sample.kind == "submit"]),
        "cpu": cpu,
        "logs": [client.log for client in clients],
    }


# ---------------------------------------------------------------------------------------------
# Correctness, checked in the database after every run
# ---------------------------------------------------------------------------------------------


def max_annotation_id(base_pg: str, database: str) -> int:
    with psycopg.connect(helpers.server_url(base_pg, database), autocommit=True) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM labeling_annotation").fetchone()[0]


def verify(*, base_pg: str, database: str, logs: list[ClientLog], after_id: int) -> dict[str, Any]:
    """Count what must be zero: double labels, double leases, unmatched 201s; and what the run created."""
    created = [(log.user_id, *entry[:3]) for log in logs for entry in log.created]
    handed: dict[int, set[int]] = {}
    lease_owners: dict[str, set[int]] = {}
    for log in logs:
        for example_id, lease_id, _ in log.claims:
            handed.setdefault(example_id, set()).add(log.user_id)
            lease_owners.setdefault(lease_id, set()).add(log.user_id)
    with psycopg.connect(helpers.server_url(base_pg, database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, author_id, example_id, lease_id::text FROM labeling_annotation WHERE id > %s", (after_id,)
        ).fetchall()
        double_labeled = conn.execute(
            """SELECT count(*) FROM (
                 SELECT example_id FROM labeling_annotation
                  WHERE kind = 'human' AND status IN ('pending', 'submitted', 'accepted')
                  GROUP BY example_id HAVING count(*) > 1) AS doubled"""
        ).fetchone()[0]
        lease_reused = conn.execute(
            "SELECT count(lease_id) - count(DISTINCT lease_id) FROM labeling_annotation"
        ).fetchone()[0]
        items_two_owners = conn.execute(
            """SELECT count(*) FROM (
                 SELECT example_id FROM labeling_queueitem WHERE lease_owner_id IS NOT NULL AND reason_code <> 'gold'
                  GROUP BY example_id HAVING count(DISTINCT lease_owner_id) > 1) AS shared"""
        ).fetchone()[0]
        done_without_label = conn.execute(
            """SELECT count(*) FROM labeling_queueitem q WHERE q.state = 'done' AND NOT EXISTS (
                 SELECT 1 FROM labeling_annotation a
                  WHERE a.example_id = q.example_id AND a.author_id = q.lease_owner_id)"""
        ).fetchone()[0]
        leased_left = conn.execute("SELECT count(*) FROM labeling_queueitem WHERE state = 'leased'").fetchone()[0]
    in_db = {row[0]: row[1:] for row in rows}
    matched = sum(
        1
        for user_id, annotation_id, example_id, lease_id in created
        if in_db.get(annotation_id) == (user_id, example_id, str(lease_id))
    )
    return {
        "responses_201": len(created),
        "annotations_created": len(rows),
        "responses_201_matched": matched,
        "responses_201_unmatched": len(created) - matched,
        "annotations_without_201": len(set(in_db) - {entry[1] for entry in created}),
        "responses_200_repeat": sum(log.repeats for log in logs),
        "examples_with_two_human_labels": double_labeled,
        "examples_handed_to_two_users": sum(1 for users in handed.values() if len(users) > 1),
        "leases_handed_to_two_users": sum(1 for users in lease_owners.values() if len(users) > 1),
        "queue_items_with_two_owners": items_two_owners,
        "annotation_lease_ids_reused": lease_reused,
        "done_items_without_label": done_without_label,
        "leases_left_open": leased_left,
        "claims_resumed": sum(1 for log in logs for claim in log.claims if claim[2]),
        "errors": sum(len(log.errors) for log in logs),
        "error_examples": [error for log in logs for error in log.errors][:5],
        "reconnects": sum(log.reconnects for log in logs),
        "clients_found_queue_empty": sum(1 for log in logs if log.exhausted),
    }


MUST_BE_ZERO = (
    "responses_201_unmatched",
    "annotations_without_201",
    "examples_with_two_human_labels",
    "examples_handed_to_two_users",
    "leases_handed_to_two_users",
    "queue_items_with_two_owners",
    "annotation_lease_ids_reused",
    "done_items_without_label",
    "leases_left_open",
    "errors",
)


def explain_claim(*, base_pg: str, database: str, sql: str, project_id: int, user_id: int) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) the claim statement as the app sends it, rolled back; best of 5."""
    params = {
        "user": user_id,
        "lease": uuid.UUID("00000000-0000-4000-8000-000000000000"),
        "now": dt.datetime.now(dt.UTC),
        "expires": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10),
        "project": project_id,
    }
    plans = []
    with psycopg.connect(helpers.server_url(base_pg, database)) as conn:
        for _ in range(5):
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
            conn.rollback()
            plans.append([row[0] for row in rows])
    times = [float(plan[-1].split(":")[1].split()[0]) for plan in plans]
    best = plans[times.index(min(times))]
    with psycopg.connect(helpers.server_url(base_pg, database), autocommit=True) as conn:
        labels = conn.execute("SELECT count(*) FROM labeling_annotation WHERE author_id = %s", (user_id,)).fetchone()[0]
    return {
        "user_labels": labels,
        "execution_ms_runs": times,
        "reads_user_history": any("Materialize" in line for line in best),
        "plan": best,
    }


# ---------------------------------------------------------------------------------------------
# Summaries and the report
# ---------------------------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return round(statistics.median(values), 2) if values else None


def summarize(size: int, workload: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"size": size, "workload": workload, "runs": len(runs)}
    for kind in ("claim", "submit"):
        for stat in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            summary[f"{kind}_{stat}"] = median_of(runs, kind, stat)
            summary[f"{kind}_{stat}_runs"] = [run[kind][stat] for run in runs]
    summary["labels_per_s"] = median_of(runs, "labels_per_s")
    summary["labels_per_s_runs"] = [run["labels_per_s"] for run in runs]
    for key in ("loadgen_cores", "gunicorn_cores", "postgres_cores", "machine_cores"):
        summary[key] = median_of(runs, "cpu", key)
    summary["load_1m_before"] = [run["load_1m_before"] for run in runs]
    summary["others_busy_cores_before"] = [run["others_busy_cores_before"] for run in runs]
    summary["correctness_all_zero"] = all(run["correctness"][key] == 0 for run in runs for key in MUST_BE_ZERO)
    return summary


def targets(summary: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """Compare the medians with the issue's targets; the latency targets are judged on the largest size."""
    by_key = {(row["size"], row["workload"]): row for row in summary}
    largest, smallest = max(sizes), min(sizes)
    checks = []

    def check(name: str, value: float | None, limit: float, *, at_least: bool = False, within: bool = False) -> None:
        if value is None:
            met = False
        elif within:
            met = 1 / limit <= value <= limit
        else:
            met = value >= limit if at_least else value <= limit
        checks.append({"target": name, "value": value, "limit": limit, "met": met})

    sequential = by_key.get((largest, "sequential"))
    if sequential:
        check(f"sequential claim p50 ≤ 5 ms ({largest:,})", sequential["claim_p50_ms"], 5.0)
        check(f"sequential claim p99 ≤ 15 ms ({largest:,})", sequential["claim_p99_ms"], 15.0)
    for size in sizes:
        thinking = by_key.get((size, "thinking"))
        if thinking:
            check(f"100 thinking annotators: claim p99 ≤ 25 ms ({size:,})", thinking["claim_p99_ms"], 25.0)
        saturation = by_key.get((size, "saturation"))
        if saturation:
            check(f"50 clients, no think: ≥ 150 labels/s ({size:,})", saturation["labels_per_s"], 150.0, at_least=True)
    if largest != smallest:
        for workload, kind, stat in (
            ("sequential", "claim", "p50_ms"),
            ("sequential", "claim", "p99_ms"),
            ("sequential", "submit", "p50_ms"),
            ("sequential", "submit", "p99_ms"),
            ("thinking", "claim", "p99_ms"),
            ("thinking", "submit", "p99_ms"),
            ("saturation", "claim", "p50_ms"),
            ("saturation", "claim", "p99_ms"),
        ):
            big, small = by_key.get((largest, workload)), by_key.get((smallest, workload))
            if not big or not small or not small[f"{kind}_{stat}"]:
                continue
            ratio = round(big[f"{kind}_{stat}"] / small[f"{kind}_{stat}"], 2)
            check(
                f"{workload} {kind} {stat.removesuffix('_ms')}: {largest:,} / {smallest:,} within 1.5×",
                ratio,
                TARGETS["scaling_ratio"],
                within=True,
            )
    return checks


WORKLOAD_NAMES = {
    "sequential": "sequential, 1 client",
    "thinking": f"{CLIENTS_THINKING} annotators, {THINK_SECONDS:.0f} s think",
    "saturation": f"{CLIENTS_SATURATION} clients, no think",
}


def _pg_size(setting: str) -> str:
    """Turn a pg_settings value like '16384 8kB' into '128 MB'."""
    number, _, unit = setting.partition(" ")
    if unit == "8kB" and number.isdigit():
        return f"{int(number) * 8 // 1024} MB"
    return setting


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    config = report["server"]
    loads = [load for row in report["summary"] for load in row["load_1m_before"]]
    others = [cores for row in report["summary"] for cores in row["others_busy_cores_before"]]
    settings = report["postgresql_settings"]
    server_args = f"--worker-class {config['worker_class']} --workers {config['workers']}"
    if config["worker_class"] == "gthread":
        server_args += f" --threads {config['threads']} --keep-alive {config['keep_alive_s']}"
    sizes = report["sizes"]
    largest = max(sizes)
    target_for = {
        ("sequential", "claim"): f"p50 ≤ 5, p99 ≤ 15 ({largest:,})",
        ("thinking", "claim"): "p99 ≤ 25",
        ("saturation", "claim"): "≥ 150 labels/s",
    }
    met_for: dict[tuple[int, str, str], list[bool]] = {}
    for check in report["targets"]:
        name = check["target"]
        for size in sizes:
            if name.endswith(f"({size:,})"):
                workload = (
                    "sequential"
                    if name.startswith("sequential")
                    else ("thinking" if "thinking" in name else "saturation")
                )
                met_for.setdefault((size, workload, "claim"), []).append(check["met"])
    phases = report["phases"]
    lines = [
        f"{SECTION_HEADING} (`bench/queue.py`)",
        "",
        "Annotators over HTTP against the app under gunicorn on PostgreSQL, on the same machine: each client is "
        "its own user with its own token and one keep-alive connection (a Python thread with `http.client`), "
        "looping claim (`POST /api/v1/projects/{slug}/queue/claim`) → submit "
        "(`POST /api/v1/examples/{id}/annotations` with the lease). Latency is `time.perf_counter` around each "
        "request, in ms (the load generator switches threads every 0.5 ms, so a response is not left waiting for "
        "its thread's turn). Workloads: sequential = 1 client, "
        f"{phases['sequential']['warmup']} warm-up pairs then {phases['sequential']['pairs']:,} timed pairs; "
        f"thinking = {CLIENTS_THINKING} clients, claim → think {THINK_SECONDS:.0f} s → submit, "
        f"{phases['thinking']['warmup_s']:.0f} s warm-up then {phases['thinking']['measure_s']:.0f} s; "
        f"saturation = {CLIENTS_SATURATION} clients with no think time, "
        f"{phases['saturation']['warmup_s']:.0f} s warm-up then {phases['saturation']['measure_s']:.0f} s. "
        f"Each workload ran {report['repeat']} time{'s' if report['repeat'] != 1 else ''} per size (interleaved); "
        "the table shows medians of the per-run percentiles (per-run numbers in `bench/results/queue.json`). "
        "labels/s = 201 responses completed in the timed window / its length.",
        "",
        f"Machine: **{machine['cores']} cores** ({machine['cpu'] or 'unknown CPU'}), {machine['ram_gib']} GiB RAM, "
        f"Python {machine['python']}, PostgreSQL {machine['postgresql']}, {machine['os']}; commit "
        f"`{report['commit'][:12]}`; measured {machine['date']}. The machine was shared with other work: the "
        f"1-minute load average before the runs was {min(loads):.1f}–{max(loads):.1f} (it lags, so it also "
        "counts this benchmark's previous run), and other work kept "
        f"{min(others):.2f}–{max(others):.2f} cores busy in the 2 s before each run. PostgreSQL as installed "
        f"here: shared_buffers {_pg_size(settings.get('shared_buffers', ''))}, synchronous_commit "
        f"{settings.get('synchronous_commit')}, autovacuum **{settings.get('autovacuum')}** (so statistics "
        "and dead rows stay as they were after the VACUUM ANALYZE that follows setup).",
        "",
        f"Server: `gunicorn flywheel.wsgi:application {server_args}`, `DB_CONN_MAX_AGE=600`, `DJANGO_DEBUG` off, "
        "prepared statements on (the default), `flywheel/wsgi.py` as shipped (1 ms thread switch interval, the "
        "loaded app frozen out of the garbage collector's full collections), project settings at their defaults (overlap 1, 10-minute leases, 5% gold checks with no gold examples). "
        + SERVER_RATIONALE
        + (" The sweep below repeats the comparison in this run." if report.get("sweep") else ""),
        "",
        "| workload | examples | runs | claim p50 | claim p95 | claim p99 | submit p50 | submit p95 | submit p99 "
        "| labels/s | target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in report["summary"]:
        workload = row["workload"]
        target = target_for.get((workload, "claim"), "")
        if workload == "sequential" and row["size"] != largest:
            target = "(judged on the largest size)"
        met = met_for.get((row["size"], workload, "claim"))
        lines.append(
            f"| {WORKLOAD_NAMES[workload]} | {row['size']:,} | {row['runs']} | {_ms(row['claim_p50_ms'])} | "
            f"{_ms(row['claim_p95_ms'])} | {_ms(row['claim_p99_ms'])} | {_ms(row['submit_p50_ms'])} | "
            f"{_ms(row['submit_p95_ms'])} | {_ms(row['submit_p99_ms'])} | {row['labels_per_s']:,.1f} | {target} | "
            f"{'–' if met is None else ('met' if all(met) else '**not met**')} |"
        )
    lines += ["", "Targets (medians):", ""]
    for check in report["targets"]:
        unit = "×" if "1.5×" in check["target"] else ("labels/s" if "labels/s" in check["target"] else "ms")
        lines.append(f"- {check['target']}: {check['value']} {unit} — {'met' if check['met'] else '**not met**'}")
    lines += [
        "",
        "CPU over the timed windows (medians, in cores of the 2): load generator / gunicorn workers / PostgreSQL "
        "backends of the benchmark database / whole machine.",
        "",
        "| workload | examples | load generator | gunicorn | PostgreSQL | machine |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {WORKLOAD_NAMES[row['workload']]} | {row['size']:,} | {row['loadgen_cores']} | {row['gunicorn_cores']} "
            f"| {row['postgres_cores']} | {row['machine_cores']} |"
        )
    totals: dict[str, int] = {}
    for run in report["runs"]:
        for key, value in run["correctness"].items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    lines += [
        "",
        f"Correctness, checked in the database after each of the {len(report['runs'])} runs (sums over all runs): "
        f"{totals.get('responses_201', 0):,} responses 201, {totals.get('responses_201_matched', 0):,} of them "
        "matched by exactly one annotation (same id, author, example and lease), "
        f"{totals.get('annotations_without_201', 0)} annotations without a 201, "
        f"{totals.get('examples_with_two_human_labels', 0)} examples with two human labels (overlap is 1), "
        f"{totals.get('examples_handed_to_two_users', 0)} examples and "
        f"{totals.get('leases_handed_to_two_users', 0)} leases handed to two users, "
        f"{totals.get('annotation_lease_ids_reused', 0)} lease ids answered twice, "
        f"{totals.get('leases_left_open', 0)} leases left open, {totals.get('errors', 0)} error responses, "
        f"{totals.get('reconnects', 0)} reconnects.",
        "",
    ]
    setup_rows = [
        f"{int(size):,} examples: queue_fill {info['queue_fill_seconds']:.1f} s "
        f"({info['queued']:,} queued; examples inserted in {info['examples_seconds']:.1f} s), "
        f"examples table {info['table_sizes_after_setup']['labeling_example']['total_mb']:,.0f} MB, "
        f"queue table {info['table_sizes_after_setup']['labeling_queueitem']['total_mb']:,.0f} MB"
        for size, info in report["setup"].items()
    ]
    lines += ["Setup: " + "; ".join(setup_rows) + ".", ""]
    explain_rows = [
        f"{int(size):,} examples: {min(info['execution_ms_runs']):.2f} ms for a user with {info['user_labels']:,} "
        f"labels{' (the plan reads all of their queue rows and labels: anti-join over a Materialize)' if info['reads_user_history'] else ''}"
        for size, info in report["explain_claim"].items()
    ]
    lines += [
        "The claim statement under `EXPLAIN (ANALYZE, BUFFERS)` after the runs, as the sequential client "
        "(best of 5, rolled back; plans in the JSON): " + "; ".join(explain_rows) + ".",
        "",
    ]
    if report.get("sweep"):
        sweep = report["sweep"]
        lines += [
            f"Server sweep, run first on a separate database of {sweep['size']:,} examples: each configuration "
            "once through shorter "
            f"workloads ({sweep['phases']['sequential']['pairs']} sequential pairs, "
            f"{sweep['phases']['thinking']['measure_s']:.0f} s thinking, "
            f"{sweep['phases']['saturation']['measure_s']:.0f} s saturation), so single noisy runs. "
            "Connections per worker: the clients' keep-alive connections each worker held at the end of the "
            "saturation window (a connection stays with the worker that accepted it).",
            "",
            "| server | sequential claim p50 | thinking claim p99 | saturation labels/s | saturation claim p50 "
            "| saturation claim p99 | connections per worker |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for entry in sweep["runs"]:
            saturation = entry["saturation"]
            connections = saturation["cpu"].get("client_connections_per_worker") or []
            lines.append(
                f"| {entry['worker_class']} {entry['workers']} × {entry['threads']} | "
                f"{_ms(entry['sequential']['claim']['p50_ms'])} | {_ms(entry['thinking']['claim']['p99_ms'])} | "
                f"{saturation['labels_per_s']:,.1f} | {_ms(saturation['claim']['p50_ms'])} | "
                f"{_ms(saturation['claim']['p99_ms'])} | "
                f"{' / '.join(str(count) for count in connections) if any(connections) else 'none kept'} |"
            )
        lines.append("")
    lines += [
        "For comparison, numbers measured by others and given in the issue (not by this script): " + LABEL_STUDIO,
        "",
    ]
    return "\n".join(lines)


def write_markdown(section: str) -> None:
    """Replace only the queue section of bench/RESULTS.md, keeping the other benchmarks' sections."""
    spec = importlib.util.spec_from_file_location("results_md", BENCH / "results_md.py")
    results_md = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_md)
    results_md.write_section(SECTION_HEADING, section, RESULTS_MD)


# ---------------------------------------------------------------------------------------------


def strip_logs(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "logs"}


def one_run(
    *,
    workload: str,
    server: Server,
    setup: dict[str, Any],
    phases: dict[str, dict[str, Any]],
    base_pg: str,
    database: str,
    quiet_cores: float,
    max_wait_s: float,
) -> dict[str, Any]:
    monitor = Monitor(server=server, database=database)
    before = max_annotation_id(base_pg, database)
    machine_before = wait_for_quiet(quiet_cores, max_wait_s=max_wait_s)
    if workload == "sequential":
        result = run_sequential(
            port=server.port,
            token=setup["tokens"]["sequential"][0],
            warmup=phases["sequential"]["warmup"],
            pairs=phases["sequential"]["pairs"],
            monitor=monitor,
        )
    else:
        result = run_loop(
            port=server.port,
            tokens=setup["tokens"][workload],
            think=THINK_SECONDS if workload == "thinking" else 0.0,
            warmup_s=phases[workload]["warmup_s"],
            measure_s=phases[workload]["measure_s"],
            monitor=monitor,
        )
    result.update(machine_before)
    result["correctness"] = verify(base_pg=base_pg, database=database, logs=result["logs"], after_id=before)
    return strip_logs(result)


def server_env(base_env: dict[str, str], base_pg: str, database: str) -> dict[str, str]:
    return {
        **base_env,
        "DATABASE_URL": helpers.server_url(base_pg, database),
        "DB_CONN_MAX_AGE": "600",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FLYWHEEL_LOG_LEVEL": "WARNING",
    }


def wait_for_load(limit: float, *, max_wait_s: float = 300.0) -> float:
    """Wait (up to max_wait_s) for the 1-minute load average to drop below `limit`; return it."""
    deadline = time.monotonic() + max_wait_s
    load = os.getloadavg()[0]
    while load > limit and time.monotonic() < deadline:
        print(f"  load average {load:.2f} > {limit}: waiting …", flush=True)
        time.sleep(20)
        load = os.getloadavg()[0]
    return load


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy over a short pause while this benchmark is idle: other work sharing the machine."""

    first = psutil.cpu_times()
    time.sleep(seconds)
    second = psutil.cpu_times()
    return round(sum(getattr(second, name, 0.0) - getattr(first, name, 0.0) for name in BUSY_FIELDS) / seconds, 2)


def wait_for_quiet(limit_cores: float, *, max_wait_s: float) -> dict[str, float]:
    """Before a run, wait (up to max_wait_s) until other work uses less than `limit_cores`; return what was seen.

    The load average is recorded too, but it lags: it still counts this benchmark's previous run.
    """
    deadline = time.monotonic() + max_wait_s
    others = busy_cores()
    while others > limit_cores and time.monotonic() < deadline:
        print(f"  other work busy on {others:.2f} cores: waiting …", flush=True)
        time.sleep(10)
        others = busy_cores()
    return {"load_1m_before": round(os.getloadavg()[0], 2), "others_busy_cores_before": others}


def run_sweep(
    *, env: dict[str, str], setup: dict[str, Any], size: int, database: str, args: Any, data_dir: Path
) -> dict[str, Any]:
    """Run each server configuration briefly through the three workloads, once each (noisy, for choosing)."""
    phases = {
        "sequential": {"warmup": 50, "pairs": 300 if not args.quick else 50},
        "thinking": {"warmup_s": 5.0 if not args.quick else 1.0, "measure_s": 20.0 if not args.quick else 4.0},
        "saturation": {"warmup_s": 5.0 if not args.quick else 1.0, "measure_s": 15.0 if not args.quick else 4.0},
    }
    sweep: dict[str, Any] = {"size": size, "phases": phases, "runs": []}
    for worker_class, workers, threads in SWEEP_CONFIGS:
        server = Server(
            env=env, workers=workers, threads=threads, log=data_dir / "gunicorn-queue.log", worker_class=worker_class
        )
        entry: dict[str, Any] = {"worker_class": worker_class, "workers": workers, "threads": threads}
        try:
            for workload in ("sequential", "thinking", "saturation"):
                result = one_run(
                    workload=workload,
                    server=server,
                    setup=setup,
                    phases=phases,
                    base_pg=args.pg,
                    database=database,
                    quiet_cores=args.quiet_cores,
                    max_wait_s=30.0 if not args.quick else 0.0,
                )
                entry[workload] = result
        finally:
            server.stop()
        sweep["runs"].append(entry)
        print(
            f"  sweep {worker_class} {workers} × {threads}: sequential claim p50 "
            f"{entry['sequential']['claim']['p50_ms']} ms; thinking claim p99 {entry['thinking']['claim']['p99_ms']} ms; "
            f"saturation {entry['saturation']['labels_per_s']:.1f} labels/s, claim p50/p99 "
            f"{entry['saturation']['claim']['p50_ms']}/{entry['saturation']['claim']['p99_ms']} ms, connections per "
            f"worker {entry['saturation']['cpu'].get('client_connections_per_worker')}",
            flush=True,
        )
    return sweep


def main() -> None:
    # The load generator is one process with up to 100 client threads: a thread whose response has arrived
    # must get the interpreter lock back, by default after up to 5 ms. Switch sooner so that wait does not
    # count as the server's latency (LOADGEN_SWITCH_INTERVAL_MS, 0.5 by default).
    sys.setswitchinterval(float(os.environ.get("LOADGEN_SWITCH_INTERVAL_MS") or 0.5) / 1000)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="Example counts, comma-separated (default 100000,1000000).")
    parser.add_argument("--repeat", type=int, default=None, help="Runs per workload and size (default 3).")
    parser.add_argument("--quick", action="store_true", help="Small sizes and short phases, to check the script.")
    parser.add_argument("--worker-class", default=DEFAULT_WORKER_CLASS, choices=("gthread", "sync"))
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn worker processes.")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="Threads per gunicorn worker.")
    parser.add_argument("--sweep", action="store_true", help="First compare a few gunicorn configurations.")
    parser.add_argument("--workloads", default="sequential,thinking,saturation", help="Which workloads to run.")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL without a database name.")
    parser.add_argument("--keep", action="store_true", help="Keep the benchmark databases.")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="Wait for a 1-minute load below this first.")
    parser.add_argument(
        "--quiet-cores", type=float, default=0.5, help="Before each run, wait while other work uses more cores."
    )
    parser.add_argument("--child-setup", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_setup is not None:
        child_setup(args.child_setup)
        return

    sizes_text = args.sizes or ("5000,20000" if args.quick else "100000,1000000")
    sizes = [int(part.replace("_", "")) for part in sizes_text.split(",") if part.strip()]
    repeat = args.repeat or (1 if args.quick else 3)
    workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    if args.quick:
        phases = {
            "sequential": {"warmup": 20, "pairs": 100},
            "thinking": {"warmup_s": 3.0, "measure_s": 6.0},
            "saturation": {"warmup_s": 2.0, "measure_s": 5.0},
        }
    else:
        phases = {
            "sequential": {"warmup": 100, "pairs": 1000},
            "thinking": {"warmup_s": 10.0, "measure_s": 60.0},
            "saturation": {"warmup_s": 5.0, "measure_s": 30.0},
        }
    max_wait_s = 0.0 if args.quick else 60.0

    data_dir = Path(os.environ.get("FLYWHEEL_DATA_DIR") or REPO / "var" / "bench").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    base_env = {
        **os.environ,
        "FLYWHEEL_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
        "DJANGO_SETTINGS_MODULE": "flywheel.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    base_env.pop("DJANGO_DEBUG", None)
    machine = helpers.machine_info(args.pg)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"machine: {machine['cores']} cores, {machine['ram_gib']} GiB, PostgreSQL {machine['postgresql']}; "
        f"gunicorn {args.worker_class} {args.workers} × {args.threads}",
        flush=True,
    )
    load_at_start = wait_for_load(args.quiet_load, max_wait_s=0 if args.quick else 300)

    started_all = time.perf_counter()
    report_setup: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    explains: dict[str, Any] = {}
    queue_stats: dict[str, Any] = {}
    sweep: dict[str, Any] | None = None
    databases: list[str] = []
    server_config: dict[str, Any] = {}
    for size in sizes:
        database = f"flywheel_bench_queue_{size}"
        databases.append(database)
        env = server_env(base_env, args.pg, database)
        print(f"{size:,} examples: fresh database {database}, migrate, examples, users, queue_fill …", flush=True)
        setup = setup_database(size=size, env=env, base_pg=args.pg, database=database)
        claim_sql = setup.pop("claim_sql")
        report_setup[str(size)] = {key: value for key, value in setup.items() if key != "tokens"}
        print(
            f"  examples {setup['examples_seconds']:.1f} s, queue_fill {setup['queue_fill_seconds']:.1f} s "
            f"({setup['queued']:,} queued), vacuum analyze {setup['vacuum_analyze_seconds']:.1f} s",
            flush=True,
        )
        if args.sweep and sweep is None:
            # A database of its own, so the sweep's labels do not add to the history of the timed runs' users.
            sweep_database = f"flywheel_bench_queue_sweep_{size}"
            sweep_env = server_env(base_env, args.pg, sweep_database)
            print(f"  server sweep on its own database {sweep_database} …", flush=True)
            sweep_setup = setup_database(size=size, env=sweep_env, base_pg=args.pg, database=sweep_database)
            sweep = run_sweep(
                env=sweep_env, setup=sweep_setup, size=size, database=sweep_database, args=args, data_dir=data_dir
            )
            if not args.keep:
                helpers.pg_drop(args.pg, sweep_database)

        server = Server(
            env=env,
            workers=args.workers,
            threads=args.threads,
            log=data_dir / "gunicorn-queue.log",
            worker_class=args.worker_class,
        )
        server_config = server.config()
        size_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in workloads}
        try:
            for repetition in range(1, repeat + 1):
                for workload in workloads:
                    result = one_run(
                        workload=workload,
                        server=server,
                        setup=setup,
                        phases=phases,
                        base_pg=args.pg,
                        database=database,
                        quiet_cores=args.quiet_cores,
                        max_wait_s=max_wait_s,
                    )
                    result.update(size=size, workload=workload, run=repetition)
                    size_runs[workload].append(result)
                    runs.append(result)
                    bad = [key for key in MUST_BE_ZERO if result["correctness"][key]]
                    print(
                        f"  {workload:<10} run {repetition}: claim p50/p95/p99 {result['claim']['p50_ms']}/"
                        f"{result['claim']['p95_ms']}/{result['claim']['p99_ms']} ms, submit p50/p99 "
                        f"{result['submit']['p50_ms']}/{result['submit']['p99_ms']} ms, "
                        f"{result['labels_per_s']:.1f} labels/s; before: load {result['load_1m_before']:.2f}, "
                        f"others {result['others_busy_cores_before']:.2f} cores; loadgen "
                        f"{result['cpu'].get('loadgen_cores')} cores; "
                        f"{'correct' if not bad else 'NOT CORRECT: ' + ', '.join(bad)}",
                        flush=True,
                    )
        finally:
            server.stop()
        for workload in workloads:
            summary.append(summarize(size, workload, size_runs[workload]))
        queue_stats[str(size)] = queue_table_stats(args.pg, database)
        explains[str(size)] = explain_claim(
            base_pg=args.pg,
            database=database,
            sql=claim_sql,
            project_id=setup["project_id"],
            user_id=setup["tokens"]["sequential"][0]["user_id"],
        )
        report_setup[str(size)]["table_sizes_after_runs"] = table_sizes(args.pg, database)
        print(f"  claim EXPLAIN ANALYZE (sequential user): {explains[str(size)]['execution_ms_runs']} ms", flush=True)
        if not args.keep:
            helpers.pg_drop(args.pg, database)

    report = {
        "benchmark": "queue",
        "machine": machine,
        "postgresql_settings": pg_settings(args.pg),
        "commit": commit,
        "quick": args.quick,
        "sizes": sizes,
        "repeat": repeat,
        "phases": phases,
        "server": server_config,
        "load_1m_at_start": round(load_at_start, 2),
        "setup": report_setup,
        "targets": [],
        "summary": summary,
        "runs": runs,
        "sweep": sweep,
        "queue_table_after_runs": queue_stats,
        "explain_claim": explains,
        "label_studio_reference_from_issue": LABEL_STUDIO,
        "total_seconds": round(time.perf_counter() - started_all, 1),
        "databases_kept": databases if args.keep else [],
    }
    report["targets"] = targets(summary, sizes)
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_markdown(markdown(report))
    print(
        f"wrote {RESULTS_JSON.relative_to(REPO)} and {RESULTS_MD.relative_to(REPO)} in {report['total_seconds']:.0f} s"
    )
    for check in report["targets"]:
        print(f"  {'met    ' if check['met'] else 'NOT MET'} {check['target']}: {check['value']}")


if __name__ == "__main__":
    main()
