"""Invariants of the data model hold in the database itself, not only in the services."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from labeling.models import Annotation, AnnotationKind, Example, Label, Membership

pytestmark = pytest.mark.django_db


def violates(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


def test_content_hash_is_unique_per_project(project, other_project):
    Example.objects.create(project=project, text="a", content_hash="h")
    assert violates(lambda: Example.objects.create(project=project, text="b", content_hash="h"))
    assert not violates(lambda: Example.objects.create(project=other_project, text="a", content_hash="h"))


def test_examples_need_text_and_a_known_origin(project):
    assert violates(lambda: Example.objects.create(project=project, text="", content_hash="x"))
    assert violates(lambda: Example.objects.create(project=project, text="t", content_hash="y", origin="scraped"))


def test_annotations_need_an_author_or_a_named_labeler(project, make_user):
    example = Example.objects.create(project=project, text="a", content_hash="h")
    label = project.labels.first()
    assert violates(lambda: Annotation.objects.create(example=example, label=label, kind=AnnotationKind.LLM))
    assert not violates(
        lambda: Annotation.objects.create(example=example, label=label, kind="llm", labeler_name="smollm2")
    )
    user = make_user("ann")
    assert not violates(lambda: Annotation.objects.create(example=example, label=label, kind="human", author=user))


def test_annotation_confidence_kind_and_status_are_checked(project):
    example = Example.objects.create(project=project, text="a", content_hash="h")
    label = project.labels.first()

    def make(**fields):
        return lambda: Annotation.objects.create(example=example, label=label, labeler_name="x", **fields)

    assert violates(make(kind="llm", confidence=1.5))
    assert violates(make(kind="llm", confidence=-0.1))
    assert violates(make(kind="robot"))
    assert violates(make(kind="llm", status="maybe"))
    assert not violates(make(kind="llm", confidence=0.7))


def test_an_imported_label_is_stored_once_per_labeler(project):
    example = Example.objects.create(project=project, text="a", content_hash="h")
    label = project.labels.first()
    Annotation.objects.create(example=example, label=label, kind="imported", labeler_name="import")
    assert violates(
        lambda: Annotation.objects.create(example=example, label=label, kind="imported", labeler_name="import")
    )


def test_label_names_and_shortcuts_are_unique_per_project(project):
    assert violates(lambda: Label.objects.create(project=project, name="spam"))
    assert violates(lambda: Label.objects.create(project=project, name="other", shortcut="1"))
    assert not violates(lambda: Label.objects.create(project=project, name="third", shortcut=""))
    assert not violates(lambda: Label.objects.create(project=project, name="fourth", shortcut=""))


def test_one_membership_per_user_and_project_with_a_valid_role(project, make_user):
    user = make_user("m")
    Membership.objects.create(project=project, user=user, role="annotator")
    assert violates(lambda: Membership.objects.create(project=project, user=user, role="reviewer"))
    other = make_user("n")
    assert violates(lambda: Membership.objects.create(project=project, user=other, role="owner"))
