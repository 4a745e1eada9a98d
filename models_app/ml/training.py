"""Training, evaluation and safe artifact files for the text classifiers the flywheel retrains.

* Hashed counts (sparse) train a ``Pipeline(TfidfTransformer(sublinear_tf=True), LogisticRegression)``: the idf
  weights are learned from the training rows only, inside the model, so the holdout never leaks into them and the
  stored features stay raw counts.
* Dense embeddings (unit vectors already) train a ``LogisticRegression`` directly.
* Logistic regression uses the lbfgs solver with the multinomial loss, which handles two or more classes alike and
  gives the same coefficients for the same rows, config and thread count.

Artifacts are skops files, never pickles. ``save_artifact`` returns the sha256 of the bytes written, to be stored
next to the path; ``load_artifact`` reads the file once, refuses it if the checksum differs, asks skops which types
it would have to trust and refuses any outside ``TRUSTED_ARTIFACT_TYPES``, then loads from the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from models_app.ml.metrics import Report, classification_report

ALGORITHMS = ("logreg",)

# Types skops does not trust by default but our own pipelines contain; anything else in a file is refused.
TRUSTED_ARTIFACT_TYPES = frozenset(
    {
        "numpy.dtype",
    }
)

UNKNOWN_ALGORITHM = "Unknown algorithm {name!r}: choose one of " + ", ".join(ALGORITHMS) + "."
ROWS_MISMATCH = "X has {rows} rows but y has {labels} labels."
WEIGHTS_MISMATCH = "sample_weight has {weights} entries but X has {rows} rows."
ONE_CLASS = "Training needs at least 2 classes, got {count}."
MODEL_CLASS_NOT_IN_LABELS = "The model predicts labels that are not in `labels`: {labels}."
ARTIFACT_MISSING = "The model artifact file is missing or unreadable."
ARTIFACT_CHECKSUM_MISMATCH = "The model artifact does not match its recorded checksum; refusing to load it."
ARTIFACT_UNTRUSTED_TYPES = "The model artifact contains types that are not on the allow-list: {types}."
ARTIFACT_UNREADABLE = "The model artifact is not a readable skops file."
ARTIFACT_WRONG_KIND = "The model artifact does not hold a Flywheel classifier."


class ArtifactError(Exception):
    """Raised when a model artifact cannot be trusted or read; the message says which."""


@dataclass(frozen=True)
class TrainingConfig:
    """How to fit a classifier; stored with the training run so it can be repeated exactly.

    ``C`` is the inverse L2 strength: 4.0 suits tf-idf rows, whose many rare n-grams need room to count.
    ``class_weight="balanced"`` keeps a rare class from being ignored; None weighs every row alike.
    """

    algorithm: str = "logreg"
    C: float = 4.0
    class_weight: str | None = "balanced"
    max_iter: int = 1000
    seed: int = 0
    tol: float = 1e-4

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON values, to store on the training run."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Rebuild a config stored with ``to_dict``."""
        return cls(**data)


def _classifier(config: TrainingConfig) -> Any:
    """Build the logistic regression both model shapes end in."""
    from sklearn.linear_model import LogisticRegression

    if config.algorithm not in ALGORITHMS:
        raise ValueError(UNKNOWN_ALGORITHM.format(name=config.algorithm))
    return LogisticRegression(
        C=config.C,
        class_weight=config.class_weight,
        max_iter=config.max_iter,
        tol=config.tol,
        solver="lbfgs",
        random_state=config.seed,
    )


def train_model(
    X: sp.spmatrix | np.ndarray,
    y: Sequence[str],
    *,
    sparse: bool,
    config: TrainingConfig,
    sample_weight: Sequence[float] | np.ndarray | None = None,
) -> Any:
    """Fit a classifier on feature rows and their labels; ``sparse`` says the rows are raw hashed counts."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.pipeline import Pipeline

    rows = X.shape[0]
    if len(y) != rows:
        raise ValueError(ROWS_MISMATCH.format(rows=rows, labels=len(y)))
    n_classes = len(set(y))
    if n_classes < 2:
        raise ValueError(ONE_CLASS.format(count=n_classes))
    labels = np.asarray(list(y), dtype=str)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (rows,):
            raise ValueError(WEIGHTS_MISMATCH.format(weights=weights.shape[0], rows=rows))

    if sparse:
        model = Pipeline([("tfidf", TfidfTransformer(sublinear_tf=True)), ("classifier", _classifier(config))])
        fit_params = {} if weights is None else {"classifier__sample_weight": weights}
        model.fit(sp.csr_matrix(X), labels, **fit_params)
    else:
        model = _classifier(config)
        model.fit(np.asarray(X, dtype=np.float32), labels, sample_weight=weights)
    return model


def predict_proba(model: Any, X: sp.spmatrix | np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Return class probabilities with one column per label in ``labels`` order, zero for labels the model lacks."""
    labels = list(labels)
    index = {label: position for position, label in enumerate(labels)}
    classes = [str(label) for label in model.classes_]
    missing = [label for label in classes if label not in index]
    if missing:
        raise ValueError(MODEL_CLASS_NOT_IN_LABELS.format(labels=", ".join(map(repr, missing))))
    proba = np.zeros((X.shape[0], len(labels)), dtype=np.float64)
    proba[:, [index[label] for label in classes]] = model.predict_proba(X)
    return proba


def evaluate_model(
    model: Any,
    X: sp.spmatrix | np.ndarray,
    y_true: Sequence[str],
    labels: Sequence[str],
    train_majority: str,
) -> Report:
    """Score a model on holdout rows; the prediction is the most probable label, so accuracy and ECE agree."""
    labels = list(labels)
    proba = predict_proba(model, X, labels)
    y_pred = [labels[position] for position in proba.argmax(axis=1).tolist()]
    return classification_report(y_true, y_pred, proba, labels, train_majority=train_majority)


def save_artifact(model: Any, path: str | os.PathLike[str]) -> str:
    """Write the model as a skops file atomically and return the sha256 hex digest to record with it."""
    import skops.io

    data = skops.io.dumps(model)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def load_artifact(path: str | os.PathLike[str], sha256: str) -> Any:
    """Load a model saved by ``save_artifact`` only if its bytes match ``sha256`` and hold only allowed types."""
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ArtifactError(ARTIFACT_MISSING) from error
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), sha256.lower()):
        raise ArtifactError(ARTIFACT_CHECKSUM_MISMATCH)
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as error:
        raise ArtifactError(ARTIFACT_UNREADABLE) from error
    refused = sorted(set(untrusted) - TRUSTED_ARTIFACT_TYPES)
    if refused:
        raise ArtifactError(ARTIFACT_UNTRUSTED_TYPES.format(types=", ".join(refused)))
    try:
        model = skops.io.loads(data, trusted=untrusted)
    except Exception as error:
        raise ArtifactError(ARTIFACT_UNREADABLE) from error
    if not isinstance(model, Pipeline | LogisticRegression):
        raise ArtifactError(ARTIFACT_WRONG_KIND)
    return model
