"""The queue service: filling, claiming, leases, overlap, skips, expiry, idempotent submit, undo, gold."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services
from labeling.models import (
    Annotation,
    AnnotationEvent,
    AnnotationKind,
    AnnotationStatus,
    Example,
    QueueItem,
    QueueReason,
    QueueSkip,
    QueueState,
)
from labeling.services.annotations import ERROR_ALREADY_LABELED, AnnotationError
from labeling.services.queue import ERROR_LEASE_NOT_FOUND, LeaseError

from .factories import run_import

pytestmark = pytest.mark.django_db


def _csv(count: int, *, labeled: int = 0) -> str:
    rows = ["text,date,label"]
    for number in range(count):
        label = "spam" if number < labeled else ""
        rows.append(f"comment number {number},2024-01-{1 + number % 28:02d},{label}")
    return "\n".join(rows) + "\n"


def _set(project, **values):
    project.settings = {**project.settings, "labeling": {**project.settings.get("labeling", {}), **values}}
    project.save(update_fields=["settings"])


def _claim(project, user, **kwargs):
    claim = services.queue_claim_next(project=project, user=user, **kwargs)
    return None if claim is None else claim.item


def test_import_queues_unlabeled_examples_in_random_order_when_the_job_finishes(project):
    job = run_import(project, _csv(30, labeled=5))
    assert job.state == "succeeded"
    assert job.result["queued"] == 25
    assert "25 examples queued for labeling" in job.message
    items = QueueItem.objects.filter(project=project)
    assert items.count() == 25
    assert set(items.values_list("state", flat=True)) == {QueueState.READY}
    assert set(items.values_list("reason_code", flat=True)) == {QueueReason.EXPLORATION}
    # Labeled rows are not queued; priorities are random, not the import order.
    labeled_ids = set(Annotation.objects.values_list("example_id", flat=True))
    assert not labeled_ids & set(items.values_list("example_id", flat=True))
    order = list(items.order_by("-priority", "id").values_list("example_id", flat=True))
    assert order != sorted(order)
    assert all(0.0 <= p < 1.0 for p in items.values_list("priority", flat=True))
    # Importing the same file again queues nothing twice.
    again = run_import(project, _csv(30, labeled=5))
    assert again.result.get("queued", 0) == 0
    assert QueueItem.objects.filter(project=project).count() == 25


def test_claim_takes_the_highest_priority_and_never_the_same_item_twice(project, users):
    run_import(project, _csv(5))
    QueueItem.objects.filter(project=project).update(priority=0.1)
    top = QueueItem.objects.filter(project=project).order_by("id").last()
    QueueItem.objects.filter(pk=top.pk).update(priority=0.9)
    first = _claim(project, users["annotator"])
    assert first.pk == top.pk
    assert first.state == QueueState.LEASED and first.lease_owner_id == users["annotator"].pk
    assert first.lease_expires_at > timezone.now() + timedelta(minutes=9)
    second = _claim(project, users["reviewer"])
    assert second.pk != first.pk


def test_a_held_lease_is_handed_back_instead_of_a_new_one(project, users):
    run_import(project, _csv(5))
    first = services.queue_claim_next(project=project, user=users["annotator"])
    again = services.queue_claim_next(project=project, user=users["annotator"])
    assert again.resumed and again.item.pk == first.item.pk and again.item.lease_id == first.item.lease_id
    assert QueueItem.objects.filter(state=QueueState.LEASED).count() == 1


def test_claim_returns_none_when_the_user_labeled_everything(project, users):
    run_import(project, _csv(3))
    annotator = users["annotator"]
    for _ in range(3):
        item = _claim(project, annotator)
        services.annotation_submit(user=annotator, example=item.example, label="ham", lease_id=item.lease_id)
    assert _claim(project, annotator) is None
    assert QueueItem.objects.filter(state=QueueState.DONE).count() == 3


def test_overlap_gives_each_example_to_k_distinct_annotators(project, users, make_user):
    _set(project, overlap=2)
    run_import(project, _csv(4))
    assert QueueItem.objects.filter(project=project).count() == 8
    # Both slots of an example share its priority, so an example is finished by k people together.
    for example_id in Example.objects.values_list("id", flat=True):
        assert QueueItem.objects.filter(example_id=example_id).values("priority").distinct().count() == 1
    people = [users["annotator"], users["reviewer"], make_user("third")]
    services.member_add(project=project, username="third", role="annotator")
    labeled: dict[int, list[int]] = {}
    progress = True
    while progress:
        progress = False
        for person in people:
            item = _claim(project, person)
            if item is None:
                continue
            progress = True
            assert person.pk not in labeled.get(item.example_id, [])
            services.annotation_submit(user=person, example=item.example, label="spam", lease_id=item.lease_id)
            labeled.setdefault(item.example_id, []).append(person.pk)
    assert sorted(len(who) for who in labeled.values()) == [2, 2, 2, 2]
    assert all(len(set(who)) == 2 for who in labeled.values())


def test_raising_overlap_adds_slots_and_lowering_it_drops_ready_ones(project, users):
    run_import(project, _csv(3))
    item = _claim(project, users["annotator"])
    services.annotation_submit(user=users["annotator"], example=item.example, label="ham", lease_id=item.lease_id)
    _set(project, overlap=3)
    assert services.queue_overlap_sync(project=project) == 6
    assert QueueItem.objects.filter(example_id=item.example_id).count() == 3
    _set(project, overlap=1)
    assert services.queue_overlap_sync(project=project) == -6
    assert QueueItem.objects.filter(project=project).count() == 3


def test_skip_sends_the_item_to_the_back_for_that_annotator_only(project, users):
    run_import(project, _csv(3))
    for rank, item in enumerate(QueueItem.objects.order_by("id")):
        QueueItem.objects.filter(pk=item.pk).update(priority=1.0 - rank / 10)
    annotator = users["annotator"]
    first = _claim(project, annotator)
    services.queue_release(user=annotator, lease_id=first.lease_id)
    assert QueueSkip.objects.filter(user=annotator, example_id=first.example_id).exists()
    assert AnnotationEvent.objects.filter(kind="skip", actor=annotator).count() == 1
    # Someone else still gets it first; the skipper gets the others, then it last.
    assert _claim(project, users["reviewer"]).pk == first.pk
    services.queue_release(user=users["reviewer"], lease_id=QueueItem.objects.get(pk=first.pk).lease_id)
    order = []
    while (item := _claim(project, annotator)) is not None:
        order.append(item.pk)
        services.annotation_submit(user=annotator, example=item.example, label="ham", lease_id=item.lease_id)
    assert order[-1] == first.pk and len(order) == 3


def test_expired_leases_return_to_the_queue_by_themselves(project, users):
    run_import(project, _csv(1))
    item = _claim(project, users["annotator"])
    assert _claim(project, users["reviewer"]) is None
    later = timezone.now() + timedelta(minutes=11)
    # No sweep has run: the claim itself finds the expired lease and takes it over.
    taken = _claim(project, users["reviewer"], now=later)
    assert taken.pk == item.pk and taken.lease_owner_id == users["reviewer"].pk
    assert services.queue_leases_expire(now=later + timedelta(minutes=11)) == 1
    assert QueueItem.objects.get(pk=item.pk).state == QueueState.READY


def test_heartbeat_extends_the_lease(project, users):
    run_import(project, _csv(1))
    item = _claim(project, users["annotator"])
    later = timezone.now() + timedelta(minutes=8)
    extended = services.queue_lease_extend(user=users["annotator"], lease_id=item.lease_id, now=later)
    assert extended.lease_expires_at > item.lease_expires_at
    assert services.queue_leases_expire(now=timezone.now() + timedelta(minutes=12)) == 0
    with pytest.raises(LeaseError, match=ERROR_LEASE_NOT_FOUND[:20]):
        services.queue_lease_extend(user=users["reviewer"], lease_id=item.lease_id)


def test_submit_is_idempotent_on_a_repeated_lease(project, users):
    run_import(project, _csv(2))
    annotator = users["annotator"]
    item = _claim(project, annotator)
    first = services.annotation_submit(user=annotator, example=item.example, label="spam", lease_id=item.lease_id)
    repeat = services.annotation_submit(user=annotator, example=item.example, label="spam", lease_id=item.lease_id)
    assert first.created and not repeat.created and repeat.annotation.pk == first.annotation.pk
    with pytest.raises(AnnotationError, match="already labeled") as caught:
        services.annotation_submit(user=annotator, example=item.example, label="ham", lease_id=item.lease_id)
    assert caught.value.status == 409
    assert str(caught.value) == ERROR_ALREADY_LABELED.format(label="spam")
    assert Annotation.objects.filter(author=annotator).count() == 1


def test_the_database_refuses_a_second_standing_label_by_one_person(project, users):
    from django.db import IntegrityError, transaction

    run_import(project, _csv(1))
    example = Example.objects.get()
    services.annotation_submit(user=users["annotator"], example=example, label="spam")
    label = project.labels.get(name="ham")
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(example=example, label=label, author=users["annotator"], kind="human")


def test_a_label_on_an_expired_lease_is_kept(project, users):
    run_import(project, _csv(1))
    item = _claim(project, users["annotator"])
    later = timezone.now() + timedelta(minutes=11)
    services.queue_leases_expire(now=later)
    result = services.annotation_submit(
        user=users["annotator"], example=item.example, label="ham", lease_id=item.lease_id, now=later
    )
    assert result.created
    assert QueueItem.objects.get(pk=item.pk).state == QueueState.DONE


def test_a_lease_of_someone_else_is_refused(project, users):
    run_import(project, _csv(1))
    item = _claim(project, users["annotator"])
    with pytest.raises(AnnotationError) as caught:
        services.annotation_submit(user=users["reviewer"], example=item.example, label="ham", lease_id=item.lease_id)
    assert caught.value.status == 404
    with pytest.raises(LeaseError):
        services.queue_release(user=users["reviewer"], lease_id=item.lease_id)
    with pytest.raises(LeaseError):
        services.queue_release(user=users["annotator"], lease_id=uuid.uuid4())


def test_undo_withdraws_the_label_and_leases_the_item_back(project, users):
    run_import(project, _csv(3))
    annotator = users["annotator"]
    item = _claim(project, annotator)
    done = services.annotation_submit(user=annotator, example=item.example, label="spam", lease_id=item.lease_id)
    following = _claim(project, annotator)
    undone, back = services.annotation_undo(user=annotator, project_id=project.pk)
    assert undone.pk == done.annotation.pk
    assert Annotation.objects.get(pk=undone.pk).status == AnnotationStatus.WITHDRAWN
    assert AnnotationEvent.objects.filter(kind="undo", annotation=undone).exists()
    assert back.pk == item.pk and back.state == QueueState.LEASED and back.lease_id != item.lease_id
    # The undone item comes first; relabeling it creates a new annotation, the withdrawn one stays.
    assert _claim(project, annotator).pk == item.pk
    services.annotation_submit(user=annotator, example=item.example, label="ham", lease_id=back.lease_id)
    assert _claim(project, annotator).pk == following.pk
    assert Annotation.objects.filter(example=item.example).count() == 2
    # Undoing the same annotation again is a no-op.
    again, _ = services.annotation_undo(user=annotator, project_id=project.pk, annotation_id=undone.pk)
    assert again.status == AnnotationStatus.WITHDRAWN


def test_gold_examples_are_mixed_in_once_per_annotator(project, users, monkeypatch):
    # Every draw asks for gold: each person must still get the gold example exactly once.
    monkeypatch.setattr("labeling.services.queue.random.random", lambda: 0.0)
    _set(project, overlap=2)
    run_import(project, _csv(6))
    gold_example = Example.objects.order_by("id").first()
    services.gold_set(user=users["admin"], example=gold_example, label="spam")
    assert not QueueItem.objects.filter(example=gold_example).exists()
    _set(project, gold_rate=0.5)
    served = {}
    for person in (users["annotator"], users["reviewer"]):
        seen = []
        while (item := _claim(project, person)) is not None:
            seen.append(item)
            services.annotation_submit(user=person, example=item.example, label="ham", lease_id=item.lease_id)
        served[person.pk] = [i for i in seen if i.reason_code == QueueReason.GOLD]
        assert len(seen) == 6
    assert all(len(golds) == 1 and golds[0].example_id == gold_example.pk for golds in served.values())
    assert Annotation.objects.filter(example=gold_example, kind=AnnotationKind.HUMAN).count() == 2


def test_adjudication_supersedes_the_previous_one(project, users):
    run_import(project, _csv(1))
    example = Example.objects.get()
    first = services.annotation_adjudicate(user=users["reviewer"], example=example, label="spam")
    second = services.annotation_adjudicate(user=users["reviewer"], example=example, label="ham", note="link is fine")
    assert Annotation.objects.get(pk=first.pk).status == AnnotationStatus.SUPERSEDED
    assert second.status == AnnotationStatus.ACCEPTED and second.kind == AnnotationKind.ADJUDICATED
    assert not QueueItem.objects.filter(example=example, state=QueueState.READY).exists()


def test_unknown_label_lists_the_choices(project, users):
    run_import(project, _csv(1))
    with pytest.raises(AnnotationError, match="spam, ham|ham, spam"):
        services.annotation_submit(user=users["annotator"], example=Example.objects.get(), label="eggs")


def test_ignoring_the_label_column_queues_every_new_example(project):
    job = run_import(project, _csv(10, labeled=10), ignore_labels=True)
    assert job.state == "succeeded" and job.result["queued"] == 10
    assert not Annotation.objects.exists()
    assert job.result["columns"]["label"] is None


def test_the_lease_sweep_runs_on_a_schedule():
    from django.conf import settings

    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["labeling.tasks.queue_leases_expire_task"] <= 60


def test_a_gold_answer_replaces_an_adjudication_and_adjudicating_gold_is_refused(project, users):
    from labeling.services.annotations import ERROR_ADJUDICATE_GOLD

    run_import(project, _csv(1))
    example = Example.objects.get()
    adjudication = services.annotation_adjudicate(user=users["reviewer"], example=example, label="spam")
    gold = services.gold_set(user=users["admin"], example=example, label="ham")
    assert Annotation.objects.get(pk=adjudication.pk).status == AnnotationStatus.SUPERSEDED
    with pytest.raises(AnnotationError) as caught:
        services.annotation_adjudicate(user=users["reviewer"], example=example, label="spam")
    assert caught.value.status == 409 and str(caught.value) == ERROR_ADJUDICATE_GOLD.format(example_id=example.pk)
    assert Annotation.objects.get(pk=gold.pk).status == AnnotationStatus.ACCEPTED


def test_removing_a_gold_answer_queues_the_example_again(project, users):
    run_import(project, _csv(2))
    example = Example.objects.order_by("id").first()
    services.gold_set(user=users["admin"], example=example, label="spam")
    assert not QueueItem.objects.filter(example=example).exists()
    assert services.gold_unset(user=users["admin"], example=example) == 1
    assert QueueItem.objects.filter(example=example, state=QueueState.READY).count() == 1
    assert QueueItem.objects.filter(project=project).count() == 2


def test_progress_is_exact_for_small_queues_and_reused_briefly_for_large_ones(project, users, monkeypatch):
    from django.core.cache import cache

    from labeling import selectors
    from labeling.selectors import queue as queue_selectors

    cache.clear()
    run_import(project, _csv(4))
    assert selectors.queue_progress(project=project)["done"] == 0
    item = _claim(project, users["annotator"])
    services.annotation_submit(user=users["annotator"], example=item.example, label="ham", lease_id=item.lease_id)
    assert selectors.queue_progress(project=project)["done"] == 1
    monkeypatch.setattr(queue_selectors, "PROGRESS_EXACT_BELOW", 2)
    assert selectors.queue_progress(project=project)["done"] == 1
    item = _claim(project, users["annotator"])
    services.annotation_submit(user=users["annotator"], example=item.example, label="ham", lease_id=item.lease_id)
    assert selectors.queue_progress(project=project)["done"] == 1
    cache.clear()
    assert selectors.queue_progress(project=project)["done"] == 2
