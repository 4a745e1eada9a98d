"""Time a full queue rebuild on a 1M-example pool: scoring from stored features, every source, the blend, the write.

Sets up a PostgreSQL database with one project of `--size` examples (queued, with a metadata field to stratify
by), a dense 384-dimension feature set stored in the feature store (synthetic vectors around one centre per class,
the shape of MiniLM embeddings), `--labeled` human labels (5% of them wrong on purpose, for the label-error source)
and a model version trained on them. Then runs the real rebuild service (`queue_build_execute`, what the worker
runs) `--repeat` times in this process and reports the median wall time and the time of each stage.

    OMP_NUM_THREADS=1 FLYWHEEL_DATA_DIR=var/bench .venv/bin/python bench/rebuild_pool.py [--size 1000000]

Writes bench/results/rebuild_pool.json and its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
# bench/queue.py would shadow the standard library's queue module.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
RESULTS = BENCH / "results"
DATABASE = "flywheel_bench_rebuild"
PROJECT_SLUG = "rebuild-bench"
LABELS = ("negative", "neutral", "positive")
DIM = 384
SHARD_ROWS = 100_000
NOISE_SHARE = 0.05


def _results_md() -> Any:
    spec = importlib.util.spec_from_file_location("results_md", BENCH / "results_md.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _import_helpers() -> Any:
    spec = importlib.util.spec_from_file_location("bench_import_helpers", BENCH / "import.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _vectors(ids: Any, rng: Any) -> Any:
    """Unit vectors around one centre per class (class = id % 3): separable, with a real band of doubt."""
    import numpy as np

    centres = np.random.default_rng(7).standard_normal((len(LABELS), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((len(ids), DIM), dtype=np.float32) / np.sqrt(DIM)
    spread = rng.uniform(0.05, 0.6, size=(len(ids), 1)).astype(np.float32)
    matrix = centres[ids % len(LABELS)] * spread + noise
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def child_setup(size: int, labeled: int) -> None:
    """Fill the database: examples, queue, feature shards, labels and a model version; print JSON."""
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from labeling import services
    from labeling.models import Annotation, Example, QueueItem
    from models_app.ml.training import TrainingConfig, save_artifact, train_model
    from models_app.models import ModelVersion, ModelVersionStatus
    from models_app.services import feature_set_get_or_create, featurizer_build
    from models_app.services.feature_shards import ShardWriter

    timings: dict[str, float] = {}
    started = time.perf_counter()
    project = services.project_create(slug=PROJECT_SLUG, name="Rebuild benchmark", labels=[{"name": n} for n in LABELS])
    user = get_user_model().objects.create_user("bench-annotator")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Example._meta.db_table} (project_id, text, meta, observed_at, content_hash, origin, ingested_at)
            SELECT %(project)s, format('pool example %%s about flight %%s', g, g %% 977),
                   jsonb_build_object('airline', (ARRAY['united','delta','jetblue','southwest','virgin'])[1 + g %% 5]),
                   %(base)s + make_interval(secs => g), md5(g::text), 'imported', now()
              FROM generate_series(1, %(size)s) AS g""",
            {"project": project.pk, "size": size, "base": dt.datetime(2015, 2, 1, tzinfo=dt.UTC)},
        )
    timings["examples"] = time.perf_counter() - started

    started = time.perf_counter()
    services.queue_fill(project=project)
    timings["queue_fill"] = time.perf_counter() - started

    started = time.perf_counter()
    featurizer = featurizer_build(name="minilm")
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    ids = np.fromiter(
        Example.objects.filter(project=project).order_by("pk").values_list("pk", flat=True), dtype=np.int64
    )
    rng = np.random.default_rng(0)
    writer = ShardWriter(feature_set)
    for start in range(0, len(ids), SHARD_ROWS):
        chunk = ids[start : start + SHARD_ROWS]
        writer.store(chunk, _vectors(chunk, rng))
    timings["features"] = time.perf_counter() - started

    started = time.perf_counter()
    chosen = np.sort(rng.choice(ids, size=labeled, replace=False))
    truth = chosen % len(LABELS)
    wrong = rng.random(labeled) < NOISE_SHARE
    given = np.where(wrong, (truth + rng.integers(1, len(LABELS), size=labeled)) % len(LABELS), truth)
    label_rows = {label.name: label for label in project.labels.all()}
    Annotation.objects.bulk_create(
        [
            Annotation(example_id=int(example_id), label=label_rows[LABELS[int(g)]], author=user, kind="human")
            for example_id, g in zip(chosen, given, strict=True)
        ],
        batch_size=5000,
    )
    QueueItem.objects.filter(example_id__in=chosen.tolist()).delete()
    X = _vectors(chosen, np.random.default_rng(1))
    model = train_model(X, [LABELS[int(g)] for g in given], sparse=False, config=TrainingConfig(seed=0))
    relative = Path(str(project.pk)) / "bench-model.skops"
    sha256 = save_artifact(model, Path(settings.ARTIFACT_DIR) / relative)
    ModelVersion.objects.create(
        project=project,
        number=1,
        featurizer="minilm",
        feature_version=feature_set.version,
        algorithm="logreg",
        artifact_path=str(relative),
        artifact_sha256=sha256,
        status=ModelVersionStatus.EVALUATED,
    )
    timings["labels_and_model"] = time.perf_counter() - started
    print(json.dumps({"setup_seconds": {k: round(v, 1) for k, v in timings.items()}, "wrong_labels": int(wrong.sum())}))


