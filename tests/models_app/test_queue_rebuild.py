"""Rebuilding the queue's front with the cascade: sources, quotas, what is never touched, cold start, curriculum."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from labeling import services as labeling_services
from labeling.models import (
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    Example,
    ExampleOrigin,
    JobState,
    QueueItem,
    QueueReason,
    QueueState,
)
from labeling.services.queue_slice import RANKED_FLOOR
from models_app import services
from models_app.models import QueueBuild, QueueBuildTrigger, TrainingTrigger
from models_app.project_settings import queue_settings_parse
from models_app.services.queue_builds import ERROR_WORKER_LOST, MAX_ATTEMPTS, MESSAGE_EMPTY

from .factories import examples_create, labeled_project

pytestmark = pytest.mark.django_db

SPAM = "subscribe to my channel {n} free gift"
HAM = "this song reminds me of summer {n}"
MIXED = "subscribe song summer channel {n}"


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


def _set(project, section, **values):
    project.settings = {**project.settings, section: {**project.settings.get(section, {}), **values}}
    project.save(update_fields=["settings"])


def _pool(project, count, template="pool item {n}", meta=None):
    examples = examples_create(project, [template.format(n=f"p{number}") for number in range(count)])
    if meta is not None:
        for index, example in enumerate(examples):
            example.meta = meta(index)
        Example.objects.bulk_update(examples, ["meta"])
    labeling_services.queue_fill(project=project)
    return examples


def _train(project):
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    run = services.training_run_execute(run_id=run.pk)
    assert run.state == JobState.SUCCEEDED, run.message
    return run.model_version


def _rebuild(project, trigger=QueueBuildTrigger.BUTTON):
    build = services.queue_build_request(project=project, trigger=trigger)
    build = services.queue_build_execute(build_id=build.pk)
    assert build.state == JobState.SUCCEEDED, build.message
    return build


def _slice(project):
    return list(
        QueueItem.objects.filter(project=project, state=QueueState.READY, priority__gte=RANKED_FLOOR).order_by(
            "-priority", "id"
        )
    )


def test_a_cold_start_explores_stratified_by_a_metadata_field(project, users):
    channels = ["news", "music", "sport", "games"]
    # 2% of the pool is "games": a plain random slice of 50 would often miss it.
    _pool(project, 1000, meta=lambda i: {"channel": "games" if i % 50 == 0 else channels[i % 3]})
    _set(project, "queue", slice_size=50)
    build = _rebuild(project)
    assert build.model_number is None and build.composition["cold_start"] is True
    assert build.composition["strata_field"] == "channel"
    ranked = _slice(project)
    assert len(ranked) == 50 and {item.reason_code for item in ranked} == {QueueReason.EXPLORATION}
    seen = {Example.objects.get(pk=item.example_id).meta["channel"] for item in ranked}
    assert seen == set(channels)
    assert "within games" in " ".join(item.reason for item in ranked)
    assert build.pool_size == 1000 and build.composition["picked"] == {"exploration": 50}


def test_a_cold_start_puts_the_llm_s_least_sure_items_first(project, users):
    examples = _pool(project, 60)
    spam = project.labels.get(name="spam")
    for index, example in enumerate(examples[:20]):
        Annotation.objects.create(
            example=example,
            label=spam,
            labeler_name="smollm2",
            kind=AnnotationKind.LLM,
            status=AnnotationStatus.PENDING,
            confidence=0.5 + index / 50,
        )
    _set(project, "queue", slice_size=20)
    build = _rebuild(project)
    ranked = _slice(project)
    unsure = [item for item in ranked if item.reason_code == QueueReason.UNCERTAIN]
    assert unsure and build.composition["picked"]["uncertain"] == len(unsure)
    assert unsure[0].example_id == examples[0].pk  # confidence 0.50, the least sure
    assert unsure[0].reason.startswith("LLM unsure: it said spam")
    assert build.composition["picked"].get("exploration", 0) >= 2  # exploration keeps its share


def _project_with_model(project, users, *, pool=200):
    examples = examples_create(
        project,
        [(SPAM if n % 3 == 0 else HAM if n % 3 == 1 else MIXED).format(n=f"x{n}") for n in range(pool)],
    )
    labeling_services.queue_fill(project=project)
    # Labeled after the queue was filled, as if through it: the labeled examples have no ready slot.
    labeled = labeled_project(project, users["annotator"], count=120)
    version = _train(project)
    return labeled, examples, version


def test_a_rebuild_after_a_model_blends_the_sources_by_quota_and_ranks_the_unsure_first(project, users):
    labeled, pool, version = _project_with_model(project, users)
    _set(project, "queue", slice_size=40)
    build = _rebuild(project)
    assert build.model_number == version.number and build.pool_size == len(pool)
    ranked = _slice(project)
    assert len(ranked) == 40 == build.slice_size
    counts = build.composition["picked"]
    # Exploration keeps at least its 10%; sources with fewer candidates than slots (here: no LLM labels, no
    # feedback, few model errors) leave theirs to the others in proportion to their shares.
    assert counts["exploration"] >= 4 and counts["uncertain"] >= 20
    assert counts == build.composition["slots"] and sum(counts.values()) == 40
    uncertain = [item for item in ranked if item.reason_code == QueueReason.UNCERTAIN]
    assert all(item.model_version == version.number for item in ranked)
    assert uncertain[0].reason.startswith("Uncertain:")
    # The mixed texts, with spam and ham words at once, are what the model is least sure about.
    assert "subscribe song summer" in Example.objects.get(pk=uncertain[0].example_id).text
    scores = [item.score for item in uncertain]
    assert scores == sorted(scores, reverse=True)
    # Exploration is mixed in from the start, not left at the end.
    assert any(item.reason_code == QueueReason.EXPLORATION for item in ranked[:15])
    assert set(build.timings) >= {"pool", "score", "blend", "write"}


def test_leased_and_labeled_items_are_never_requeued_and_leases_are_untouched(project, users):
    labeled, pool, _ = _project_with_model(project, users)
    claim = labeling_services.queue_claim_next(project=project, user=users["annotator"])
    before = QueueItem.objects.get(pk=claim.item.pk)
    _set(project, "queue", slice_size=60, quota_label_error=0)
    _rebuild(project)
    after = QueueItem.objects.get(pk=claim.item.pk)
    assert (after.state, after.lease_id, after.priority, after.reason) == (
        QueueState.LEASED,
        before.lease_id,
        before.priority,
        before.reason,
    )
    ranked_ids = {item.example_id for item in _slice(project)}
    assert claim.item.example_id not in ranked_ids
    assert not ranked_ids & {example.pk for example in labeled}
    # One row per (example, slot) still: nothing duplicated.
    assert QueueItem.objects.filter(project=project).count() == len(pool)


def test_a_second_rebuild_replaces_the_slice_and_the_old_one_falls_back_to_random_order(project, users):
    _project_with_model(project, users)
    _set(project, "queue", slice_size=30)
    _rebuild(project)
    first = {item.example_id for item in _slice(project)}
    _set(project, "queue", slice_size=20, quota_uncertain=0.0, quota_hard_negative=0.0, quota_exploration=1.0)
    build = _rebuild(project)
    second = _slice(project)
    assert len(second) == 20 and {item.reason_code for item in second} == {QueueReason.EXPLORATION}
    demoted = QueueItem.objects.filter(project=project, example_id__in=first - {i.example_id for i in second})
    assert all(item.priority < RANKED_FLOOR and item.reason_code == QueueReason.EXPLORATION for item in demoted)
    assert build.composition["written"]["demoted"] >= 30


def test_likely_label_errors_go_to_a_second_annotator_and_not_back_to_the_first(project, users, make_user):
    labeled, _, _ = _project_with_model(project, users)
    ham = project.labels.get(name="ham")
    # Three spam texts labeled ham by mistake.
    wrong = [example for example in labeled if "subscribe" in example.text][:3]
    Annotation.objects.filter(example__in=wrong).update(label=ham)
    _train(project)
    _set(project, "queue", slice_size=40, quota_label_error=0.2)
    build = _rebuild(project)
    flagged = QueueItem.objects.filter(project=project, reason_code=QueueReason.LABEL_ERROR, state=QueueState.READY)
    flagged_ids = set(flagged.values_list("example_id", flat=True))
    assert flagged_ids and flagged_ids <= {example.pk for example in labeled}
    assert {example.pk for example in wrong} & flagged_ids
    assert build.composition["written"]["re_review"] == len(flagged_ids)
    # The mistakes also seed hard negatives: unlabeled texts most like the examples the model gets wrong.
    hard = QueueItem.objects.filter(project=project, reason_code=QueueReason.HARD_NEGATIVE, state=QueueState.READY)
    assert hard.exists() and all(item.reason.startswith("Hard negative: like a labeled example") for item in hard)
    assert all(item.reason.startswith("Possible label error") for item in flagged)
    # The first annotator never gets their own label back to check...
    seen_by_first = set()
    while (claim := labeling_services.queue_claim_next(project=project, user=users["annotator"])) is not None:
        if claim.item.example_id in seen_by_first:
            break  # skipped items come back once everything else was offered: all of it was seen
        seen_by_first.add(claim.item.example_id)
        labeling_services.queue_release(user=users["annotator"], lease_id=claim.item.lease_id)
    assert len(seen_by_first) == 200 and not seen_by_first & flagged_ids
    # ...a second one does, first (they are in the slice's front).
    second = make_user("second")
    labeling_services.member_add(project=project, username=second.username, role="annotator")
    served = []
    for _ in range(40):
        claim = labeling_services.queue_claim_next(project=project, user=second)
        served.append(claim.item.example_id)
        labeling_services.queue_release(user=second, lease_id=claim.item.lease_id)
    assert flagged_ids <= set(served)


def test_a_new_annotator_starts_with_the_easiest_curriculum_items(project, users, make_user):
    _project_with_model(project, users)
    _set(project, "labeling", curriculum_items=3)
    _set(project, "queue", slice_size=20)
    build = _rebuild(project)
    assert build.composition["curriculum"] > 0
    newcomer = make_user("newcomer")
    labeling_services.member_add(project=project, username=newcomer.username, role="annotator")
    eases = []
    for _ in range(3):
        claim = labeling_services.queue_claim_next(project=project, user=newcomer)
        assert claim.item.reason_code == QueueReason.CURRICULUM, claim.item.reason
        eases.append(claim.item.score)
        labeling_services.annotation_submit(
            user=newcomer, example=claim.item.example, label="ham", lease_id=claim.item.lease_id
        )
    assert eases == sorted(eases, reverse=True)
    # After three labels the newcomer gets the ranked slice like everyone else.
    claim = labeling_services.queue_claim_next(project=project, user=newcomer)
    assert claim.item.priority >= RANKED_FLOOR


def test_feedback_examples_have_their_own_source(project, users):
    _, pool, _ = _project_with_model(project, users)
    Example.objects.filter(pk__in=[example.pk for example in pool[:10]]).update(origin=ExampleOrigin.FEEDBACK)
    _set(project, "queue", slice_size=40)
    build = _rebuild(project)
    feedback = [item for item in _slice(project) if item.reason_code == QueueReason.FEEDBACK]
    # 10% of the slice, unless near duplicates among the ten ("…channel x0…", "…channel x3…") were dropped.
    assert len(feedback) == build.composition["picked"]["feedback"] >= 1
    assert build.composition["proposed"]["feedback"] == 10
    assert all(item.example_id in {example.pk for example in pool[:10]} for item in feedback)
    assert all(item.reason.startswith("Feedback: a production prediction") for item in feedback)


def test_an_empty_queue_rebuild_says_so(project, users):
    build = _rebuild(project)
    assert build.message == MESSAGE_EMPTY and build.pool_size == 0


def test_requests_are_single_flight_and_a_running_build_gets_one_follow_up(project, users):
    first = services.queue_build_request(project=project, trigger=QueueBuildTrigger.API)
    again = services.queue_build_request(project=project, trigger=QueueBuildTrigger.API)
    assert again.pk == first.pk and QueueBuild.objects.count() == 1
    assert services.queue_build_claim(build_id=first.pk)
    joined = services.queue_build_request(project=project, trigger=QueueBuildTrigger.MODEL)
    assert joined.pk == first.pk and joined.follow_up
    QueueBuild.objects.filter(pk=first.pk).update(state=JobState.QUEUED)
    services.queue_build_execute(build_id=first.pk)
    assert QueueBuild.objects.filter(project=project, state=JobState.QUEUED).count() == 1


def test_the_sweeper_requeues_a_build_whose_worker_died(project, users):
    build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.API)
    services.queue_build_claim(build_id=build.pk)
    QueueBuild.objects.filter(pk=build.pk).update(attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.queue_builds_sweep() == 1
    build.refresh_from_db()
    assert build.state == JobState.QUEUED and build.message == ERROR_WORKER_LOST.format(attempt=1, limit=MAX_ATTEMPTS)


def test_queue_settings_are_validated():
    assert queue_settings_parse({}).quotas()["exploration"] == 0.1
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        queue_settings_parse({"uncertainty": "coin flip"})
    with pytest.raises(ValueError, match="At least one source"):
        queue_settings_parse({f"quota_{name}": 0.0 for name in queue_settings_parse({}).quotas()})
    with pytest.raises(ValueError, match="slice_size must be between"):
        queue_settings_parse({"slice_size": 5})


@pytest.mark.django_db(transaction=True)
def test_claims_never_find_the_queue_empty_while_a_slice_is_swapped_in(project, users):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers: a claim simply waits for the rebuild's commit")
    _pool(project, 5)
    items = [
        labeling_services.SliceItem(example_id=row, reason_code=QueueReason.UNCERTAIN, reason="r", score=0.5)
        for row in QueueItem.objects.filter(project=project).values_list("example_id", flat=True)
    ]
    swapped = threading.Event()
    release = threading.Event()

    def rebuild_holding_its_transaction() -> None:
        try:
            with transaction.atomic():
                labeling_services.queue_slice_replace(project=project, items=items, model_number=None)
                swapped.set()  # every ready row is now locked by this transaction
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=rebuild_holding_its_transaction)
    thread.start()
    assert swapped.wait(10)
    result = {}

    def claim() -> None:
        try:
            result["claim"] = labeling_services.queue_claim_next(project=project, user=users["annotator"])
        finally:
            connection.close()

    claimer = threading.Thread(target=claim)
    claimer.start()
    time.sleep(0.5)
    assert claimer.is_alive()  # it waits for the rebuild's commit instead of answering "nothing left"
    release.set()
    thread.join(10)
    claimer.join(10)
    assert result["claim"] is not None and result["claim"].item.priority >= RANKED_FLOOR
