"""Training, evaluation and safe artifact files for the text classifiers the flywheel retrains.

Every model is an L2-regularised logistic regression (``algorithm="logreg"``); the solver depends on the rows:

* Hashed counts (sparse) train a ``Pipeline([("tfidf", TfidfTransformer(sublinear_tf=True)), ("classifier", …)])``.
  The idf weights are learned from the training rows only, inside the model, so the holdout never leaks into them
  and the stored features stay raw counts. The classifier is ``SGDClassifier(loss="log_loss")`` with
  ``alpha = 1 / (C * n_rows)``, the same objective as ``LogisticRegression(C)`` up to a constant factor, one-vs-rest
  for three or more classes. Measured on one core, 100k texts of hashed word and char n-grams (2**19 columns,
  about 300 non-zeros a row): lbfgs needed 40 s to 120 s and liblinear one-vs-rest 42 s to 133 s, while SGD
  trains in about 10 s with the same holdout accuracy. SGD stops when the training loss stops improving by
  ``SGD_TOL`` for 5 epochs, or after an epoch budget of about ``SGD_NNZ_BUDGET`` non-zeros visited, whichever is
  first, so a retrain stays bounded however many labels arrive.
* Dense embeddings (unit vectors already, 384 columns) train a ``LogisticRegression`` with lbfgs directly; that is
  fast at any realistic size. ``LBFGS_TOL`` is small on purpose: scikit-learn averages the loss over rows, so with
  balanced classes the starting gradient can already be below 1e-4 and lbfgs would stop after zero iterations.

``TrainingConfig.solver`` can force ``"sgd"`` or ``"lbfgs"`` for either shape. A fit is deterministic for the same
rows, config and thread count. Hitting an iteration limit is by design, so ``ConvergenceWarning`` is silenced and
reported instead by ``describe_model`` (``iterations`` against ``iteration_limit``).

Artifacts are skops files, never pickles. ``save_artifact`` returns the sha256 of the bytes written, to be stored
next to the path; ``load_artifact`` reads the file once, refuses it if the checksum differs, asks skops which types
it would have to trust and refuses any outside ``TRUSTED_ARTIFACT_TYPES``, then loads from the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from models_app.ml.metrics import Report, classification_report

ALGORITHMS = ("logreg",)
SOLVERS = ("auto", "sgd", "lbfgs")

SGD_TOL = 1e-3
SGD_MIN_EPOCHS = 5
SGD_NNZ_BUDGET = 200_000_000
LBFGS_TOL = 1e-6

# Types skops does not trust by default that our artifacts may hold. Every type in the pipelines train_model builds
# (Pipeline, TfidfTransformer, SGDClassifier, LogisticRegression, numpy arrays) is trusted by skops itself, so the
# list is empty: a file naming any other type is refused, and a new entry is a reviewed decision.
TRUSTED_ARTIFACT_TYPES: frozenset[str] = frozenset()

UNKNOWN_ALGORITHM = "Unknown algorithm {name!r}: choose one of " + ", ".join(ALGORITHMS) + "."
UNKNOWN_SOLVER = "Unknown solver {name!r}: choose one of " + ", ".join(SOLVERS) + "."
ROWS_MISMATCH = "X has {rows} rows but y has {labels} labels."
WEIGHTS_MISMATCH = "sample_weight needs one weight per row: X has {rows} rows."
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
    ``max_iter`` caps lbfgs iterations or SGD epochs. ``solver="auto"`` is SGD for sparse rows, lbfgs for dense.
    """

    algorithm: str = "logreg"
    C: float = 4.0
    class_weight: str | None = "balanced"
    max_iter: int = 1000
    seed: int = 0
    solver: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON values, to store on the training run."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Rebuild a config stored with ``to_dict``."""
        return cls(**data)


def resolve_solver(config: TrainingConfig, *, sparse: bool) -> str:
    """Return the solver a fit will use, so the run can record it before training starts."""
    if config.algorithm not in ALGORITHMS:
        raise ValueError(UNKNOWN_ALGORITHM.format(name=config.algorithm))
    if config.solver not in SOLVERS:
        raise ValueError(UNKNOWN_SOLVER.format(name=config.solver))
    if config.solver == "auto":
        return "sgd" if sparse else "lbfgs"
    return config.solver


def sgd_epoch_limit(config: TrainingConfig, nonzeros: int) -> int:
    """Cap epochs so one fit visits about SGD_NNZ_BUDGET non-zeros, keeping big retrains inside their time budget."""
    return min(config.max_iter, max(SGD_MIN_EPOCHS, math.ceil(SGD_NNZ_BUDGET / max(nonzeros, 1))))


