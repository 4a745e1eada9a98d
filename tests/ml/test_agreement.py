"""Agreement statistics: Krippendorff's worked example, sklearn parity for kappa, pair bookkeeping and scale."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Hashable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from models_app.ml.agreement import (
    AlphaResult,
    PairAgreement,
    cohen_kappa,
    krippendorff_alpha_nominal,
    pairwise_kappa,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders, 12 units.
KRIPPENDORFF_TABLE = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def table_to_triples(table: dict[str, list[Hashable | None]]) -> list[tuple[int, int, Hashable]]:
    """Flatten a coder-by-unit table into rating triples, skipping missing cells."""
    return [
        (unit, coder, value)
        for coder, values in enumerate(table.values())
        for unit, value in enumerate(values, start=1)
        if value is not None
    ]


def reference_alpha(ratings: list[tuple[int, int, Hashable]]) -> float | None:
    """Compute nominal alpha the slow, textbook way with a full coincidence matrix, to check the fast one."""
    by_item: dict[int, dict[int, Hashable]] = defaultdict(dict)
    for item, coder, label in ratings:
        by_item[item][coder] = label
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for values in by_item.values():
        m = len(values)
        if m < 2:
            continue
        for (coder_1, c), (coder_2, k) in itertools.permutations(values.items(), 2):
            assert coder_1 != coder_2
            coincidence[(c, k)] += 1 / (m - 1)
    n = sum(coincidence.values())
    if n == 0:
        return None
    n_c: Counter[Hashable] = Counter()
    for (c, _), count in coincidence.items():
        n_c[c] += count
    observed = sum(count for (c, k), count in coincidence.items() if c != k) / n
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k) / (n * (n - 1))
    if expected == 0:
        return None
    return 1 - observed / expected


# --- Krippendorff's alpha -------------------------------------------------------------------------------------


def test_alpha_matches_krippendorffs_worked_example():
    result = krippendorff_alpha_nominal(table_to_triples(KRIPPENDORFF_TABLE))

    assert result.alpha == pytest.approx(0.743, abs=5e-4)
    assert result.n_items == 11  # unit 12 has a single value (B: 3) and is not pairable
    assert result.n_values == 40
    # The paper's intermediate figures: 8 of the 40 coincidences disagree; n_c = 9, 13, 10, 5, 3 for values 1-5.
    assert result.observed_disagreement == pytest.approx(8 / 40)
    assert result.expected_disagreement == pytest.approx((40 * 40 - (9**2 + 13**2 + 10**2 + 5**2 + 3**2)) / (40 * 39))
    assert result.alpha == pytest.approx(reference_alpha(table_to_triples(KRIPPENDORFF_TABLE)), abs=1e-12)


def test_alpha_is_one_for_perfect_agreement():
    ratings = [(item, coder, item % 3) for item in range(30) for coder in range(3)]

    result = krippendorff_alpha_nominal(ratings)

    assert result.alpha == pytest.approx(1.0)
    assert result.observed_disagreement == pytest.approx(0.0)
    assert result.n_items == 30
    assert result.n_values == 90


def test_alpha_is_negative_for_systematic_disagreement():
    ratings = []
    for item in range(20):
        first, second = ("spam", "ham") if item % 2 else ("ham", "spam")
        ratings += [(item, 1, first), (item, 2, second)]

    result = krippendorff_alpha_nominal(ratings)

    assert result.alpha is not None
    assert result.alpha < 0
    assert result.observed_disagreement == pytest.approx(1.0)
    assert result.alpha == pytest.approx(reference_alpha(ratings), abs=1e-12)


def test_alpha_is_undefined_when_everyone_uses_one_label():
    ratings = [(item, coder, "spam") for item in range(5) for coder in range(2)]

    result = krippendorff_alpha_nominal(ratings)

    assert result == AlphaResult(
        alpha=None, n_items=5, n_values=10, observed_disagreement=0.0, expected_disagreement=0.0
    )


def test_alpha_is_undefined_without_pairable_items():
    assert krippendorff_alpha_nominal([]) == AlphaResult(None, 0, 0, None, None)
    single_ratings = [(1, 1, "a"), (2, 1, "b"), (3, 2, "a")]
    assert krippendorff_alpha_nominal(single_ratings) == AlphaResult(None, 0, 0, None, None)


def test_alpha_keeps_the_last_label_when_an_annotator_relabels():
    first_try = [(1, 1, "a"), (1, 2, "b"), (2, 1, "a"), (2, 2, "a"), (3, 1, "b"), (3, 2, "b")]
    relabeled = [*first_try, (1, 2, "a")]

    result = krippendorff_alpha_nominal(relabeled)

    assert result.n_values == 6
    assert result.alpha == pytest.approx(1.0)


def test_alpha_agrees_with_the_textbook_computation_on_random_data():
    rng = np.random.default_rng(7)
    ratings = []
    for item in range(300):
        coders = rng.choice(6, size=int(rng.integers(1, 6)), replace=False)
        truth = int(rng.integers(0, 4))
        for coder in coders:
            label = truth if rng.random() < 0.7 else int(rng.integers(0, 4))
            ratings.append((item, int(coder), label))

    assert krippendorff_alpha_nominal(ratings).alpha == pytest.approx(reference_alpha(ratings), abs=1e-12)


unique_ratings = st.dictionaries(
    keys=st.tuples(st.integers(0, 15), st.integers(0, 4)),
    values=st.integers(0, 3),
    max_size=60,
).map(lambda cells: [(item, coder, label) for (item, coder), label in cells.items()])


@hypothesis_settings(max_examples=200, deadline=None)
@given(ratings=unique_ratings, permutation=st.permutations(range(4)), rng=st.randoms(use_true_random=False))
def test_alpha_ignores_label_names_and_rating_order(
    ratings: list[tuple[int, int, int]], permutation: list[int], rng: random.Random
):
    renamed = [(item, coder, f"label-{permutation[label]}") for item, coder, label in ratings]
    rng.shuffle(renamed)

    original, transformed = krippendorff_alpha_nominal(ratings), krippendorff_alpha_nominal(renamed)

    assert (transformed.n_items, transformed.n_values) == (original.n_items, original.n_values)
    if original.alpha is None:
        assert transformed.alpha is None
    else:
        assert transformed.alpha == pytest.approx(original.alpha, abs=1e-12)
        assert original.alpha == pytest.approx(reference_alpha(ratings), abs=1e-12)


# --- Cohen's kappa --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 42])
def test_cohen_kappa_matches_sklearn(seed: int):
    rng = np.random.default_rng(seed)
    labels_a = rng.integers(0, 3, size=200)
    copy = rng.random(200) < rng.uniform(0.2, 0.9)
    labels_b = np.where(copy, labels_a, rng.integers(0, 3, size=200))

    kappa = cohen_kappa(labels_a.tolist(), labels_b.tolist())

    assert kappa == pytest.approx(cohen_kappa_score(labels_a, labels_b), abs=1e-12)


def test_cohen_kappa_works_on_string_labels():
    labels_a = ["spam", "ham", "ham", "spam", "ham", "other"]
    labels_b = ["spam", "ham", "spam", "spam", "other", "other"]

    assert cohen_kappa(labels_a, labels_b) == pytest.approx(cohen_kappa_score(labels_a, labels_b), abs=1e-12)


def test_cohen_kappa_degenerate_cases():
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["spam"] * 5, ["spam"] * 5) == 1.0  # chance agreement is 1; sklearn would give nan
    assert cohen_kappa(["spam"] * 4, ["ham"] * 4) == 0.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


# --- pairwise kappa -------------------------------------------------------------------------------------------


def three_annotator_ratings() -> list[tuple[int, int, str]]:
    """Annotator 1 labels items 1-10, annotator 2 items 1-6, annotator 3 items 4-10, annotator 9 item 99 alone."""
    truth = {item: "spam" if item % 3 == 0 else "ham" for item in range(1, 11)}
    ratings = [(5, 2, "ham")]  # an early answer for item 5, replaced by annotator 2's later "spam"
    ratings += [(item, 3, "spam" if item == 8 else truth[item]) for item in range(4, 11)]
    ratings += [(item, 1, truth[item]) for item in range(1, 11)]
    ratings += [(item, 2, "spam" if item in (2, 5) else truth[item]) for item in range(1, 7)]
    ratings += [(99, 9, "ham")]
    return ratings


def by_annotator(ratings: list[tuple[int, int, str]]) -> dict[int, dict[int, str]]:
    """Index ratings as annotator -> item -> last label."""
    index: dict[int, dict[int, str]] = defaultdict(dict)
    for item, annotator, label in ratings:
        index[annotator][item] = label
    return index


def test_pairwise_kappa_reports_every_overlapping_pair_in_order():
    ratings = three_annotator_ratings()
    index = by_annotator(ratings)

    pairs = pairwise_kappa(ratings)

    assert [(p.annotator_a, p.annotator_b, p.n_items) for p in pairs] == [(1, 3, 7), (1, 2, 6), (2, 3, 3)]
    for pair in pairs:
        shared = sorted(index[pair.annotator_a].keys() & index[pair.annotator_b].keys())
        labels_a = [index[pair.annotator_a][item] for item in shared]
        labels_b = [index[pair.annotator_b][item] for item in shared]
        assert pair.n_items == len(shared)
        assert pair.observed == pytest.approx(
            sum(a == b for a, b in zip(labels_a, labels_b, strict=True)) / len(shared)
        )
        assert pair.kappa == pytest.approx(cohen_kappa(labels_a, labels_b), abs=1e-12)
        assert pair.kappa == pytest.approx(cohen_kappa_score(labels_a, labels_b), abs=1e-12)
    # Items 1-6: annotator 1 says h h s h h s, annotator 2 says h s s h s s (item 5 relabeled to spam).
    # Agreement 4/6; marginals (4, 2) and (2, 4), so kappa = (6 * 4 - 16) / (36 - 16) = 0.4.
    assert pairs[1] == PairAgreement(annotator_a=1, annotator_b=2, n_items=6, observed=4 / 6, kappa=pytest.approx(0.4))


def test_pairwise_kappa_min_items_filter():
    ratings = three_annotator_ratings()

    assert [(p.annotator_a, p.annotator_b) for p in pairwise_kappa(ratings, min_items=4)] == [(1, 3), (1, 2)]
    assert [(p.annotator_a, p.annotator_b) for p in pairwise_kappa(ratings, min_items=7)] == [(1, 3)]
    assert pairwise_kappa(ratings, min_items=8) == []
    with pytest.raises(ValueError):
        pairwise_kappa(ratings, min_items=0)


def test_pairwise_kappa_handles_empty_and_solo_input():
    assert pairwise_kappa([]) == []
    assert pairwise_kappa([(1, 1, "a"), (2, 2, "a"), (1, 1, "b")]) == []


def test_pairwise_kappa_degenerate_pair():
    ratings = [(item, annotator, "ham") for item in range(3) for annotator in (5, 2)]

    assert pairwise_kappa(ratings) == [PairAgreement(annotator_a=2, annotator_b=5, n_items=3, observed=1.0, kappa=1.0)]


def test_pairwise_kappa_ties_break_on_annotator_ids():
    ratings = [(item, annotator, item % 2) for item in range(4) for annotator in (30, 10, 20)]

    assert [(p.annotator_a, p.annotator_b) for p in pairwise_kappa(ratings)] == [(10, 20), (10, 30), (20, 30)]


# --- scale ----------------------------------------------------------------------------------------------------


def test_statistics_run_on_a_hundred_thousand_items():
    rng = np.random.default_rng(2024)
    n_items, n_annotators = 100_000, 12
    truth = rng.integers(0, 4, size=n_items)
    raters_per_item = rng.integers(2, 6, size=n_items)
    ratings = []
    for item in range(n_items):
        for annotator in rng.choice(n_annotators, size=raters_per_item[item], replace=False).tolist():
            label = int(truth[item]) if rng.random() < 0.8 else int(rng.integers(0, 4))
            ratings.append((item, annotator, label))

    alpha = krippendorff_alpha_nominal(ratings)
    pairs = pairwise_kappa(ratings, min_items=100)

    assert alpha.n_items == n_items
    assert alpha.n_values == len(ratings)
    assert alpha.alpha is not None and 0.5 < alpha.alpha < 0.9
    assert len(pairs) == n_annotators * (n_annotators - 1) // 2
    assert sum(pair.n_items for pair in pairs) == int((raters_per_item * (raters_per_item - 1) // 2).sum())
    assert all(pair.kappa is not None and 0.5 < pair.kappa < 0.9 for pair in pairs)
