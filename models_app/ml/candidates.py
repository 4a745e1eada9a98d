"""Candidate sources for the labeling queue: each scores pool or labeled rows from stored features and a model.

Every source returns a ``Candidates``: row positions (into whatever array the caller passed), a score in [0, 1]
where higher means "more worth a person's minute", and a short reason per row for the annotator. Sources never
look at the database; ``models_app.services`` maps positions back to example ids.

* ``uncertainty``: least confidence, margin or entropy of the model's probabilities, ties broken by margin.
* ``hard_negatives``: labeled rows the model gets wrong out of fold (or confidently wrong), then their nearest
  unlabeled neighbours in feature space: the pool rows most like the model's mistakes.
* ``label_issues``: confident learning (Northcutt et al., 2021, the method behind cleanlab's
  ``find_label_issues``): labeled rows whose given label the out-of-fold model finds implausible.
* ``disagreement``: rows where a second opinion (an LLM's label) and the model disagree.
* ``exploration``: uniform random, optionally stratified by a metadata value, so the model keeps seeing the real mix.
* ``curriculum_ease``: how easy a row looks to the model, for ordering a new annotator's first items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

UNCERTAINTY_METHODS = ("least_confidence", "margin", "entropy")
UNKNOWN_METHOD = "Unknown uncertainty method {name!r}: choose one of " + ", ".join(UNCERTAINTY_METHODS) + "."
PROBA_SHAPE = "Probabilities must be a 2-D array with at least 2 columns, got shape {shape}."
LABELS_SHAPE = "Need one label per row of probabilities: {labels} labels for {rows} rows."

# Similarity at or above which two texts count as near duplicates (cosine of their feature vectors).
NEAR_DUPLICATE_SIMILARITY = 0.95


@dataclass(frozen=True)
class Candidates:
    """Rows one source proposes: positions, scores in [0, 1] (higher first) and a reason for each."""

    source: str
    index: np.ndarray
    score: np.ndarray
    reason: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.index) == len(self.score) == len(self.reason)):
            raise ValueError("index, score and reason must have the same length")

    def __len__(self) -> int:
        return len(self.index)

    def top(self, n: int) -> Candidates:
        """Return the n best-scoring rows, best first."""
        order = np.argsort(-self.score, kind="stable")[:n]
        return Candidates(self.source, self.index[order], self.score[order], tuple(self.reason[int(i)] for i in order))


def _check_proba(proba: np.ndarray) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(PROBA_SHAPE.format(shape=proba.shape))
    return proba


def _top_two(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (best class, best probability, second-best probability) per row."""
    order = np.argsort(-proba, axis=1, kind="stable")
    rows = np.arange(len(proba))
    return order[:, 0], proba[rows, order[:, 0]], proba[rows, order[:, 1]]


def uncertainty_score(proba: np.ndarray, method: str) -> np.ndarray:
    """Score each row's uncertainty in [0, 1] (1 = the model cannot tell the classes apart).

    least_confidence is 1 - p(best), rescaled by C / (C - 1); margin is 1 - (p(best) - p(second));
    entropy is the Shannon entropy divided by log C.
    """
    if method not in UNCERTAINTY_METHODS:
        raise ValueError(UNKNOWN_METHOD.format(name=method))
    proba = _check_proba(proba)
    n_classes = proba.shape[1]
    _, best, second = _top_two(proba)
    if method == "least_confidence":
        score = (1.0 - best) * n_classes / (n_classes - 1)
    elif method == "margin":
        score = 1.0 - (best - second)
    else:
        clipped = np.clip(proba, 1e-12, 1.0)
        score = -(clipped * np.log(clipped)).sum(axis=1) / np.log(n_classes)
    return np.clip(score, 0.0, 1.0)