def _classifier(config: TrainingConfig, solver: str, n_rows: int, nonzeros: int) -> Any:
    """Build the logistic regression for the chosen solver, with the same regularisation either way."""
    if solver == "sgd":
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(
            loss="log_loss",
            penalty="l2",
            alpha=1.0 / (config.C * n_rows),
            max_iter=sgd_epoch_limit(config, nonzeros),
            tol=SGD_TOL,
            class_weight=config.class_weight,
            random_state=config.seed,
        )
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=config.C,
        class_weight=config.class_weight,
        max_iter=config.max_iter,
        tol=LBFGS_TOL,
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
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.pipeline import Pipeline

    solver = resolve_solver(config, sparse=sparse)
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
            raise ValueError(WEIGHTS_MISMATCH.format(rows=rows))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if sparse:
            X = sp.csr_matrix(X)
            classifier = _classifier(config, solver, rows, X.nnz)
            model = Pipeline([("tfidf", TfidfTransformer(sublinear_tf=True)), ("classifier", classifier)])
            fit_params = {} if weights is None else {"classifier__sample_weight": weights}
            model.fit(X, labels, **fit_params)
        else:
            X = np.asarray(X, dtype=np.float32)
            model = _classifier(config, solver, rows, X.size)
            model.fit(X, labels, sample_weight=weights)
    return model


def _final_step(model: Any) -> Any:
    """Return the classifier at the end of a pipeline, or the model itself."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


def describe_model(model: Any) -> dict[str, Any]:
    """Summarise a fitted model as JSON values: solver, iterations against their limit, classes and input width."""
    classifier = _final_step(model)
    iterations = np.max(classifier.n_iter_)
    return {
        "estimator": type(classifier).__name__,
        "solver": "lbfgs" if type(classifier).__name__ == "LogisticRegression" else "sgd",
        "tfidf": hasattr(model, "steps"),
        "iterations": int(iterations),
        "iteration_limit": int(classifier.max_iter),
        "classes": [str(label) for label in model.classes_],
        "n_features": int(model.n_features_in_),
    }


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

    return _write_atomically(skops.io.dumps(model), path)


def _write_atomically(data: bytes, path: str | os.PathLike[str]) -> str:
    """Write bytes to a temporary file beside `path`, flush them to disk, rename it over `path`; return the sha256."""
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
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.pipeline import Pipeline

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ArtifactError(ARTIFACT_MISSING) from error
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest().encode(), sha256.lower().encode()):
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
    classifier = _final_step(model) if isinstance(model, Pipeline) else model
    if not isinstance(classifier, LogisticRegression | SGDClassifier):
        raise ArtifactError(ARTIFACT_WRONG_KIND)
    return model


SPLIT_MISSING = "The model's record of its training and holdout examples is missing or unreadable."
SPLIT_CHECKSUM_MISMATCH = "The model's split file does not match its recorded checksum; refusing to read it."


@dataclass(frozen=True)
class SplitRecord:
    """The example ids a model trained on, and its holdout's ids with their true labels."""

    train_ids: np.ndarray
    holdout_ids: np.ndarray
    holdout_labels: np.ndarray


def save_split(record: SplitRecord, path: str | os.PathLike[str]) -> str:
    """Write the split as an .npz of plain arrays (readable without pickle) and return its sha256."""
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        train_ids=np.asarray(record.train_ids, dtype=np.int64),
        holdout_ids=np.asarray(record.holdout_ids, dtype=np.int64),
        holdout_labels=np.asarray([str(label) for label in record.holdout_labels], dtype=np.str_),
    )
    return _write_atomically(buffer.getvalue(), path)


def load_split(path: str | os.PathLike[str], sha256: str) -> SplitRecord:
    """Read a split written by ``save_split`` if its bytes match ``sha256``; never unpickles."""
    import io

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ArtifactError(SPLIT_MISSING) from error
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest().encode(), sha256.lower().encode()):
        raise ArtifactError(SPLIT_CHECKSUM_MISMATCH)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return SplitRecord(
                train_ids=arrays["train_ids"],
                holdout_ids=arrays["holdout_ids"],
                holdout_labels=arrays["holdout_labels"],
            )
    except (ValueError, KeyError, OSError) as error:
        raise ArtifactError(SPLIT_MISSING) from error
