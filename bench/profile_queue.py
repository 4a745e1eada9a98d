"""Profile the claim → submit loop inside one process: where a request's server-side CPU goes.

Runs the API through Django's WSGI handler (every middleware, the bearer token, django-ninja, the ORM)
against a database made by `bench/queue.py --keep`, without gunicorn or a network in between, and
prints CPU milliseconds per request, queries per request and the top functions by cumulative time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<kept benchmark database> \\
        .venv/bin/python bench/profile_queue.py --token fw_... [--pairs 500]

Not a benchmark: no results file. It answers "which part of a request costs what" while tuning.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token", required=True, help="An annotator's API token in the project.")
    parser.add_argument("--slug", default="queue-bench")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
    import django

    django.setup()
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {args.token}")

    def pair() -> int:
        claim = client.post(f"/api/v1/projects/{args.slug}/queue/claim")
        if claim.status_code != 200:
            raise SystemExit(f"claim answered {claim.status_code}: {claim.content[:300]!r}")
        item = claim.json()
        body = json.dumps({"label": item["labels"][0], "lease_id": item["lease_id"]})
        submit = client.post(f"/api/v1/examples/{item['example_id']}/annotations", body, "application/json")
        if submit.status_code not in (200, 201):
            raise SystemExit(f"submit answered {submit.status_code}: {submit.content[:300]!r}")
        return 2

    for _ in range(50):
        pair()
    with CaptureQueriesContext(connection) as queries:
        pair()
    for query in queries.captured_queries:
        print(f"{query['time']:>6} {query['sql'][:160]}")
    reset_queries()

    started_cpu, started = time.process_time(), time.perf_counter()
    requests = sum(pair() for _ in range(args.pairs))
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    print(f"\n{requests} requests: {cpu / requests * 1000:.2f} ms CPU and {wall / requests * 1000:.2f} ms wall each")

    profiler = cProfile.Profile()
    started_cpu, started = time.process_time(), time.perf_counter()
    profiler.enable()
    requests = sum(pair() for _ in range(args.pairs))
    profiler.disable()
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    print(
        f"\n{requests} requests: {cpu / requests * 1000:.2f} ms CPU and {wall / requests * 1000:.2f} ms wall each"
        f" (profiler on); {len(queries.captured_queries)} queries per claim + submit pair"
    )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
