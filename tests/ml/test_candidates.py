"""Candidate sources: hand-computed uncertainty, brute-force neighbours, confident learning and stratified draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from models_app.ml.candidates import (
    LABELS_SHAPE,
    PROBA_SHAPE,
    UNCERTAINTY_METHODS,
    UNKNOWN_METHOD,
    Candidates,
    disagreement,
    duplicate_groups,
    exploration,
    hard_negatives,
    label_issues,
    model_errors,
    nearest_to,
    uncertainty,
    uncertainty_score,
)

LABELS = ["spam", "ham", "other"]


def probability_rows(min_classes: int = 2, max_classes: int = 6) -> st.SearchStrategy[np.ndarray]:
    """Draw a batch of probability rows (each sums to 1) with a shared number of classes."""

    @st.composite
    def build(draw: st.DrawFn) -> np.ndarray:
        n_classes = draw(st.integers(min_classes, max_classes))
        n_rows = draw(st.integers(1, 8))
        raw = draw(
            st.lists(
                st.lists(st.floats(0.0, 1.0), min_size=n_classes, max_size=n_classes).filter(lambda row: sum(row) > 0),
                min_size=n_rows,
                max_size=n_rows,
            )
        )
        matrix = np.array(raw, dtype=np.float64)
        return matrix / matrix.sum(axis=1, keepdims=True)

    return build()


def cosine_matrix(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Compute cosines in float64 row by row, treating an all-zero row as similar to nothing."""
    out = np.zeros((len(left), len(right)))
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            norm = np.linalg.norm(a) * np.linalg.norm(b)
            out[i, j] = float(a @ b) / norm if norm else 0.0
    return out


# Uncertainty


@pytest.mark.parametrize("method", UNCERTAINTY_METHODS)
@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_uniform_row_is_maximally_uncertain_and_one_hot_is_certain(method: str, n_classes: int) -> None:
    uniform = np.full((1, n_classes), 1.0 / n_classes)
    one_hot = np.eye(n_classes)[[n_classes - 1]]
    assert uncertainty_score(uniform, method)[0] == pytest.approx(1.0, abs=1e-9)
    assert uncertainty_score(one_hot, method)[0] == pytest.approx(0.0, abs=1e-9)


def test_two_class_row_matches_hand_computed_values() -> None:
    row = np.array([[0.6, 0.4]])
    entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4)) / math.log(2)
    assert uncertainty_score(row, "least_confidence")[0] == pytest.approx(0.8)
    assert uncertainty_score(row, "margin")[0] == pytest.approx(0.8)
    assert uncertainty_score(row, "entropy")[0] == pytest.approx(entropy)
    # The column order does not matter: the best class may come second.
    swapped = row[:, ::-1]
    for method in UNCERTAINTY_METHODS:
        assert uncertainty_score(swapped, method)[0] == pytest.approx(uncertainty_score(row, method)[0])


def test_three_class_row_matches_hand_computed_values() -> None:
    row = np.array([[0.2, 0.5, 0.3]])
    assert uncertainty_score(row, "least_confidence")[0] == pytest.approx(0.5 * 3 / 2)
    assert uncertainty_score(row, "margin")[0] == pytest.approx(1 - 0.2)
    entropy = -sum(p * math.log(p) for p in (0.2, 0.5, 0.3)) / math.log(3)
    assert uncertainty_score(row, "entropy")[0] == pytest.approx(entropy)


@hypothesis_settings(max_examples=150, deadline=None)
@given(proba=probability_rows(), method=st.sampled_from(UNCERTAINTY_METHODS))
def test_uncertainty_scores_stay_in_unit_interval(proba: np.ndarray, method: str) -> None:
    score = uncertainty_score(proba, method)
    assert score.shape == (len(proba),)
    assert np.all(score >= 0.0)
    assert np.all(score <= 1.0)


def test_unknown_method_is_refused_with_the_module_message() -> None:
    with pytest.raises(ValueError) as error:
        uncertainty_score(np.array([[0.5, 0.5]]), "variance")
    assert str(error.value) == UNKNOWN_METHOD.format(name="variance")


@pytest.mark.parametrize("proba", [np.array([0.5, 0.5]), np.array([[1.0], [1.0]]), np.ones((2, 2, 2)) / 2])
def test_bad_probability_shapes_are_refused(proba: np.ndarray) -> None:
    with pytest.raises(ValueError) as error:
        uncertainty_score(proba, "entropy")
    assert str(error.value) == PROBA_SHAPE.format(shape=proba.shape)


