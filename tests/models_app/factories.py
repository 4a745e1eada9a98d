"""Builders for models-room tests: examples with chosen ids, small featurizers, and one that counts its texts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np

from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Example, Project
from models_app.ml.featurizers import HashingFeaturizer


def examples_create(project: Project, texts: Sequence[str], *, ids: Sequence[int] | None = None) -> list[Example]:
    """Insert examples in one statement; `ids` chooses their primary keys (to commit a low id after high ones)."""
    rows = [
        Example(
            project=project,
            text=text,
            content_hash=hashlib.sha256(text.encode()).hexdigest(),
            **({"pk": ids[index]} if ids is not None else {}),
        )
        for index, text in enumerate(texts)
    ]
    created = Example.objects.bulk_create(rows)
    if ids is None:
        created = list(Example.objects.filter(project=project, content_hash__in=[row.content_hash for row in rows]))
    return sorted(created, key=lambda example: example.pk)


def small_hashing(n_features: int = 256) -> HashingFeaturizer:
    """A hashing featurizer narrow enough to compare matrices cheaply."""
    return HashingFeaturizer(n_features=n_features, char_ngrams=None)


class FakeDenseFeaturizer:
    """A dense featurizer without a model: each text's vector comes from its SHA-256, so it is deterministic."""

    name: ClassVar[str] = "minilm"

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.sparse = False

    def params(self) -> dict[str, Any]:
        return {"fake_dim": self.dim}

    @property
    def version(self) -> str:
        return f"minilm-fake-{self.dim}"

    def transform(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[row] = np.random.default_rng(seed).standard_normal(self.dim, dtype=np.float32)
        if progress is not None:
            progress(len(texts), len(texts))
        return out


class CountingFeaturizer:
    """Wrap a featurizer and record every text it is asked to featurize."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.calls = 0

    name = property(lambda self: self.inner.name)
    version = property(lambda self: self.inner.version)
    dim = property(lambda self: self.inner.dim)
    sparse = property(lambda self: self.inner.sparse)

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def transform(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> Any:
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.transform(texts, progress)


def dense(matrix: Any) -> np.ndarray:
    """Return a dense ndarray of a sparse or dense matrix."""
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


SPAM = ["subscribe to my channel {n} free gift", "check out my music video {n} click here", "free money {n} visit"]
HAM = ["this song reminds me of summer {n}", "love the chorus, watched {n} times", "great video, the drums at {n}"]


def labeled_project(project, user, count=120, *, start=datetime(2024, 1, 1, tzinfo=UTC)):
    """Add `count` examples a day apart, alternating spam and ham, each labeled by `user`."""
    labels = {label.name: label for label in project.labels.all()}
    examples = []
    for number in range(count):
        text = (SPAM if number % 2 else HAM)[number % 3].format(n=f"{start:%Y}-{number}")
        examples.append(
            Example(
                project=project,
                text=text,
                observed_at=start + timedelta(days=number),
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
            )
        )
    hashes = [example.content_hash for example in examples]
    Example.objects.bulk_create(examples)
    examples = list(Example.objects.filter(project=project, content_hash__in=hashes).order_by("observed_at"))
    Annotation.objects.bulk_create(
        Annotation(
            example=example,
            label=labels["spam" if index % 2 else "ham"],
            author=user,
            kind=AnnotationKind.HUMAN,
            status=AnnotationStatus.SUBMITTED,
        )
        for index, example in enumerate(examples)
    )
    return examples


def train_version(project: Project) -> tuple[Any, Any]:
    """Run a training run in this process (the worker's code path); return its model version and the run."""
    from models_app import services
    from models_app.models import ModelVersion, TrainingTrigger

    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    run = services.training_run_execute(run_id=run.pk)
    assert run.state == "succeeded", run.message
    return ModelVersion.objects.get(pk=run.model_version_id), run


def shuffle_training_labels(project: Project, examples: Sequence[Example], share: float = 0.8, seed: int = 0) -> None:
    """Give the older examples random labels, keeping the newest (the holdout) true."""
    import random

    from labeling.models import Label

    rng = random.Random(seed)
    labels = list(Label.objects.filter(project=project))
    for example in examples[: int(len(examples) * share)]:
        Annotation.objects.filter(example=example).update(label=rng.choice(labels))
