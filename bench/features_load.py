"""Benchmark the feature store's load path: 1,000,000 × 384 float32 vectors into memory.

Writes a feature set of random vectors (what MiniLM produces: 384 float32 per example) as shards of 50,000
through the store's own writer into a fresh SQLite database in a temporary data folder, then times
`features_load` in a fresh process per run: cold (the shard files evicted from the page cache first), warm,
and warm with every shard's SHA-256 checked. Medians of `--repeat` runs. Run from the repository root:

    .venv/bin/python bench/features_load.py [--rows 1000000] [--repeat 3]

Writes bench/results/features_load.json and the feature-store section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_JSON = BENCH / "results" / "features_load.json"
HEADING = "## Feature store (`bench/features_load.py`)"
DIM = 384
SHARD_ROWS = 50_000
VERSION = "minilm-bench-load"


def _results_md() -> Any:
    spec = importlib.util.spec_from_file_location("results_md", BENCH / "results_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _django() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    import django

    django.setup()


def child_write(rows: int) -> dict[str, Any]:
    """Migrate the temporary database and write the vectors through the store's shard writer."""
    _django()
    import numpy as np
    from django.core.management import call_command

    from labeling.models import Project
    from models_app.models import FeatureSet
    from models_app.services.feature_shards import ShardWriter

    call_command("migrate", verbosity=0)
    project = Project.objects.create(slug="bench-load", name="Feature store load benchmark")
    feature_set = FeatureSet.objects.create(
        project=project, featurizer="minilm", version=VERSION, params={}, dim=DIM, sparse=False
    )
    writer = ShardWriter(feature_set)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for first in range(1, rows + 1, SHARD_ROWS):
        ids = np.arange(first, min(first + SHARD_ROWS, rows + 1), dtype=np.int64)
        writer.store(ids, rng.standard_normal((ids.size, DIM), dtype=np.float32))
    return {"write_seconds": round(time.perf_counter() - started, 2), "shards": -(-rows // SHARD_ROWS)}


def child_load(mode: str) -> dict[str, Any]:
    """Time one features_load in this fresh process; `cold` evicts the shard files from the page cache first."""
    _django()
    import resource

    from models_app.models import FeatureSet, FeatureShard
    from models_app.services import features_load
    from models_app.services.feature_shards import feature_dir

    feature_set = FeatureSet.objects.get(version=VERSION)
    if mode == "cold":
        for shard in FeatureShard.objects.filter(feature_set=feature_set):
            matrix = feature_dir() / shard.path
            for path in (matrix, matrix.with_name(f"shard-{shard.number:06d}-ids.npy")):
                descriptor = os.open(path, os.O_RDONLY)
                os.fsync(descriptor)
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(descriptor)
    started = time.perf_counter()
    loaded = features_load(feature_set=feature_set, verify=mode == "verify")
    seconds = time.perf_counter() - started
    assert loaded.matrix.shape == (feature_set.rows, DIM), loaded.matrix.shape
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "gib": round(loaded.matrix.nbytes / 2**30, 3),
    }


def _child(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child-write", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-load", choices=("cold", "warm", "verify"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_write:
        print(json.dumps(child_write(args.child_write)))
        return
    if args.child_load:
        print(json.dumps(child_load(args.child_load)))
        return

    with tempfile.TemporaryDirectory(prefix="flywheel-bench-features-") as folder:
        env = {**os.environ, "FLYWHEEL_DATA_DIR": folder, "DATABASE_URL": "", "OMP_NUM_THREADS": "1"}
        written = _child(env, "--child-write", str(args.rows))
        runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "verify": []}
        for _ in range(args.repeat):
            for mode in runs:
                runs[mode].append(_child(env, "--child-load", mode))
    medians = {mode: statistics.median(run["seconds"] for run in values) for mode, values in runs.items()}
    report = {
        "benchmark": "features_load",
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "os": platform.platform(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_1m_at_start": os.getloadavg()[0],
        },
        "rows": args.rows,
        "dim": DIM,
        "shard_rows": SHARD_ROWS,
        "repeat": args.repeat,
        "write": written,
        "runs": runs,
        "median_seconds": medians,
    }
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(report, indent=2) + "\n")
    gib = runs["warm"][0]["gib"]
    rss = max(run["peak_rss_mb"] for values in runs.values() for run in values)
    section = "\n".join(
        [
            HEADING,
            "",
            f"`features_load` of {args.rows:,} × {DIM} float32 vectors ({gib} GiB) stored as "
            f"{written['shards']} `.npy` shards of {SHARD_ROWS:,} (written through the store in "
            f"{written['write_seconds']} s), each load in a fresh process, medians of {args.repeat}. Cold: the shard "
            "files evicted from the page cache first (`posix_fadvise(DONTNEED)`); verify: every shard's SHA-256 "
            f"checked as well. Machine: **{report['machine']['cores']} cores**, measured "
            f"{report['machine']['date']}, 1-minute load {report['machine']['load_1m_at_start']:.1f} at the start.",
            "",
            "| load | median s | min–max s | peak RSS MB |",
            "|---|---:|---:|---:|",
            *(
                f"| {mode} | {medians[mode]:.2f} | {min(r['seconds'] for r in runs[mode]):.2f}–"
                f"{max(r['seconds'] for r in runs[mode]):.2f} | {max(r['peak_rss_mb'] for r in runs[mode])} |"
                for mode in runs
            ),
            "",
            f"Peak memory stays at the matrix itself ({rss} MB at most): shards are copied into one preallocated "
            "array, with no second copy.",
        ]
    )
    _results_md().write_section(HEADING, section)
    print(section)


if __name__ == "__main__":
    main()
