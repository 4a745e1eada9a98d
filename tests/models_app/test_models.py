"""Invariants of the models room's tables are database constraints: one published version, one active run."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from models_app.models import FeatureJob, ModelVersion, ModelVersionStatus, TrainingRun, TrainingTrigger

pytestmark = pytest.mark.django_db


def _version(project, number: int, status: str = ModelVersionStatus.EVALUATED) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        featurizer="hashing",
        feature_version="hashing-0123456789abcdef",
        algorithm="logreg",
        seed=7,
        status=status,
    )


def test_only_one_version_per_project_is_published(project, other_project):
    _version(project, 1, ModelVersionStatus.PUBLISHED)
    _version(project, 2, ModelVersionStatus.RETIRED)
    _version(other_project, 1, ModelVersionStatus.PUBLISHED)
    with pytest.raises(IntegrityError), transaction.atomic():
        _version(project, 3, ModelVersionStatus.PUBLISHED)
    with pytest.raises(IntegrityError), transaction.atomic():
        _version(project, 2)


def test_one_active_training_run_per_project(project, other_project):
    first = TrainingRun.objects.create(project=project, trigger=TrainingTrigger.LABELS)
    TrainingRun.objects.create(project=other_project, trigger=TrainingTrigger.BUTTON)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(project=project, trigger=TrainingTrigger.SCHEDULE)
    TrainingRun.objects.filter(pk=first.pk).update(state="succeeded")
    second = TrainingRun.objects.create(project=project, trigger=TrainingTrigger.API)
    version = _version(project, 1)
    ModelVersion.objects.filter(pk=version.pk).update(training_run=second)
    TrainingRun.objects.filter(pk=second.pk).update(model_version=version)
    second.refresh_from_db()
    assert second.model_version_id == version.pk and not second.follow_up and second.labels_at_start == 0


@pytest.mark.parametrize("model", [TrainingRun, FeatureJob])
def test_progress_stays_between_zero_and_one(project, model):
    extra = {"trigger": TrainingTrigger.LABELS} if model is TrainingRun else {"featurizer": "hashing"}
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.create(project=project, progress=1.5, **extra)
