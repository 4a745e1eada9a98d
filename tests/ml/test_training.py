"""Training: repeatable fits for sparse and dense rows, evaluation in label order, artifacts that refuse tampering."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline

from models_app.ml.featurizers import HashingFeaturizer
from models_app.ml.training import (
    ARTIFACT_CHECKSUM_MISMATCH,
    ARTIFACT_MISSING,
    ARTIFACT_WRONG_KIND,
    ONE_CLASS,
    SGD_MIN_EPOCHS,
    UNKNOWN_ALGORITHM,
    UNKNOWN_SOLVER,
    ArtifactError,
    TrainingConfig,
    describe_model,
    evaluate_model,
    load_artifact,
    predict_proba,
    resolve_solver,
    save_artifact,
    sgd_epoch_limit,
    train_model,
)

CLASS_WORDS = {
    "spam": ["subscribe", "channel", "free", "click", "link", "money"],
    "ham": ["love", "song", "voice", "beautiful", "memories", "lyrics"],
    "other": ["when", "where", "what", "year", "anyone", "still"],
}
FILLER = ["the", "a", "this", "is", "so", "my", "and", "it", "you", "to"]
FEATURIZER = HashingFeaturizer(n_features=2**14)


def synthetic_texts(size: int, seed: int) -> tuple[list[str], list[str]]:
    """Make three-class comments: a few class words mixed into filler, with a little label noise."""
    rng = np.random.default_rng(seed)
    labels = list(CLASS_WORDS)
    texts, y = [], []
    for _ in range(size):
        label = labels[int(rng.integers(0, 3))]
        words = list(rng.choice(CLASS_WORDS[label], size=2)) + list(rng.choice(FILLER, size=int(rng.integers(3, 9))))
        rng.shuffle(words)
        texts.append(" ".join(words))
        y.append(label if rng.random() > 0.05 else labels[int(rng.integers(0, 3))])
    return texts, y


@pytest.fixture(scope="module")
def sparse_data():
    texts, y = synthetic_texts(600, seed=1)
    return FEATURIZER.transform(texts[:500]), y[:500], FEATURIZER.transform(texts[500:]), y[500:]


@pytest.fixture(scope="module")
def fitted(sparse_data):
    X, y, _, _ = sparse_data
    return train_model(X, y, sparse=True, config=TrainingConfig())


def test_sparse_training_is_a_tfidf_pipeline_that_learns(sparse_data, fitted):
    _, _, X_test, y_test = sparse_data

    report = evaluate_model(fitted, X_test, y_test, ["ham", "spam", "other"], train_majority="ham")

    assert isinstance(fitted, Pipeline)
    assert [name for name, _ in fitted.steps] == ["tfidf", "classifier"]
    assert fitted.named_steps["tfidf"].sublinear_tf
    assert isinstance(fitted.named_steps["classifier"], SGDClassifier)
    assert sorted(fitted.classes_) == ["ham", "other", "spam"]
    assert report.labels == ["ham", "spam", "other"]
    assert report.size == 100
    assert report.accuracy > 0.85
    assert report.accuracy > report.majority_baseline["accuracy"] + 0.4


def test_training_is_deterministic_for_a_seed(sparse_data, fitted):
    X, y, X_test, _ = sparse_data

    again = train_model(X, y, sparse=True, config=TrainingConfig())

    assert np.array_equal(again.named_steps["classifier"].coef_, fitted.named_steps["classifier"].coef_)
    assert np.array_equal(again.predict_proba(X_test), fitted.predict_proba(X_test))


def dense_clusters(size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Make three Gaussian clusters of unit vectors, like sentence embeddings of three topics."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 32))
    codes = rng.integers(0, 3, size=size)
    X = centres[codes] + rng.normal(scale=0.8, size=(size, 32))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), [["ham", "spam", "other"][code] for code in codes]


def test_dense_training_is_a_plain_logistic_regression():
    X, y = dense_clusters(400, seed=2)

    model = train_model(X, y, sparse=False, config=TrainingConfig(C=1.0))
    again = train_model(X, y, sparse=False, config=TrainingConfig(C=1.0))

    assert isinstance(model, LogisticRegression)
    assert np.array_equal(model.coef_, again.coef_)
    assert evaluate_model(model, X, y, ["ham", "spam", "other"], train_majority="spam").accuracy > 0.9


def test_sample_weight_reaches_the_classifier():
    X, y = dense_clusters(300, seed=3)
    config = TrainingConfig(class_weight=None)
    weights = np.ones(300)
    weights[:100] = 0.0

    weighted = train_model(X, y, sparse=False, config=config, sample_weight=weights)
    dropped = train_model(X[100:], y[100:], sparse=False, config=config)

    assert np.allclose(weighted.coef_, dropped.coef_, atol=1e-3)
    sparse_X, sparse_y = FEATURIZER.transform(["free money", "love song"] * 10), ["spam", "ham"] * 10
    model = train_model(sparse_X, sparse_y, sparse=True, config=config, sample_weight=[1.0, 0.5] * 10)
    assert list(model.predict(FEATURIZER.transform(["free money"]))) == ["spam"]


def test_evaluation_maps_probabilities_onto_the_label_order():
    X, y = FEATURIZER.transform(["free money", "love song"] * 10), ["spam", "ham"] * 10
    model = train_model(X, y, sparse=True, config=TrainingConfig())

    proba = predict_proba(model, X[:2], ["other", "spam", "ham"])
    report = evaluate_model(model, X[:2], ["spam", "ham"], ["other", "spam", "ham"], train_majority="ham")

    assert proba.shape == (2, 3)
    assert np.all(proba[:, 0] == 0.0)
    assert proba[0, 1] > 0.5 and proba[1, 2] > 0.5
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert report.accuracy == 1.0
    assert report.per_class["other"]["support"] == 0
    with pytest.raises(ValueError):
        predict_proba(model, X[:2], ["spam"])


def test_bad_training_inputs_raise():
    X = FEATURIZER.transform(["a text", "another text", "third"])
    with pytest.raises(ValueError) as error:
        train_model(X, ["spam"] * 3, sparse=True, config=TrainingConfig())
    assert str(error.value) == ONE_CLASS.format(count=1)
    with pytest.raises(ValueError):
        train_model(X, ["spam", "ham"], sparse=True, config=TrainingConfig())
    with pytest.raises(ValueError):
        train_model(X, ["spam", "ham", "ham"], sparse=True, config=TrainingConfig(), sample_weight=[1.0])
    with pytest.raises(ValueError) as error:
        train_model(X, ["spam", "ham", "ham"], sparse=True, config=TrainingConfig(algorithm="forest"))
    assert str(error.value) == UNKNOWN_ALGORITHM.format(name="forest")


def test_solver_follows_the_row_shape_unless_forced(sparse_data):
    X, y, X_test, y_test = sparse_data
    assert resolve_solver(TrainingConfig(), sparse=True) == "sgd"
    assert resolve_solver(TrainingConfig(), sparse=False) == "lbfgs"
    assert resolve_solver(TrainingConfig(solver="lbfgs"), sparse=True) == "lbfgs"

    exact = train_model(X, y, sparse=True, config=TrainingConfig(solver="lbfgs"))
    dense_X, dense_y = dense_clusters(200, seed=5)
    stochastic = train_model(dense_X, dense_y, sparse=False, config=TrainingConfig(solver="sgd"))

    assert isinstance(exact.named_steps["classifier"], LogisticRegression)
    assert evaluate_model(exact, X_test, y_test, ["ham", "spam", "other"], train_majority="ham").accuracy > 0.85
    assert isinstance(stochastic, SGDClassifier)
    with pytest.raises(ValueError) as error:
        resolve_solver(TrainingConfig(solver="newton"), sparse=True)
    assert str(error.value) == UNKNOWN_SOLVER.format(name="newton")


def test_lbfgs_converges_before_its_limit_on_dense_rows():
    X, y = dense_clusters(3000, seed=6)

    summary = describe_model(train_model(X, y, sparse=False, config=TrainingConfig()))

    assert summary["solver"] == "lbfgs"
    assert not summary["tfidf"]
    assert 0 < summary["iterations"] < summary["iteration_limit"] == 1000


def test_describe_model_and_the_epoch_budget(fitted):
    summary = describe_model(fitted)

    assert summary == {
        "estimator": "SGDClassifier",
        "solver": "sgd",
        "tfidf": True,
        "iterations": summary["iterations"],
        "iteration_limit": 1000,  # 500 short texts are far below the epoch budget, so max_iter is the limit
        "classes": ["ham", "other", "spam"],
        "n_features": FEATURIZER.dim,
    }
    assert 0 < summary["iterations"] <= summary["iteration_limit"]
    assert sgd_epoch_limit(TrainingConfig(), 10**9) == SGD_MIN_EPOCHS
    assert sgd_epoch_limit(TrainingConfig(), 31_000_000) == 7
    assert sgd_epoch_limit(TrainingConfig(max_iter=3), 10) == 3
    assert sgd_epoch_limit(TrainingConfig(), 1_000) == 1000


def test_config_round_trips():
    config = TrainingConfig(C=2.0, class_weight=None, seed=5)

    assert TrainingConfig.from_dict(config.to_dict()) == config


def test_artifact_round_trip(tmp_path, sparse_data, fitted):
    _, _, X_test, _ = sparse_data
    path = tmp_path / "models" / "v1.skops"

    checksum = save_artifact(fitted, path)
    loaded = load_artifact(path, checksum)

    assert checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(tmp_path.joinpath("models").iterdir()) == [path]
    assert np.array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    dense_model = train_model(*dense_clusters(60, seed=4), sparse=False, config=TrainingConfig())
    dense_path = tmp_path / "dense.skops"
    assert isinstance(load_artifact(dense_path, save_artifact(dense_model, dense_path)), LogisticRegression)


def test_a_tampered_artifact_or_wrong_checksum_is_refused(tmp_path, fitted):
    path = tmp_path / "v1.skops"
    checksum = save_artifact(fitted, path)

    with pytest.raises(ArtifactError) as error:
        load_artifact(path, "0" * 64)
    assert str(error.value) == ARTIFACT_CHECKSUM_MISMATCH

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as error:
        load_artifact(path, checksum)
    assert str(error.value) == ARTIFACT_CHECKSUM_MISMATCH

    with pytest.raises(ArtifactError) as error:
        load_artifact(tmp_path / "missing.skops", checksum)
    assert str(error.value) == ARTIFACT_MISSING


class Gadget:
    """A type no allow-list knows, standing in for whatever an attacker would smuggle into a file."""

    def __init__(self) -> None:
        self.payload = "run me"


def test_an_artifact_with_unknown_types_is_refused_even_with_the_right_checksum(tmp_path):
    path = tmp_path / "evil.skops"
    path.write_bytes(skops.io.dumps({"model": Gadget()}))
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(ArtifactError, match="not on the allow-list: .*Gadget"):
        load_artifact(path, checksum)


def test_an_artifact_that_is_not_a_classifier_is_refused(tmp_path):
    path = tmp_path / "dict.skops"
    checksum = save_artifact({"weights": [1, 2, 3]}, path)

    with pytest.raises(ArtifactError) as error:
        load_artifact(path, checksum)
    assert str(error.value) == ARTIFACT_WRONG_KIND
