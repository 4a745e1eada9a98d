"""The embedding labeler: MiniLM similarity to label descriptions, mixed with a vote of labeled neighbours."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from models_app.ml.llm.common import (
    BAD_ENCODER_OUTPUT,
    LabelerError,
    LabelerResult,
    LabelSpec,
    ProgressCallback,
    Shot,
    _check_few_shot,
    _check_fraction,
    _check_labels,
    _check_number,
    _check_positive_int,
    _softmax,
)

MINILM_MODEL = "all-MiniLM-L6-v2"
# Texts embedded per encoder call by the embedding labeler, so progress is reported as it goes.
EMBEDDING_CHUNK = 256

Encoder = Callable[[Sequence[str]], np.ndarray]


def _minilm_encoder(threads: int | None) -> Encoder:
    """Return the MiniLM featurizer's transform as an encoder of unit vectors."""
    from models_app.ml.featurizers import MiniLMFeaturizer

    return MiniLMFeaturizer(threads=threads).transform


@dataclass(frozen=True)
class EmbeddingLabeler:
    """Label by embedding similarity: texts against label descriptions, mixed with a vote of labeled neighbours.

    Zero shot: ``p0 = softmax(cos(text, "name: description") / temperature)`` over the labels.
    Neighbours: each shot of a text votes for its label with weight ``max(cos(text, shot), 0)`` (equal weights if
    all are zero), giving ``p_knn``. Shots whose label is not in the label set are ignored. The mix is
    ``p = (1 - w) p0 + w p_knn`` with ``w = n / (n + k)`` for ``n`` usable shots, or ``w = neighbour_weight`` when set;
    texts without shots keep ``p0``.

    ``encoder`` maps texts to unit vectors (tests inject one); by default it is all-MiniLM-L6-v2.
    """

    name: ClassVar[str] = "embedding"

    k: float = 10
    temperature: float = 0.05
    neighbour_weight: float | None = None
    threads: int | None = None
    encoder: Encoder | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Validate eagerly, so a bad spec is refused before any text is embedded."""
        _check_number("k", self.k, positive=False)
        _check_number("temperature", self.temperature)
        if self.neighbour_weight is not None:
            _check_fraction("neighbour_weight", self.neighbour_weight)
        if self.threads is not None:
            _check_positive_int("threads", self.threads)

    def params(self) -> dict[str, Any]:
        """Return the params as JSON values, which ``labeler_from_spec`` turns back into this labeler."""
        return {"k": self.k, "temperature": self.temperature, "neighbour_weight": self.neighbour_weight}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into rows of unit vectors (MiniLM cleans them), checking there is one row per text."""
        encoder = self.encoder or _minilm_encoder(self.threads)
        vectors = np.asarray(encoder(list(texts)), dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise LabelerError(BAD_ENCODER_OUTPUT.format(shape=vectors.shape, count=len(texts)))
        return vectors

    def predict_proba(
        self,
        texts: Sequence[str],
        labels: Sequence[LabelSpec],
        few_shot: Sequence[Sequence[Shot]] | None = None,
        progress: ProgressCallback | None = None,
    ) -> LabelerResult:
        """Return label probabilities per text from label similarity, mixed with the shots' vote when given."""
        names = _check_labels(labels)
        shots_per_text = _check_few_shot(texts, few_shot)
        details: dict[str, Any] = {"temperature": self.temperature, "with_neighbours": 0, "unknown_shot_labels": 0}
        result = LabelerResult(np.zeros((0, len(names))), self.name, self.model_name, "", details)
        if not texts:
            return result
        label_vectors = self._encode(
            [f"{label.name}: {label.description}" if label.description else label.name for label in labels]
        )
        chunks = []
        for start in range(0, len(texts), EMBEDDING_CHUNK):
            chunks.append(self._encode(texts[start : start + EMBEDDING_CHUNK]))
            if progress is not None:
                progress(min(start + EMBEDDING_CHUNK, len(texts)), len(texts))
        text_vectors = np.vstack(chunks)
        proba = _softmax(text_vectors @ label_vectors.T / self.temperature, axis=1)

        column = {name: index for index, name in enumerate(names)}
        shot_texts = sorted({shot.text for shots in shots_per_text for shot in shots if shot.label in column})
        details["unknown_shot_labels"] = sum(shot.label not in column for shots in shots_per_text for shot in shots)
        if shot_texts:
            shot_vectors = self._encode(shot_texts)
            shot_row = {text: index for index, text in enumerate(shot_texts)}
            for row, shots in enumerate(shots_per_text):
                usable = [shot for shot in shots if shot.label in column]
                if not usable:
                    continue
                similarity = shot_vectors[[shot_row[shot.text] for shot in usable]] @ text_vectors[row]
                weights = np.clip(similarity, 0.0, None)
                if weights.sum() <= 0:
                    weights = np.ones(len(usable))
                vote = np.zeros(len(names))
                np.add.at(vote, [column[shot.label] for shot in usable], weights)
                vote /= vote.sum()
                mix = (
                    self.neighbour_weight if self.neighbour_weight is not None else len(usable) / (len(usable) + self.k)
                )
                proba[row] = (1.0 - mix) * proba[row] + mix * vote
                details["with_neighbours"] += 1
        return LabelerResult(proba, self.name, self.model_name, "", details)

    @property
    def model_name(self) -> str:
        """Name the encoder as stored with each label."""
        return MINILM_MODEL if self.encoder is None else "custom-encoder"
