"""Benchmark the real import command: realistic CSVs of 100k and 1M rows into PostgreSQL.

Each run gets a freshly created and migrated database and a new project, then times
`manage.py import_examples` in a child process from start to exit; the child's peak RSS comes
from `os.wait4`, and a sampler records its RSS over time to show whether memory stays flat.
Also measured once: re-importing the 100k file into the same project (the deduplication path)
and the same 100k import on SQLite.

Run from the repository root:

    .venv/bin/python bench/import.py [--sizes 100000,1000000] [--repeat 3] [--data DIR] [--keep]

Writes bench/results/import.json and the import section of bench/RESULTS.md. The generated
CSVs live in bench/data/ (git-ignored) and are reused across runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
GENERATED = BENCH / "data"
RESULTS_JSON = BENCH / "results" / "import.json"
RESULTS_MD = BENCH / "RESULTS.md"
SECTION_HEADING = "## Import"
GENERATOR_VERSION = 1
SEED = 20150224
DUPLICATE_FRACTION = 0.03
PROJECT_SLUG = "bench"
LABEL_MAP = "1=spam,0=ham"
DEFAULT_PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EMOJI = ["😂", "🙏", "🔥", "👍", "❤️", "😡", "✈️", "😍", "🎶", "💯", "😭", "🙄"]
TOKENS = ["lol", "!!!", "plz", "thanks", "+1", "omg", "wow", "smh", "ugh", "nice", "again?", "#fail", "#love", "..."]
DOMAINS = ["bit.ly", "goo.gl", "t.co", "www.youtube.com/watch?v=", "example.com/promo/", "tinyurl.com"]
OFFSETS = ["-0800", "-0500", "-0700", "+0000", "+0100", "+0530"]
ISO_OFFSETS = ["+02:00", "-05:00", "+09:00", "-03:30", "+00:00"]


# ---------------------------------------------------------------------------------------------
# Data generation
# ---------------------------------------------------------------------------------------------


def load_sources(data_root: Path) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str, str]]]:
    """Return (text, label, author, timestamp) from the YouTube spam CSVs and the airline tweets."""
    youtube_dir = data_root / "youtube_spam"
    tweets_path = data_root / "twitter_airline_sentiment" / "Tweets.csv"
    youtube: list[tuple[str, str, str, str]] = []
    for path in sorted(youtube_dir.glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                label = "spam" if row["CLASS"].strip() == "1" else "ham"
                youtube.append((row["CONTENT"], label, row["AUTHOR"], row["DATE"]))
    tweets: list[tuple[str, str, str, str]] = []
    with open(tweets_path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            tweets.append((row["text"], "ham", row["name"], row["tweet_created"]))
    if not youtube or not tweets:
        raise SystemExit(f"No source rows under {data_root} (expected youtube_spam/*.csv and {tweets_path.name}).")
    return youtube, tweets


def perturb(text: str, rng: random.Random, authors: list[str], source: str) -> str:
    """Return a variant of a real text: dropped or swapped words, case, tokens, emoji, URLs, entities."""
    words = text.split(" ")
    if len(words) > 3 and rng.random() < 0.35:
        del words[rng.randrange(len(words))]
    if len(words) > 3 and rng.random() < 0.35:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    text = " ".join(words)
    roll = rng.random()
    if roll < 0.08:
        text = text.lower()
    elif roll < 0.12:
        text = text.upper()
    elif roll < 0.18:
        text = text.capitalize()
    if rng.random() < 0.5:
        text += " " + rng.choice(TOKENS)
    if rng.random() < 0.2:
        text += " " + "".join(rng.choices(EMOJI, k=rng.randint(1, 3)))
    if rng.random() < 0.1:
        slug = "".join(rng.choices("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=rng.randint(6, 11)))
        text += f" http://{rng.choice(DOMAINS)}{slug}"
    if rng.random() < 0.04:
        text = text.replace("&", "&amp;", 1) if "&" in text else text + " &quot;" + rng.choice(TOKENS) + "&quot;"
    # Something specific to this post (who it answers, a number, a tag) keeps most texts unique.
    roll = rng.random()
    if roll < 0.35:
        text = f"@{rng.choice(authors).replace(' ', '')[:15]}{rng.randint(1, 999)} {text}"
    elif roll < 0.6:
        text += f" #{rng.choice(TOKENS).strip('#!.?+')}{rng.randint(1, 99999)}" if rng.random() < 0.5 else ""
        text += f" ({rng.randint(2, 9999)})"
    elif roll < 0.85 and source == "twitter":
        text += f" flight {rng.randint(100, 9999)} at {rng.randint(1, 12)}:{rng.randint(0, 59):02d}"
    elif roll < 0.85:
        text += f" {rng.randint(0, 4)}:{rng.randint(0, 59):02d} {rng.choice(TOKENS)} {rng.randint(1, 999)}"
    else:
        text += f" x{rng.randint(2, 99999)}"
    return text


def timestamp_text(base: dt.datetime, rng: random.Random) -> str:
    """Format a time the way exports do: ISO of mixed precision, offsets, Twitter style, or nothing."""
    moment = base + dt.timedelta(seconds=rng.randint(-86_400 * 30, 86_400 * 30), microseconds=rng.randrange(10**6))
    roll = rng.random()
    if roll < 0.30:
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    if roll < 0.50:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if roll < 0.62:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if roll < 0.77:
        return moment.strftime("%Y-%m-%d %H:%M:%S ") + rng.choice(OFFSETS)
    if roll < 0.89:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + rng.choice(ISO_OFFSETS)
    if roll < 0.92:
        return moment.strftime("%Y-%m-%dT%H:%M")
    if roll < 0.95:
        return moment.strftime("%Y-%m-%d")
    return ""


def parse_source_time(value: str, rng: random.Random) -> dt.datetime:
    value = value.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S %z"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=None)
        except ValueError:
            continue
    return dt.datetime(2013, 1, 1) + dt.timedelta(seconds=rng.randrange(3 * 365 * 86_400))


def generate(size: int, data_root: Path, target: Path) -> dict[str, Any]:
    """Write `size` realistic rows to `target` (atomically) and return what was written."""
    from labeling.importing.rows import clean_text, content_hash

    youtube, tweets = load_sources(data_root)
    rng = random.Random(SEED + size)
    authors = [author for _, _, author, _ in youtube + tweets if author]
    base_times = {id(row): parse_source_time(row[3], rng) for row in youtube + tweets}
    recent: list[str] = []
    hashes: set[bytes] = set()
    labeled = 0
    partial = target.with_suffix(".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "author", "created_at", "text", "label", "source"])
        for number in range(1, size + 1):
            source_rows, source = (youtube, "youtube") if rng.random() < 0.5 else (tweets, "twitter")
            row = rng.choice(source_rows)
            if recent and rng.random() < DUPLICATE_FRACTION:
                text = rng.choice(recent)
            else:
                text = perturb(row[0], rng, authors, source)
                if len(recent) < 50_000:
                    recent.append(text)
                else:
                    recent[rng.randrange(50_000)] = text
            label = row[1] if rng.random() < 0.9 else ""
            labeled += bool(label)
            hashes.add(bytes.fromhex(content_hash(clean_text(text, unescape_html=False))[:16]))
            writer.writerow(
                [
                    f"{source[:2]}-{number:08d}",
                    row[2],
                    timestamp_text(base_times[id(row)], rng),
                    text,
                    label,
                    source,
                ]
            )
    partial.replace(target)
    info = {
        "rows": size,
        "unique_texts": len(hashes),
        "duplicate_rows": size - len(hashes),
        "labeled_rows": labeled,
        "bytes": target.stat().st_size,
        "generator_version": GENERATOR_VERSION,
        "seed": SEED + size,
    }
    target.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def dataset(size: int, data_root: Path) -> tuple[Path, dict[str, Any]]:
    path = GENERATED / f"import-{size}-v{GENERATOR_VERSION}.csv"
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists():
        return path, json.loads(sidecar.read_text())
    print(f"generating {size:,} rows into {path.relative_to(REPO)} …", flush=True)
    started = time.perf_counter()
    info = generate(size, data_root, path)
    print(
        f"  {info['bytes'] / 2**20:.0f} MiB, {info['duplicate_rows']:,} exact duplicates "
        f"({info['duplicate_rows'] / size:.1%}) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return path, info


# ---------------------------------------------------------------------------------------------
# Databases and the timed command
# ---------------------------------------------------------------------------------------------


def server_url(base: str, database: str) -> str:
    return f"{base.rstrip('/')}/{database}"


def pg_recreate(base: str, name: str) -> None:
    with psycopg.connect(server_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_drop(base: str, name: str) -> None:
    with psycopg.connect(server_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_checkpoint(base: str) -> None:
    """Flush dirty buffers left by earlier runs so each timed run starts from the same state."""
    with psycopg.connect(server_url(base, "postgres"), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def pg_version(base: str) -> str:
    with psycopg.connect(server_url(base, "postgres"), autocommit=True) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def prepare(env: dict[str, str]) -> None:
    """Migrate the (empty) database and create the project with its two labels."""
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(
        env,
        "shell",
        "-c",
        "from labeling import services; "
        f"services.project_create(slug={PROJECT_SLUG!r}, name='Import benchmark', "
        "labels=[{'name': 'spam'}, {'name': 'ham'}])",
    )


class Sampler(threading.Thread):
    """Sample the import's RSS, and the CPU time of the PostgreSQL backends serving `database`.

    The backend is found by its process title (which names the database) once a second and its
    CPU time read every `interval`, so the last fraction of a second may be missed.
    """

    def __init__(self, pid: int, database: str | None, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.database = database
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.backends: dict[int, psutil.Process] = {}
        self.backend_cpu: dict[int, float] = {}
        self.started = time.perf_counter()
        self.done = threading.Event()

    def run(self) -> None:
        last_scan = 0.0
        while not self.done.is_set():
            now = time.perf_counter()
            try:
                rss = self.process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                return
            if rss:
                self.samples.append((now - self.started, rss))
            if self.database and now - last_scan >= 1.0:
                last_scan = now
                self._find_backends()
            for pid, backend in list(self.backends.items()):
                try:
                    times = backend.cpu_times()
                except psutil.Error:
                    del self.backends[pid]
                    continue
                self.backend_cpu[pid] = times.user + times.system
            self.done.wait(self.interval)

    def _find_backends(self) -> None:
        marker = f" {self.database} "
        for candidate in psutil.process_iter(["cmdline"]):
            if candidate.pid in self.backends:
                continue
            title = " ".join(candidate.info["cmdline"] or [])
            if title.startswith("postgres:") and marker in title:
                self.backends[candidate.pid] = candidate

    def server_cpu(self) -> float | None:
        return round(sum(self.backend_cpu.values()), 2) if self.database else None

    def profile(self) -> dict[str, float]:
        """RSS in MB at 10%, 25%, 50%, 75% and 95% of the run, to show whether memory grows with the file."""
        if not self.samples:
            return {}
        end = self.samples[-1][0] or 1.0
        points = {}
        for share in (0.10, 0.25, 0.50, 0.75, 0.95):
            nearest = min(self.samples, key=lambda sample: abs(sample[0] - share * end))
            points[f"{int(share * 100)}%"] = round(nearest[1] / 1e6, 1)
        return points


def timed_import(env: dict[str, str], path: Path, log: Path, database: str | None) -> dict[str, Any]:
    """Run the import command once; return wall seconds, peak RSS and CPU time of that child alone."""
    command = [sys.executable, "manage.py", "import_examples", PROJECT_SLUG, str(path), "--label-map", LABEL_MAP]
    load_before = os.getloadavg()[0]
    with open(log, "w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
        sampler = Sampler(process.pid, database)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"import failed (exit {process.returncode}):\n{log.read_text()[-3000:]}")
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / 1e6, 1),
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "server_cpu_s": sampler.server_cpu(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rss_over_time_mb": sampler.profile(),
        "output": log.read_text().strip().splitlines()[-1:],
    }


def job_result(env: dict[str, str]) -> dict[str, Any]:
    """Read the counts the import job recorded (rows read, created, duplicates, labels stored)."""
    code = (
        "import json; from django.conf import settings; from labeling.models import ImportJob; "
        "job = ImportJob.objects.order_by('-id').first(); "
        "print(json.dumps({'state': job.state, 'chunk_rows': settings.FLYWHEEL_IMPORT_CHUNK_ROWS, "
        "**{k: v for k, v in job.result.items() if k != 'warnings'}}))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def clean_uploads(data_dir: Path) -> None:
    """Remove the copies the command stored, so repeated 1M runs do not fill the disk."""
    for folder in ("uploads", "reports"):
        shutil.rmtree(data_dir / folder, ignore_errors=True)


def one_run(
    *, label: str, database: str, env: dict[str, str], path: Path, base_pg: str, data_dir: Path, fresh: bool = True
) -> dict[str, Any]:
    if fresh:
        if database == "sqlite":
            sqlite_file = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
        else:
            pg_recreate(base_pg, env["BENCH_DATABASE"])
        prepare(env)
    if database == "postgresql":
        pg_checkpoint(base_pg)
    log = data_dir / f"{label}.log"
    run = timed_import(env, path, log, env.get("BENCH_DATABASE") if database == "postgresql" else None)
    run["result"] = job_result(env)
    clean_uploads(data_dir)
    return run


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def machine_info(base_pg: str) -> dict[str, Any]:
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
        "postgresql": pg_version(base_pg),
        "os": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def summarize(name: str, database: str, rows: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [run["seconds"] for run in runs]
    median = statistics.median(seconds)
    last = runs[-1]["result"]
    return {
        "workload": name,
        "database": database,
        "rows": rows,
        "runs": len(runs),
        "median_s": round(median, 2),
        "min_s": round(min(seconds), 2),
        "max_s": round(max(seconds), 2),
        "rows_per_s": round(rows / median),
        "peak_rss_mb_median": round(statistics.median(run["peak_rss_mb"] for run in runs), 1),
        "client_cpu_s_median": round(statistics.median(run["client_cpu_s"] for run in runs), 1),
        "server_cpu_s_median": (
            round(statistics.median(run["server_cpu_s"] for run in runs), 1)
            if all(run["server_cpu_s"] is not None for run in runs)
            else None
        ),
        "peak_rss_mb_max": round(max(run["peak_rss_mb"] for run in runs), 1),
        "examples_created": last.get("examples_created"),
        "duplicates": last.get("duplicates"),
        "annotations_created": last.get("annotations_created"),
        "rows_rejected": last.get("rows_rejected"),
    }


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    repeat = report["repeat"]
    loads = [run["load_average_before_after"][0] for run in report["runs"]]
    lines = [
        f"{SECTION_HEADING} (`bench/import.py`)",
        "",
        "`manage.py import_examples` timed from process start to exit (Django start-up, copying the file, "
        "checking it, parsing, writing, progress updates). Each PostgreSQL run gets a fresh, migrated database. "
        f"Medians of {repeat} run{'s' if repeat != 1 else ''} per size; rows/s = rows / median seconds; peak RSS "
        "is the import process's (`ru_maxrss`), the largest over the runs. Client CPU is the import process's "
        "user + system time; PostgreSQL CPU is its server backend's, sampled every 0.1 s. "
        f"Chunk size {report['chunk_rows'] or '?'} rows.",
        "",
        f"Machine: **{machine['cores']} cores** ({machine['cpu'] or 'unknown CPU'}), {machine['ram_gib']} GiB RAM, "
        f"Python {machine['python']}, PostgreSQL {machine['postgresql']}, {machine['os']}; measured {machine['date']}. "
        f"The machine was shared: the 1-minute load average before the runs was {min(loads):.1f}–{max(loads):.1f}.",
        "",
        "| workload | database | rows | runs | median s | min–max s | rows/s | peak RSS MB "
        "| client CPU s | PostgreSQL CPU s | added | duplicates | labels stored |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        server = "–" if row["server_cpu_s_median"] is None else f"{row['server_cpu_s_median']:.1f}"
        lines.append(
            f"| {row['workload']} | {row['database']} | {row['rows']:,} | {row['runs']} | {row['median_s']:.2f} | "
            f"{row['min_s']:.2f}–{row['max_s']:.2f} | {row['rows_per_s']:,} | {row['peak_rss_mb_max']:.0f} | "
            f"{row['client_cpu_s_median']:.1f} | {server} | "
            f"{row['examples_created']:,} | {row['duplicates']:,} | {row['annotations_created']:,} |"
        )
    lines += [
        "",
        "Rows: real YouTube spam comments and airline tweets, perturbed (dropped and swapped words, case, "
        "tokens, emoji, URLs, HTML entities), about 3% exact duplicates, ISO timestamps of mixed precision "
        "with and without offsets (5% empty), 90% labelled spam/ham, id/author/source kept as meta. "
        "Comparison: Label Studio 1.23.2 imported 100k short texts into PostgreSQL in 24.8 s.",
        "",
    ]
    memory = [
        (row["label"], row["rss_over_time_mb"])
        for row in report["runs"]
        if row.get("rss_over_time_mb") and row["database"] == "postgresql" and "reimport" not in row["label"]
    ]
    if memory:
        label, profile = max(memory, key=lambda item: int(item[0].split("-")[1]))
        points = ", ".join(f"{share}: {mb:.0f} MB" for share, mb in profile.items())
        lines += [f"RSS of `{label}` over the run (share of its time): {points}.", ""]
    return "\n".join(lines)


def write_markdown(section: str) -> None:
    """Replace only the import section of bench/RESULTS.md, keeping the other benchmarks' sections."""
    spec = importlib.util.spec_from_file_location("results_md", BENCH / "results_md.py")
    results_md = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_md)
    results_md.write_section(SECTION_HEADING, section, RESULTS_MD)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="Row counts, comma-separated.")
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs per size (median reported).")
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "datasets",
        help="Folder holding youtube_spam/*.csv and twitter_airline_sentiment/Tweets.csv.",
    )
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL without a database name.")
    parser.add_argument("--keep", action="store_true", help="Keep the benchmark databases and job logs.")
    parser.add_argument("--skip-extra", action="store_true", help="Skip the re-import and SQLite measurements.")
    args = parser.parse_args()
    sizes = [int(part.replace("_", "")) for part in args.sizes.split(",") if part.strip()]

    data_dir = Path(os.environ.get("FLYWHEEL_DATA_DIR") or GENERATED / "flywheel").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    base_env = {
        **os.environ,
        "FLYWHEEL_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
        "DJANGO_SETTINGS_MODULE": "flywheel.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    base_env.pop("DJANGO_DEBUG", None)
    machine = machine_info(args.pg)
    print(
        f"machine: {machine['cores']} cores, {machine['ram_gib']} GiB, PostgreSQL {machine['postgresql']}", flush=True
    )
    files = {size: dataset(size, args.data) for size in sizes}

    runs: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    databases: list[str] = []
    for size in sizes:
        path, info = files[size]
        name = f"flywheel_bench_import_{size}"
        databases.append(name)
        env = {**base_env, "DATABASE_URL": server_url(args.pg, name), "BENCH_DATABASE": name}
        size_runs = []
        for repetition in range(1, args.repeat + 1):
            label = f"pg-{size}-run{repetition}"
            print(f"{label}: fresh database, migrate, import {info['bytes'] / 2**20:.0f} MiB …", flush=True)
            run = one_run(label=label, database="postgresql", env=env, path=path, base_pg=args.pg, data_dir=data_dir)
            run.update(label=label, rows=size, database="postgresql")
            print(
                f"  {run['seconds']:.2f} s, {size / run['seconds']:,.0f} rows/s, peak RSS {run['peak_rss_mb']:.0f} MB, "
                f"{run['result'].get('examples_created', 0):,} added, {run['result'].get('duplicates', 0):,} duplicates",
                flush=True,
            )
            size_runs.append(run)
        runs.extend(size_runs)
        summary.append(summarize(f"import {size:,} rows", "PostgreSQL", size, size_runs))

        if size == min(sizes) and not args.skip_extra:
            label = f"pg-{size}-reimport"
            print(f"{label}: the same file again into the same project …", flush=True)
            run = one_run(
                label=label,
                database="postgresql",
                env=env,
                path=path,
                base_pg=args.pg,
                data_dir=data_dir,
                fresh=False,
            )
            run.update(label=label, rows=size, database="postgresql")
            print(f"  {run['seconds']:.2f} s, {run['result'].get('examples_created', 0):,} added", flush=True)
            runs.append(run)
            summary.append(summarize(f"re-import {size:,} rows (all present)", "PostgreSQL", size, [run]))

            label = f"sqlite-{size}"
            sqlite_env = {**base_env, "DATABASE_URL": f"sqlite:///{data_dir / 'bench-import.sqlite3'}"}
            print(f"{label}: fresh SQLite file, migrate, import …", flush=True)
            run = one_run(label=label, database="sqlite", env=sqlite_env, path=path, base_pg=args.pg, data_dir=data_dir)
            run.update(label=label, rows=size, database="sqlite")
            print(f"  {run['seconds']:.2f} s, peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
            runs.append(run)
            summary.append(summarize(f"import {size:,} rows", "SQLite (reference)", size, [run]))
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{data_dir / 'bench-import.sqlite3'}{suffix}").unlink(missing_ok=True)
        if not args.keep:
            pg_drop(args.pg, name)

    report = {
        "benchmark": "import",
        "machine": machine,
        "repeat": args.repeat,
        "chunk_rows": runs[0]["result"].get("chunk_rows") if runs else None,
        "datasets": {str(size): {"path": str(files[size][0].relative_to(REPO)), **files[size][1]} for size in sizes},
        "summary": summary,
        "runs": runs,
        "databases_kept": databases if args.keep else [],
    }
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_markdown(markdown(report))
    print(f"wrote {RESULTS_JSON.relative_to(REPO)} and {RESULTS_MD.relative_to(REPO)}")
    for row in summary:
        print(
            f"  {row['workload']:<38} {row['database']:<20} median {row['median_s']:7.2f} s  "
            f"{row['rows_per_s']:>9,} rows/s  peak RSS {row['peak_rss_mb_max']:.0f} MB"
        )


if __name__ == "__main__":
    main()
