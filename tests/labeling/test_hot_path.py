"""The claim and submit paths' hand-written statements: same rows, same permissions, fewer round trips."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling import rows, selectors, services
from labeling.models import Annotation, ApiToken, Example, Project, QueueItem
from labeling.selectors import ProjectAccessDenied

from .factories import run_import

pytestmark = pytest.mark.django_db

ON_POSTGRES = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL only")


def _queued(project, count=3):
    run_import(project, "text,date,meta_source\n" + "".join(f"row {n},2024-02-0{n + 1},feed\n" for n in range(count)))
    return list(QueueItem.objects.filter(project=project).order_by("id"))


def test_rows_build_the_same_instances_as_the_orm(project, users):
    items = _queued(project)
    claim = services.queue_claim_next(project=project, user=users["annotator"])
    orm_item = QueueItem.objects.get(pk=claim.item.pk)
    orm_example = Example.objects.get(pk=claim.item.example_id)
    for model, expected in ((QueueItem, orm_item), (Example, orm_example)):
        row = rows.fetch_one(
            f"SELECT {rows.columns(model, 't')} FROM {model._meta.db_table} t WHERE t.id = %s", [expected.pk]
        )
        built = rows.from_row(model, row)
        for field in model._meta.concrete_fields:
            assert getattr(built, field.attname) == getattr(expected, field.attname), field.name
        assert not built._state.adding
    # Typed values come back typed on every database: UUIDs, aware datetimes, JSON objects.
    assert isinstance(claim.item.lease_id, uuid.UUID)
    assert claim.item.leased_at.tzinfo is not None
    assert claim.item.example.meta == orm_example.meta
    assert len(items) == 3


def test_rows_insert_writes_every_column_and_sets_the_key(project, users):
    example = Example.objects.create(project=project, text="x", observed_at=timezone.now(), content_hash="h1")
    label = project.labels.get(name="spam")
    annotation = Annotation(
        example=example, label=label, author=users["annotator"], kind="human", lease_id=uuid.uuid4()
    )
    rows.insert(annotation)
    stored = Annotation.objects.get(pk=annotation.pk)
    assert (stored.example_id, stored.label_id, stored.author_id, stored.lease_id) == (
        example.pk,
        label.pk,
        users["annotator"].pk,
        annotation.lease_id,
    )
    assert stored.status == annotation.status and stored.created_at == annotation.created_at


def test_token_authentication_reads_admin_flag_and_writes_last_use_once_a_minute(users):
    token, raw = services.api_token_create(user=users["global_admin"])
    now = timezone.now()
    user = services.api_token_authenticate(raw=raw, now=now)
    assert user.pk == users["global_admin"].pk and user._flywheel_is_admin is True
    token.refresh_from_db()
    assert token.last_used_at == now
    later = now + timedelta(seconds=30)
    with CaptureQueriesContext(connection) as queries:
        services.api_token_authenticate(raw=raw, now=later)
    assert len(queries) == 1, "within a minute the token is only read"
    token.refresh_from_db()
    assert token.last_used_at == now
    services.api_token_authenticate(raw=raw, now=now + timedelta(seconds=61))
    token.refresh_from_db()
    assert token.last_used_at == now + timedelta(seconds=61)

    _, annotator_raw = services.api_token_create(user=users["annotator"])
    assert services.api_token_authenticate(raw=annotator_raw)._flywheel_is_admin is False
    users["annotator"].is_active = False
    users["annotator"].save()
    assert services.api_token_authenticate(raw=annotator_raw) is None
    ApiToken.objects.filter(user=users["global_admin"]).update(revoked_at=now)
    assert services.api_token_authenticate(raw=raw) is None


def test_project_and_example_reads_check_membership_in_the_same_statement(project, other_project, users):
    _queued(project, 1)
    example = Example.objects.get(project=project)
    for user in users.values():
        user._flywheel_is_admin = user.username == "boss"  # as token authentication leaves it
    with CaptureQueriesContext(connection) as queries:
        found, role = selectors.project_get_for_user(user=users["reviewer"], slug="reviews", minimum_role="annotator")
        loaded = selectors.example_get_for_user(
            user=users["annotator"], example_id=example.pk, minimum_role="annotator"
        )
    assert len(queries) == 2
    assert (found.pk, role) == (project.pk, "reviewer")
    assert isinstance(found, Project) and found.settings == project.settings
    assert loaded.pk == example.pk and loaded.project.pk == project.pk
    with pytest.raises(ProjectAccessDenied):
        selectors.project_get_for_user(user=users["annotator"], slug="reviews", minimum_role="reviewer")
    with pytest.raises(Http404):
        selectors.project_get_for_user(user=users["outsider"], slug="reviews", minimum_role="annotator")
    with pytest.raises(Http404):
        selectors.example_get_for_user(user=users["outsider"], example_id=example.pk, minimum_role="annotator")
    with pytest.raises(Http404):
        selectors.example_get_for_user(user=users["annotator"], example_id=example.pk + 999, minimum_role="annotator")
    # A global admin who is not a member still gets in, as admin.
    assert selectors.project_get_for_user(user=users["global_admin"], slug="other", minimum_role="admin")[1] == "admin"


@ON_POSTGRES
def test_claim_and_submit_statements_are_prepared_once_per_connection(project, users):
    for _ in range(4):
        _queued(project, 0)
    run_import(project, "text\n" + "".join(f"item {n}\n" for n in range(6)))
    user = users["annotator"]
    for _ in range(4):
        item = services.queue_claim_next(project=project, user=user).item
        services.annotation_submit(user=user, example=item.example, label="spam", lease_id=item.lease_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("UPDATE labeling_queueitem" in text and "SKIP LOCKED" in text for text in prepared), prepared
    assert any("INSERT INTO labeling_annotation" in text for text in prepared), prepared
    # The ORM's own queries keep binding on the client: nothing else is prepared.
    assert not any('"labeling_project"."slug"' in text for text in prepared)


@ON_POSTGRES
@pytest.mark.django_db(transaction=True)
def test_a_claim_commits_without_waiting_for_the_disk_but_a_label_waits(project, users):
    run_import(project, "text\none\ntwo\nthree\n")
    user = users["annotator"]
    with CaptureQueriesContext(connection) as queries:
        item = services.queue_claim_next(project=project, user=user).item
    assert any("set_config('synchronous_commit', 'off', true)" in query["sql"] for query in queries)
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on", "SET LOCAL must end with the claim's transaction"
    with CaptureQueriesContext(connection) as queries:
        services.annotation_submit(user=user, example=item.example, label="ham", lease_id=item.lease_id)
    assert not any("synchronous_commit" in query["sql"] for query in queries)
    # Inside a caller's transaction (which may write labels too) the claim leaves the commit alone.
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        services.queue_claim_next(project=project, user=user)
    assert not any("synchronous_commit" in query["sql"] for query in queries)


@ON_POSTGRES
def test_a_claim_is_two_statements_that_bring_the_item_its_example_and_the_label_names(project, users):
    run_import(project, "text\none\ntwo\n")
    with CaptureQueriesContext(connection) as queries:
        claim = services.queue_claim_next(project=project, user=users["annotator"])
    statements = [query["sql"] for query in queries if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    # The held-lease probe (which also turns off the commit's disk wait), then the lease with its row.
    assert len(statements) == 2, statements
    assert claim.labels == selectors.label_names(project=project)
    assert claim.item.state == "leased" and claim.item.lease_owner_id == users["annotator"].pk
    assert claim.item.example.text in {"one", "two"} and claim.item.example.pk == claim.item.example_id
    stored = QueueItem.objects.get(pk=claim.item.pk)
    assert (stored.lease_id, stored.lease_expires_at) == (claim.item.lease_id, claim.item.lease_expires_at)
    # A claim that hands back a held lease reads the labels separately (the API does), and stays the same item.
    again = services.queue_claim_next(project=project, user=users["annotator"])
    assert again.resumed and again.item.pk == claim.item.pk and again.labels is None