def test_uncertainty_orders_by_score_descending() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]])
    result = uncertainty(proba, LABELS, method="entropy")
    assert result.source == "uncertain"
    assert list(result.index) == [2, 1, 3, 0]
    assert np.all(np.diff(result.score) <= 0)
    np.testing.assert_allclose(result.score, uncertainty_score(proba, "entropy")[result.index])


def test_uncertainty_ties_are_broken_by_the_smaller_margin() -> None:
    # Both rows have p(best) = 0.5, so equal least confidence; the second row's top two are closer.
    proba = np.array([[0.5, 0.25, 0.25], [0.5, 0.4, 0.1], [0.9, 0.05, 0.05]])
    lc = uncertainty_score(proba, "least_confidence")
    assert lc[0] == lc[1]
    result = uncertainty(proba, LABELS, method="least_confidence")
    assert list(result.index) == [1, 0, 2]
    # Reversing the input order must not change which row comes first.
    reversed_result = uncertainty(proba[::-1], LABELS, method="least_confidence")
    assert list(reversed_result.index) == [1, 2, 0]


def test_uncertainty_reasons_name_the_top_two_labels() -> None:
    proba = np.array([[0.1, 0.55, 0.35], [0.2, 0.3, 0.5]])
    result = uncertainty(proba, LABELS, method="margin")
    by_row = dict(zip(result.index.tolist(), result.reason, strict=True))
    assert "ham 0.55" in by_row[0]
    assert "other 0.35" in by_row[0]
    assert "spam" not in by_row[0]
    assert "other 0.50" in by_row[1]
    assert "ham 0.30" in by_row[1]
    assert by_row[0].index("ham") < by_row[0].index("other")


# Model errors and hard negatives


def test_model_errors_keeps_only_wrong_rows_most_confident_first() -> None:
    proba = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.2, 0.7, 0.1],  # wrong, 0.7
            [0.1, 0.1, 0.8],  # right
            [0.05, 0.05, 0.9],  # wrong, 0.9
            [0.4, 0.35, 0.25],  # wrong, 0.4
        ]
    )
    given_labels = np.array([0, 0, 2, 1, 2])
    errors = model_errors(proba, given_labels, LABELS)
    assert errors.source == "hard_negative"
    assert list(errors.index) == [3, 1, 4]
    np.testing.assert_allclose(errors.score, [0.9, 0.7, 0.4])
    assert "labeled ham" in errors.reason[0]
    assert "the model said other (0.90)" in errors.reason[0]

    confident = model_errors(proba, given_labels, LABELS, confident=0.7)
    assert list(confident.index) == [3, 1]


def test_model_errors_refuses_a_label_count_that_does_not_match_the_rows() -> None:
    with pytest.raises(ValueError) as error:
        model_errors(np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([0, 1, 1]), LABELS)
    assert str(error.value) == LABELS_SHAPE.format(labels=3, rows=2)


@pytest.mark.parametrize("sparse", [False, True])
def test_nearest_to_matches_brute_force_cosines(sparse: bool) -> None:
    rng = np.random.default_rng(7)
    seeds = rng.normal(size=(4, 6))
    pool = rng.normal(size=(9, 6))
    pool[3] = 0.0  # an empty row is similar to nothing
    expected = cosine_matrix(pool, seeds)
    as_input = sp.csr_matrix if sparse else np.asarray
    nearest, similarity = nearest_to(as_input(seeds), as_input(pool))
    np.testing.assert_array_equal(nearest, expected.argmax(axis=1))
    np.testing.assert_allclose(similarity, expected.max(axis=1), atol=1e-5)

    chunked_nearest, chunked_similarity = nearest_to(as_input(seeds), as_input(pool), chunk=2)
    np.testing.assert_array_equal(chunked_nearest, nearest)
    np.testing.assert_allclose(chunked_similarity, similarity, atol=1e-6)


def test_nearest_to_with_no_seeds_marks_every_pool_row_unmatched() -> None:
    nearest, similarity = nearest_to(np.zeros((0, 3)), np.ones((4, 3)))
    assert len(nearest) == len(similarity) == 4
    assert np.all(similarity < 0)


