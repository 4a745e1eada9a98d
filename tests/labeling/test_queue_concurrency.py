"""Many annotators at once: threads with their own database connections claim and label until the queue is empty.

On PostgreSQL: 50 threads as 50 users over a queue of 5,000 examples, with overlap 1 and 2. On SQLite the same
service runs serialized, so the run is smaller. Some claims are released (skipped) to stir the queue.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from labeling import services
from labeling.models import (
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    Example,
    Membership,
    QueueItem,
    QueueState,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _scale() -> tuple[int, int]:
    """(threads, examples): the issue's load on PostgreSQL, a smaller one on serialized SQLite."""
    return (50, 5000) if connection.vendor == "postgresql" else (8, 400)


@dataclass
class Journal:
    """What each thread saw: lease intervals per queue item, labels made, errors."""

    intervals: dict[int, list[tuple[float, float, int]]] = field(default_factory=lambda: defaultdict(list))
    created: list[int] = field(default_factory=list)
    repeats: int = 0
    releases: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _annotator(project, user, journal: Journal, seed: int) -> None:
    chance = random.Random(seed)
    try:
        while True:
            claim = services.queue_claim_next(project=project, user=user)
            if claim is None:
                return
            start = time.monotonic()
            item = claim.item
            if chance.random() < 0.03:
                end = time.monotonic()
                services.queue_release(user=user, lease_id=item.lease_id)
                with journal.lock:
                    journal.intervals[item.pk].append((start, end, user.pk))
                    journal.releases += 1
                continue
            label = "spam" if chance.random() < 0.5 else "ham"
            result = services.annotation_submit(user=user, example=item.example, label=label, lease_id=item.lease_id)
            end = time.monotonic()
            # A retried submit (a double click) must return the same annotation.
            again = services.annotation_submit(user=user, example=item.example, label=label, lease_id=item.lease_id)
            with journal.lock:
                journal.intervals[item.pk].append((start, end, user.pk))
                if result.created:
                    journal.created.append(result.annotation.pk)
                if not again.created and again.annotation.pk == result.annotation.pk:
                    journal.repeats += 1
    except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
        with journal.lock:
            journal.errors.append(f"{user.username}: {exc!r}")
    finally:
        connections.close_all()


def _setup(project, *, examples: int, annotators: int, overlap: int):
    project.settings = {"labeling": {"overlap": overlap, "gold_rate": 0.0}}
    project.save(update_fields=["settings"])
    Example.objects.bulk_create(
        Example(project=project, text=f"comment {n}", content_hash=hashlib.sha256(f"c{n}".encode()).hexdigest())
        for n in range(examples)
    )
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"annotator-{n:02d}") for n in range(annotators)
    )
    users = list(get_user_model().objects.filter(username__startswith="annotator-").order_by("username"))
    Membership.objects.bulk_create(Membership(project=project, user=user, role="annotator") for user in users)
    added = services.queue_fill(project=project)
    assert added == examples
    assert QueueItem.objects.filter(project=project).count() == examples * overlap
    return users


@pytest.mark.parametrize("overlap", [1, 2])
def test_concurrent_annotators_empty_the_queue_without_double_leases_or_lost_labels(project, overlap):
    threads_count, examples = _scale()
    users = _setup(project, examples=examples, annotators=threads_count, overlap=overlap)
    journal = Journal()
    threads = [
        threading.Thread(target=_annotator, args=(project, user, journal, index), name=user.username)
        for index, user in enumerate(users)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "an annotator thread hung"
    assert journal.errors == []

    # Every slot is done, every example carries exactly k standing human labels from k different people.
    assert QueueItem.objects.filter(project=project).exclude(state=QueueState.DONE).count() == 0
    labels = Annotation.objects.filter(example__project=project, kind=AnnotationKind.HUMAN)
    assert labels.count() == examples * overlap == len(journal.created) == len(set(journal.created))
    assert labels.exclude(status=AnnotationStatus.SUBMITTED).count() == 0
    per_example: dict[int, list[int]] = defaultdict(list)
    for example_id, author_id in labels.values_list("example_id", "author_id"):
        per_example[example_id].append(author_id)
    assert len(per_example) == examples
    assert {len(authors) for authors in per_example.values()} == {overlap}
    assert all(len(set(authors)) == overlap for authors in per_example.values())
    assert journal.repeats == examples * overlap

    # No item was ever leased to two people at once: the lease intervals on each item never overlap.
    double_leases = 0
    for spans in journal.intervals.values():
        spans.sort()
        for (_, end, _), (next_start, _, _) in zip(spans, spans[1:], strict=False):
            if next_start < end:
                double_leases += 1
    assert double_leases == 0
    # Each done item was finished by the person holding its lease.
    done_by = dict(QueueItem.objects.filter(project=project).values_list("id", "lease_owner_id"))
    for item_id, spans in journal.intervals.items():
        assert spans[-1][2] == done_by[item_id]
    print(
        f"\n{connection.vendor}: {threads_count} annotators, {examples:,} examples, overlap {overlap}: "
        f"{examples * overlap:,} labels, {journal.releases} releases, 0 double leases, 0 lost or duplicated labels, "
        f"{elapsed:.1f} s"
    )