def child_rebuild(repeat: int) -> None:
    """Run the rebuild service `repeat` times; print JSON with each run's wall time and stage timings."""
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from labeling.models import Project
    from models_app import services
    from models_app.models import QueueBuildTrigger

    project = Project.objects.get(slug=PROJECT_SLUG)
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.API)
        build = services.queue_build_execute(build_id=build.pk)
        wall = time.perf_counter() - started
        if build.state != "succeeded":
            raise SystemExit(f"rebuild failed: {build.message}")
        runs.append(
            {
                "wall_seconds": round(wall, 3),
                "timings": build.timings,
                "pool_size": build.pool_size,
                "slice_size": build.slice_size,
                "picked": build.composition.get("picked"),
                "dropped": build.composition.get("dropped"),
                "written": build.composition.get("written"),
                "message": build.message,
            }
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"runs": runs, "peak_rss_mb": round(peak_mb)}))


SECTION_HEADING = "## Queue rebuild on a large pool (`bench/rebuild_pool.py`)"
STAGES = (
    ("pool", "read the pool's ids"),
    ("features_compute", "check for examples without vectors"),
    ("model_load", "load the model (skops, checksum)"),
    ("features_load", "load the pool's vectors"),
    ("score", "probabilities for the pool"),
    ("uncertainty", "uncertainty source"),
    ("cross_validate", "3-fold out-of-fold fits on the labels"),
    ("hard_negatives", "hard negatives: nearest pool rows to the mistakes"),
    ("label_issues", "label-error source"),
    ("other_sources", "LLM, feedback, curriculum"),
    ("exploration", "stratified exploration"),
    ("blend", "blend (texts, duplicates, quotas)"),
    ("write", "swap the slice in (one transaction)"),
)


def markdown(report: dict[str, Any]) -> str:
    """Render the report as this benchmark's section of RESULTS.md."""
    runs = report["runs"]
    stage = report["median_stage_seconds"]
    lines = [
        SECTION_HEADING,
        "",
        f"The real rebuild service (`queue_build_execute`, what the worker runs) on PostgreSQL, in one process, on a "
        f"project of {report['size']:,} queued examples with {report['labeled']:,} human labels (5% of them wrong on "
        f"purpose) and a model version; features: {report['features']}. Run {len(runs)} times on the same database; "
        f"machine: **{report['machine']['cores']} cores** ({report['machine']['cpu']}), threads "
        f"OMP_NUM_THREADS={report['threads']}, measured {report['date']}.",
        "",
        f"Median wall time: **{report['median_wall_seconds']} s** for a pool of {runs[0]['pool_size']:,} ready examples "
        f"(runs: {', '.join(str(run['wall_seconds']) for run in runs)} s; the first pays for importing scikit-learn "
        f"and skops and reading the vectors from disk cold). Peak memory {report['peak_rss_mb']:,} MB. Target: under "
        f"{report['target_seconds']} s — **{'met' if report['target_met'] else 'not met'}**.",
        "",
        "| stage | median s |",
        "|---|---:|",
        *(f"| {label} (`{name}`) | {stage.get(name, 0.0):.2f} |" for name, label in STAGES if name in stage),
        "",
        f"Slice: {runs[-1]['slice_size']} items — "
        + ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in (runs[-1]["picked"] or {}).items())
        + f". Setup (not timed above): {report['setup']['total_seconds']} s.",
    ]
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _child(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--labeled", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--out", type=Path, default=RESULTS / "rebuild_pool.json")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards (for profiling).")
    parser.add_argument("--child-setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-rebuild", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--render", type=Path, help="Write RESULTS.md from an existing JSON report and stop.")
    args = parser.parse_args()
    if args.render:
        _results_md().write_section(SECTION_HEADING, markdown(json.loads(args.render.read_text())))
        return
    if args.child_setup:
        child_setup(args.size, args.labeled)
        return
    if args.child_rebuild:
        child_rebuild(args.repeat)
        return

    helpers = _import_helpers()
    data_dir = Path(os.environ.get("FLYWHEEL_DATA_DIR") or REPO / "var" / "bench").resolve() / "rebuild"
    env = {
        **os.environ,
        "DATABASE_URL": helpers.server_url(args.pg, DATABASE),
        "FLYWHEEL_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "flywheel.settings",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "MKL_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
    }
    helpers.pg_recreate(args.pg, DATABASE)
    helpers.manage(env, "migrate", "--noinput", "-v", "0")
    started = time.perf_counter()
    setup = _child(env, "--child-setup", "--size", str(args.size), "--labeled", str(args.labeled))
    setup["total_seconds"] = round(time.perf_counter() - started, 1)
    print(f"setup: {setup}", flush=True)
    measured = _child(env, "--child-rebuild", "--repeat", str(args.repeat))
    walls = [run["wall_seconds"] for run in measured["runs"]]
    stages = sorted({name for run in measured["runs"] for name in run["timings"]})
    report = {
        "benchmark": "queue rebuild on a large pool",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
        },
        "threads": env["OMP_NUM_THREADS"],
        "size": args.size,
        "labeled": args.labeled,
        "features": f"dense {DIM} float32 (synthetic, MiniLM-shaped), from the feature store",
        "setup": setup,
        "runs": measured["runs"],
        "median_wall_seconds": round(statistics.median(walls), 2),
        "median_stage_seconds": {
            name: round(statistics.median(run["timings"].get(name, 0.0) for run in measured["runs"]), 3)
            for name in stages
        },
        "peak_rss_mb": measured["peak_rss_mb"],
        "target_seconds": 20,
    }
    report["target_met"] = report["median_wall_seconds"] < report["target_seconds"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.out == RESULTS / "rebuild_pool.json":
        _results_md().write_section(SECTION_HEADING, markdown(report))
    print(json.dumps({k: report[k] for k in ("median_wall_seconds", "median_stage_seconds", "peak_rss_mb")}, indent=2))
    if not args.keep:
        helpers.pg_drop(args.pg, DATABASE)


if __name__ == "__main__":
    main()