def hard_negative_setup() -> tuple[Candidates, np.ndarray, np.ndarray]:
    """Two labeled mistakes along the x and y axes, and pool rows at known angles to them."""
    labeled = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    errors = Candidates("hard_negative", np.array([1, 0]), np.array([0.9, 0.6]), ("y", "x"))
    pool = np.array(
        [
            [1.0, 0.1, 0.0],  # close to x (0.6 wrong)
            [0.0, 0.0, 1.0],  # orthogonal to both mistakes
            [0.1, 1.0, 0.0],  # close to y (0.9 wrong)
            [1.0, 1.0, 0.0],  # 45 degrees from both
            [0.0, 2.0, 0.1],  # very close to y
        ]
    )
    return errors, labeled, pool


@pytest.mark.parametrize("sparse", [False, True])
def test_hard_negatives_score_similarity_times_how_wrong(sparse: bool) -> None:
    errors, labeled, pool = hard_negative_setup()
    as_input = sp.csr_matrix if sparse else np.asarray
    result = hard_negatives(errors, as_input(labeled), as_input(pool), min_similarity=0.3)
    seeds = labeled[[1, 0]]
    cosines = cosine_matrix(pool, seeds)
    expected_score = cosines.max(axis=1) * np.array([0.9, 0.6])[cosines.argmax(axis=1)]
    expected_rows = [row for row in np.argsort(-expected_score, kind="stable") if cosines[row].max() >= 0.3]
    assert result.source == "hard_negative"
    assert list(result.index) == expected_rows
    assert 1 not in result.index
    np.testing.assert_allclose(result.score, expected_score[expected_rows], atol=1e-5)
    assert list(result.index[:2]) == [4, 2]


def test_hard_negatives_min_similarity_filters() -> None:
    errors, labeled, pool = hard_negative_setup()
    strict = hard_negatives(errors, labeled, pool, min_similarity=0.9)
    assert sorted(strict.index.tolist()) == [0, 2, 4]
    loose = hard_negatives(errors, labeled, pool, min_similarity=-1.0)
    assert sorted(loose.index.tolist()) == [0, 1, 2, 3, 4]


def test_hard_negatives_max_seeds_keeps_the_worst_mistakes() -> None:
    errors, labeled, pool = hard_negative_setup()
    result = hard_negatives(errors, labeled, pool, max_seeds=1, min_similarity=0.9)
    # Only the 0.9 mistake (the y axis) is a seed, so the rows near x drop out.
    assert sorted(result.index.tolist()) == [2, 4]


def test_hard_negatives_without_mistakes_is_empty() -> None:
    _, labeled, pool = hard_negative_setup()
    none = Candidates("hard_negative", np.zeros(0, dtype=np.int64), np.zeros(0), ())
    assert len(hard_negatives(none, labeled, pool)) == 0
    assert len(hard_negatives(none, sp.csr_matrix(labeled), sp.csr_matrix(pool))) == 0


# Confident learning