def uncertainty(proba: np.ndarray, labels: Sequence[str], *, method: str = "entropy") -> Candidates:
    """Rank every row by the chosen uncertainty, ties broken by the smaller margin."""
    score = uncertainty_score(proba, method)
    margin = uncertainty_score(proba, "margin")
    proba = np.asarray(proba, dtype=np.float64)
    best, p_best, p_second = _top_two(proba)
    order = np.lexsort((-margin, -score))
    second = np.argsort(-proba, axis=1, kind="stable")[:, 1]
    reasons = tuple(
        f"Uncertain: {labels[best[i]]} {p_best[i]:.2f} vs {labels[second[i]]} {p_second[i]:.2f}" for i in order
    )
    return Candidates("uncertain", order.astype(np.int64), score[order], reasons)


def unit_rows(matrix: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Scale rows to unit length so a dot product is a cosine (all-zero rows stay zero)."""
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.diags(1.0 / norms).dot(matrix).tocsr()
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def similarity_matrix(left: np.ndarray | sp.spmatrix, right: np.ndarray | sp.spmatrix) -> np.ndarray:
    product = left @ right.T
    return np.asarray(product.toarray() if sp.issparse(product) else product, dtype=np.float32)


def nearest_to(
    seeds: np.ndarray | sp.spmatrix, pool: np.ndarray | sp.spmatrix, *, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """For each pool row, return (the most similar seed's position, its cosine similarity), in chunks of the pool."""
    n_pool = pool.shape[0]
    best_seed = np.zeros(n_pool, dtype=np.int64)
    best_sim = np.full(n_pool, -1.0, dtype=np.float32)
    if seeds.shape[0] == 0 or n_pool == 0:
        return best_seed, best_sim
    unit_seeds = unit_rows(seeds)
    for start in range(0, n_pool, chunk):
        block = unit_rows(pool[start : start + chunk])
        sim = similarity_matrix(block, unit_seeds)
        best_seed[start : start + len(sim)] = sim.argmax(axis=1)
        best_sim[start : start + len(sim)] = sim.max(axis=1)
    return best_seed, best_sim


def model_errors(
    oof_proba: np.ndarray, given: np.ndarray, labels: Sequence[str], *, confident: float = 0.0
) -> Candidates:
    """Labeled rows the model gets wrong out of fold, most confidently wrong first.

    ``given`` holds each row's label as a column index of ``oof_proba``; ``confident`` keeps only errors whose
    wrong prediction has at least that probability.
    """
    proba = _check_proba(oof_proba)
    given = np.asarray(given, dtype=np.int64)
    if len(given) != len(proba):
        raise ValueError(LABELS_SHAPE.format(labels=len(given), rows=len(proba)))
    predicted, p_best, _ = _top_two(proba)
    wrong = np.flatnonzero((predicted != given) & (p_best >= confident))
    order = wrong[np.argsort(-p_best[wrong], kind="stable")]
    reasons = tuple(
        f"Hard negative: labeled {labels[given[i]]}, the model said {labels[predicted[i]]} ({p_best[i]:.2f})"
        for i in order
    )
    return Candidates("hard_negative", order, p_best[order], reasons)


def hard_negatives(
    errors: Candidates,
    labeled_features: np.ndarray | sp.spmatrix,
    pool_features: np.ndarray | sp.spmatrix,
    *,
    max_seeds: int = 500,
    min_similarity: float = 0.3,
) -> Candidates:
    """Pool rows nearest to the model's mistakes: score = similarity to the nearest mistake × how wrong it was.

    ``errors`` indexes rows of ``labeled_features`` (from ``model_errors``); the result indexes ``pool_features``.
    """
    seeds = errors.top(max_seeds)
    if len(seeds) == 0 or pool_features.shape[0] == 0:
        return Candidates("hard_negative", np.zeros(0, dtype=np.int64), np.zeros(0), ())
    seed_rows = labeled_features[seeds.index]
    nearest, similarity = nearest_to(seed_rows, pool_features)
    keep = np.flatnonzero(similarity >= min_similarity)
    score = similarity[keep].astype(np.float64) * seeds.score[nearest[keep]]
    order = np.argsort(-score, kind="stable")
    keep, score = keep[order], score[order]
    reasons = tuple(
        f"Hard negative: like a labeled example the model gets wrong (similarity {similarity[i]:.2f})" for i in keep
    )
    return Candidates("hard_negative", keep.astype(np.int64), np.clip(score, 0.0, 1.0), reasons)


def label_issues(oof_proba: np.ndarray, given: np.ndarray, labels: Sequence[str]) -> Candidates:
    """Find likely label errors by confident learning, least self-confident first.

    Per class j the threshold t_j is the mean out-of-fold p(j) over rows labeled j. A row labeled i counts as
    confidently belonging to j when p(j) >= t_j (the largest such j when several do). The confident joint,
    calibrated to the label counts, estimates how many rows labeled i truly are j; for each off-diagonal cell
    that many rows labeled i with the largest p(j) - p(i) are flagged (cleanlab's ``prune_by_noise_rate``).
    Score = 1 - p(given label).
    """
    proba = _check_proba(oof_proba)
    given = np.asarray(given, dtype=np.int64)
    if len(given) != len(proba):
        raise ValueError(LABELS_SHAPE.format(labels=len(given), rows=len(proba)))
    n_rows, n_classes = proba.shape
    empty = Candidates("label_error", np.zeros(0, dtype=np.int64), np.zeros(0), ())
    if n_rows == 0:
        return empty
    label_counts = np.bincount(given, minlength=n_classes)
    thresholds = np.array(
        [proba[given == j, j].mean() if label_counts[j] else np.inf for j in range(n_classes)], dtype=np.float64
    )
    above = proba >= thresholds[None, :]
    masked = np.where(above, proba, -np.inf)
    confident_class = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((n_classes, n_classes), dtype=np.float64)
    has = confident_class >= 0
    np.add.at(joint, (given[has], confident_class[has]), 1.0)
    row_sums = joint.sum(axis=1, keepdims=True)
    row_sums[row_sums == 0] = 1.0
    calibrated = joint / row_sums * label_counts[:, None]
    flagged = np.zeros(n_rows, dtype=bool)
    for i in range(n_classes):
        rows_i = np.flatnonzero(given == i)
        for j in range(n_classes):
            count = int(round(calibrated[i, j])) if i != j else 0
            if count <= 0 or len(rows_i) == 0:
                continue
            margin = proba[rows_i, j] - proba[rows_i, i]
            worst = rows_i[np.argsort(-margin, kind="stable")[:count]]
            flagged[worst[proba[worst, j] > proba[worst, i]]] = True
    index = np.flatnonzero(flagged)
    self_confidence = proba[index, given[index]]
    order = index[np.argsort(self_confidence, kind="stable")]
    predicted = proba.argmax(axis=1)
    reasons = tuple(
        f"Possible label error: labeled {labels[given[i]]}, the model says {labels[predicted[i]]}"
        f" ({proba[i, predicted[i]]:.2f}); a second person checks it"
        for i in order
    )
    return Candidates("label_error", order.astype(np.int64), 1.0 - proba[order, given[order]], reasons)


def disagreement(
    model_proba: np.ndarray, other_label: np.ndarray, other_confidence: np.ndarray, labels: Sequence[str]
) -> Candidates:
    """Rows where another labeler (an LLM) and the model disagree: score = its confidence × (1 - model's p(its label)).

    ``other_label`` holds a column index per row, or -1 where the other labeler gave none.
    """
    proba = _check_proba(model_proba)
    other_label = np.asarray(other_label, dtype=np.int64)
    other_confidence = np.asarray(other_confidence, dtype=np.float64)
    if len(other_label) != len(proba) or len(other_confidence) != len(proba):
        raise ValueError(LABELS_SHAPE.format(labels=len(other_label), rows=len(proba)))
    predicted = proba.argmax(axis=1)
    index = np.flatnonzero((other_label >= 0) & (other_label != predicted))
    score = other_confidence[index] * (1.0 - proba[index, other_label[index]])
    order = np.argsort(-score, kind="stable")
    index, score = index[order], score[order]
    reasons = tuple(
        f"LLM disagrees: it said {labels[other_label[i]]}, the model {labels[predicted[i]]} ({proba[i, predicted[i]]:.2f})"
        for i in index
    )
    return Candidates("llm_disagrees", index, np.clip(score, 0.0, 1.0), reasons)


def exploration(n_rows: int, size: int, rng: np.random.Generator, *, strata: Sequence[str] | None = None) -> Candidates:
    """Draw up to ``size`` rows uniformly at random; with ``strata``, allocate draws to each value proportionally.

    Proportional allocation (largest remainders) keeps every stratum with at least one draw when size allows, so a
    small metadata group (one channel, one airline) is not missed by chance.
    """
    size = min(size, n_rows)
    if size <= 0:
        return Candidates("exploration", np.zeros(0, dtype=np.int64), np.zeros(0), ())
    if strata is None:
        index = rng.choice(n_rows, size=size, replace=False)
        reasons = ("Exploration: picked at random, so the model keeps seeing the real mix of examples.",) * size
    else:
        values = np.asarray(list(strata), dtype=object)
        if len(values) != n_rows:
            raise ValueError(LABELS_SHAPE.format(labels=len(values), rows=n_rows))
        groups = {value: np.flatnonzero(values == value) for value in dict.fromkeys(values.tolist())}
        share = {value: len(rows) * size / n_rows for value, rows in groups.items()}
        quota = {value: min(len(groups[value]), max(1, int(share[value]))) for value in groups}
        while sum(quota.values()) > size:
            # Take from groups above one draw first, so every group keeps one while size allows.
            largest = max(quota, key=lambda value: (quota[value] > 1, quota[value] - share[value], quota[value]))
            quota[largest] -= 1
        spare = sorted(groups, key=lambda value: share[value] - quota[value], reverse=True)
        while sum(quota.values()) < size:
            grew = False
            for value in spare:
                if sum(quota.values()) < size and quota[value] < len(groups[value]):
                    quota[value] += 1
                    grew = True
            if not grew:
                break
        picks = [rng.choice(groups[value], size=quota[value], replace=False) for value in groups if quota[value]]
        # Interleave the strata so every prefix is stratified too: the k-th draw of a stratum with q draws sorts at
        # k / q, so each stratum's first draw comes within the first len(strata) rows (random order among equals).
        keys = [np.arange(len(drawn)) / len(drawn) for drawn in picks]
        flat = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        order = np.lexsort((rng.random(len(flat)), np.concatenate(keys))) if picks else np.zeros(0, dtype=np.int64)
        index = flat[order]
        reasons = tuple(
            f"Exploration: picked at random within {values[i]!s:.60}, so every group is seen" for i in index
        )
    # A random pick has no merit to claim: score 0, so an example another source also proposes goes to that source
    # (whose reason says more), and exploration's slots go to other random picks.
    score = np.zeros(len(index))
    return Candidates("exploration", np.asarray(index, dtype=np.int64), score, reasons)


def curriculum_ease(proba: np.ndarray) -> np.ndarray:
    """Return how easy each row looks (the model's top probability); a new annotator starts with the easiest."""
    proba = _check_proba(proba)
    return proba.max(axis=1)


def duplicate_groups(vectors: np.ndarray | sp.spmatrix, order: np.ndarray, *, threshold: float) -> np.ndarray:
    """Return a mask over ``order``: True for each row that is a near duplicate of an earlier row in ``order``."""
    n = len(order)
    duplicate = np.zeros(n, dtype=bool)
    if n < 2:
        return duplicate
    unit = unit_rows(vectors[order])
    kept: list[int] = []
    for start in range(0, n, 1024):
        block = unit[start : start + 1024]
        sim = similarity_matrix(block, unit[: start + block.shape[0]])
        for offset in range(block.shape[0]):
            row = start + offset
            if kept and float(sim[offset, kept].max()) >= threshold:
                duplicate[row] = True
            else:
                kept.append(row)
    return duplicate