def clean_and_flipped(n_per_class: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of confidently right rows, plus three rows whose given label the model rejects."""
    given_labels = np.repeat(np.arange(3), n_per_class)
    proba = np.full((len(given_labels), 3), 0.05)
    proba[np.arange(len(given_labels)), given_labels] = 0.9
    return proba, given_labels


def test_label_issues_flags_rows_the_model_contradicts_least_self_confident_first() -> None:
    proba, given_labels = clean_and_flipped()
    # Row 3 (labeled spam) looks like ham, row 14 (ham) like other, row 25 (other) like spam.
    for row, other, self_confidence in [(3, 1, 0.05), (14, 2, 0.02), (25, 0, 0.08)]:
        proba[row] = 0.0
        proba[row, other] = 0.9
        proba[row, given_labels[row]] = self_confidence
        proba[row] /= proba[row].sum()
    result = label_issues(proba, given_labels, LABELS)
    assert result.source == "label_error"
    assert list(result.index) == [14, 3, 25]
    np.testing.assert_allclose(result.score, 1 - proba[[14, 3, 25], given_labels[[14, 3, 25]]])
    assert "labeled ham, the model says other" in result.reason[0]


def test_label_issues_finds_nothing_in_clean_confident_data() -> None:
    proba, given_labels = clean_and_flipped()
    assert len(label_issues(proba, given_labels, LABELS)) == 0


def test_label_issues_refuses_mismatched_labels() -> None:
    with pytest.raises(ValueError):
        label_issues(np.array([[0.5, 0.5]]), np.array([0, 1]), LABELS)


def reference_label_issues(proba: np.ndarray, given_labels: np.ndarray) -> list[int]:
    """Apply the documented confident-learning rule with plain loops, to check the vectorised one."""
    n_rows, n_classes = proba.shape
    rows_of = {j: [r for r in range(n_rows) if given_labels[r] == j] for j in range(n_classes)}
    threshold = {j: sum(proba[r, j] for r in rows_of[j]) / len(rows_of[j]) for j in range(n_classes) if rows_of[j]}
    joint = [[0] * n_classes for _ in range(n_classes)]
    for r in range(n_rows):
        confident = [j for j in threshold if proba[r, j] >= threshold[j]]
        if confident:
            j = max(confident, key=lambda c: (proba[r, c], -c))
            joint[given_labels[r]][j] += 1
    flagged: set[int] = set()
    for i in range(n_classes):
        row_total = sum(joint[i])
        for j in range(n_classes):
            if i == j or not row_total:
                continue
            count = round(joint[i][j] / row_total * len(rows_of[i]))
            ranked = sorted(rows_of[i], key=lambda r: -(proba[r, j] - proba[r, i]))[:count]
            # A row is only flagged when the model prefers j to its given label.
            flagged.update(r for r in ranked if proba[r, j] > proba[r, i])
    return sorted(flagged, key=lambda r: (proba[r, given_labels[r]], r))


@pytest.mark.parametrize("seed", range(6))
def test_label_issues_agrees_with_a_loop_reimplementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = 2 + seed % 3
    true = rng.integers(0, n_classes, size=80)
    given_labels = np.where(rng.random(80) < 0.15, rng.integers(0, n_classes, size=80), true)
    logits = rng.normal(size=(80, n_classes))
    logits[np.arange(80), true] += 2.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = reference_label_issues(proba, given_labels)
    assert expected, "the random case should contain at least one issue"
    assert list(label_issues(proba, given_labels, LABELS[:n_classes] + ["x"] * 3).index) == expected


# Disagreement


def test_disagreement_keeps_rows_where_the_other_labeler_differs() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    other_label = np.array([0, 2, -1, 1, 0])
    other_confidence = np.array([0.9, 0.5, 1.0, 0.8, 1.0])
    result = disagreement(proba, other_label, other_confidence, LABELS)
    assert result.source == "llm_disagrees"
    # Row 0 agrees and row 2 has no other label; scores are confidence x (1 - p(other label)).
    expected = {1: 0.5 * 0.9, 3: 0.8 * 0.6, 4: 1.0 * 0.9}
    assert list(result.index) == [4, 3, 1]
    np.testing.assert_allclose(result.score, [expected[4], expected[3], expected[1]])
    assert "it said spam, the model other (0.80)" in result.reason[0]


def test_disagreement_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        disagreement(np.array([[0.5, 0.5]]), np.array([0, 1]), np.array([1.0, 1.0]), LABELS)
    with pytest.raises(ValueError):
        disagreement(np.array([[0.5, 0.5]]), np.array([1]), np.array([1.0, 1.0]), LABELS)


# Exploration


@pytest.mark.parametrize(("n_rows", "size"), [(50, 10), (5, 10), (7, 7), (0, 3), (10, 0)])
def test_exploration_draws_distinct_rows_capped_by_the_pool(n_rows: int, size: int) -> None:
    result = exploration(n_rows, size, np.random.default_rng(3))
    assert result.source == "exploration"
    assert len(result) == min(n_rows, size)
    assert len(set(result.index.tolist())) == len(result)
    assert all(0 <= row < n_rows for row in result.index)
    assert np.all(np.diff(result.score) <= 0)


def test_exploration_is_reproducible_with_the_same_seed() -> None:
    first = exploration(1000, 20, np.random.default_rng(11))
    again = exploration(1000, 20, np.random.default_rng(11))
    other = exploration(1000, 20, np.random.default_rng(12))
    np.testing.assert_array_equal(first.index, again.index)
    assert list(first.index) != list(other.index)
    strata = [f"group {i % 4}" for i in range(1000)]
    np.testing.assert_array_equal(
        exploration(1000, 20, np.random.default_rng(5), strata=strata).index,
        exploration(1000, 20, np.random.default_rng(5), strata=strata).index,
    )


# Tiny groups next to big ones are where a proportional share rounds a group away.
strata_strategy = st.lists(st.one_of(st.integers(1, 2), st.integers(1, 40)), min_size=1, max_size=7)


@hypothesis_settings(max_examples=150, deadline=None)
@given(group_sizes=strata_strategy, size=st.integers(0, 80), seed=st.integers(0, 2**16), shuffle=st.booleans())
def test_stratified_exploration_shares_draws_by_group(
    group_sizes: list[int], size: int, seed: int, shuffle: bool
) -> None:
    strata = [f"g{group}" for group, count in enumerate(group_sizes) for _ in range(count)]
    if shuffle:
        strata = list(np.random.default_rng(seed).permutation(strata))
    n_rows = len(strata)
    result = exploration(n_rows, size, np.random.default_rng(seed), strata=strata)
    drawn = result.index.tolist()
    expected_total = min(size, n_rows)
    assert len(drawn) == expected_total
    assert len(set(drawn)) == len(drawn)
    for row, reason in zip(drawn, result.reason, strict=True):
        assert strata[row] in reason

    counts = {f"g{group}": 0 for group in range(len(group_sizes))}
    for row in drawn:
        counts[strata[row]] += 1
    shares = {f"g{group}": count * expected_total / n_rows for group, count in enumerate(group_sizes)}
    for group, count in enumerate(group_sizes):
        assert counts[f"g{group}"] <= count
    if expected_total >= len(group_sizes):
        # Every group is seen, and no group gets more than its share rounded up (or the one it is owed).
        assert all(counts[name] >= 1 for name in counts)
        assert all(counts[name] <= max(1, math.ceil(shares[name])) for name in counts)
    if all(share >= 1 for share in shares.values()):
        assert all(abs(counts[name] - shares[name]) < 1 for name in counts)


def test_stratified_exploration_keeps_a_small_group_when_size_allows() -> None:
    # Shares are 2.5, 0.25 and 0.25: the big group must give up a draw so both small groups are seen.
    strata = ["big"] * 10 + ["small a"] + ["small b"]
    result = exploration(len(strata), 3, np.random.default_rng(0), strata=strata)
    assert sorted(strata[row] for row in result.index) == ["big", "small a", "small b"]


def test_stratified_exploration_refuses_a_strata_list_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        exploration(5, 2, np.random.default_rng(0), strata=["a", "b"])


# Duplicates


@pytest.mark.parametrize("sparse", [False, True])
def test_duplicate_groups_marks_the_later_of_two_near_identical_rows(sparse: bool) -> None:
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.01, 0.0], [0.0, 0.0, 1.0]])
    as_input = sp.csr_matrix if sparse else np.asarray
    mask = duplicate_groups(as_input(vectors), np.arange(4), threshold=0.95)
    assert mask.tolist() == [False, False, True, False]
    # With row 2 first in the order, it is kept and row 0 is the duplicate.
    reordered = duplicate_groups(as_input(vectors), np.array([2, 1, 0, 3]), threshold=0.95)
    assert reordered.tolist() == [False, False, True, False]


def test_duplicate_groups_respects_the_threshold() -> None:
    # The two rows have a cosine of exactly 0.9.
    vectors = np.array([[1.0, 0.0], [0.9, math.sqrt(1 - 0.81)]])
    assert duplicate_groups(vectors, np.arange(2), threshold=0.85).tolist() == [False, True]
    assert duplicate_groups(vectors, np.arange(2), threshold=0.95).tolist() == [False, False]


def test_duplicate_groups_across_blocks() -> None:
    # Rows 0 and 1500 are copies, more than one 1024-row block apart; the rest are orthogonal unit vectors.
    vectors = np.eye(1600, dtype=np.float32)
    vectors[1500] = vectors[0]
    mask = duplicate_groups(vectors, np.arange(1600), threshold=0.95)
    assert np.flatnonzero(mask).tolist() == [1500]


def test_candidates_top_and_length_check() -> None:
    candidates = Candidates("uncertain", np.array([5, 6, 7]), np.array([0.2, 0.9, 0.5]), ("a", "b", "c"))
    best = candidates.top(2)
    assert best.index.tolist() == [6, 7]
    assert best.reason == ("b", "c")
    with pytest.raises(ValueError):
        Candidates("uncertain", np.array([1, 2]), np.array([0.5]), ("a", "b"))


def test_stratified_exploration_puts_every_stratum_in_its_first_rows():
    # A slice often takes only the first rows of exploration's proposal: a rare stratum must not wait at the end.
    strata = ["big"] * 970 + ["rare"] * 10 + ["mid"] * 20
    for seed in range(20):
        found = exploration(len(strata), 100, np.random.default_rng(seed), strata=strata)
        assert {strata[i] for i in found.index[:3]} == {"big", "rare", "mid"}
        big_share = sum(strata[i] == "big" for i in found.index[:50]) / 50
        assert 0.85 <= big_share <= 1.0
