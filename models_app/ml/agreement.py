"""Inter-annotator agreement: Cohen's kappa per annotator pair and Krippendorff's alpha over a whole project.

Ratings come in as ``(item_id, annotator_id, label)`` triples. Each annotator counts once per item: when the same
annotator appears twice for an item the last triple wins, so a relabel replaces the earlier answer. Labels are any
hashable values and are compared with ``==``; no label is treated as "missing", so leave unlabeled items out.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Rating = tuple[int, int, Hashable]


@dataclass(frozen=True)
class PairAgreement:
    """Agreement between two annotators on the items they both labeled."""

    annotator_a: int
    annotator_b: int
    n_items: int
    observed: float
    kappa: float | None


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's nominal alpha with the counts and disagreements it was computed from."""

    alpha: float | None
    n_items: int
    n_values: int
    observed_disagreement: float | None
    expected_disagreement: float | None


def _kappa_from_counts(n: int, agree: int, chance_products: int) -> float:
    """Compute kappa from integer counts so every caller gets the same single rounding step.

    ``chance_products`` is ``sum_c a_c * b_c`` over the two annotators' label marginals, so chance agreement is
    ``chance_products / n**2`` and kappa reduces to ``(n * agree - chance_products) / (n**2 - chance_products)``.
    """
    n_squared = n * n
    if chance_products == n_squared:
        return 1.0 if agree == n else 0.0
    return (n * agree - chance_products) / (n_squared - chance_products)


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float | None:
    """Return Cohen's kappa for two paired label sequences, so agreement is corrected for chance."""
    if len(labels_a) != len(labels_b):
        raise ValueError(f"label sequences differ in length: {len(labels_a)} != {len(labels_b)}")
    n = len(labels_a)
    if n == 0:
        return None
    codes: dict[Hashable, int] = {}
    a = np.fromiter((codes.setdefault(label, len(codes)) for label in labels_a), dtype=np.int64, count=n)
    b = np.fromiter((codes.setdefault(label, len(codes)) for label in labels_b), dtype=np.int64, count=n)
    agree = int(np.count_nonzero(a == b))
    marginal_a = np.bincount(a, minlength=len(codes))
    marginal_b = np.bincount(b, minlength=len(codes))
    return _kappa_from_counts(n, agree, int(marginal_a @ marginal_b))


def _latest(ratings: Iterable[Rating]) -> dict[tuple[int, int], Hashable]:
    """Keep one label per (item, annotator), the last one seen, so relabels replace earlier answers."""
    latest: dict[tuple[int, int], Hashable] = {}
    for item_id, annotator_id, label in ratings:
        latest[(item_id, annotator_id)] = label
    return latest


def _encode(latest: dict[tuple[int, int], Hashable]) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray, int]:
    """Turn ratings into dense integer codes so the statistics can run as numpy array operations.

    Returns item codes, the raw annotator ids, annotator codes, label codes and the number of distinct labels.
    """
    count = len(latest)
    item_codes: dict[Hashable, int] = {}
    label_codes: dict[Hashable, int] = {}
    items = np.fromiter((item_codes.setdefault(item, len(item_codes)) for item, _ in latest), np.int64, count=count)
    labels = np.fromiter(
        (label_codes.setdefault(label, len(label_codes)) for label in latest.values()), np.int64, count=count
    )
    annotator_ids = sorted({annotator for _, annotator in latest})
    annotator_index = {annotator: index for index, annotator in enumerate(annotator_ids)}
    annotators = np.fromiter((annotator_index[annotator] for _, annotator in latest), np.int64, count=count)
    return items, annotator_ids, annotators, labels, len(label_codes)


def pairwise_kappa(ratings: Iterable[Rating], min_items: int = 1) -> list[PairAgreement]:
    """Return Cohen's kappa for every annotator pair with enough shared items, to spot who disagrees with whom.

    Pairs are sorted by ``(-n_items, annotator_a, annotator_b)`` so the best-supported pairs come first.
    """
    if min_items < 1:
        raise ValueError("min_items must be at least 1: pairs without shared items have no agreement")
    latest = _latest(ratings)
    if not latest:
        return []
    items, annotator_ids, annotators, labels, n_labels = _encode(latest)

    # Sort by (item, annotator); then every co-labeled pair sits at some distance d inside one item's run,
    # with the lower annotator code first. Runs are contiguous, so once no run reaches length d + 1 we are done.
    order = np.lexsort((annotators, items))
    items, annotators, labels = items[order], annotators[order], labels[order]
    first_a, first_b, label_a, label_b = [], [], [], []
    for d in range(1, len(items)):
        same_item = items[:-d] == items[d:]
        if not same_item.any():
            break
        first_a.append(annotators[:-d][same_item])
        first_b.append(annotators[d:][same_item])
        label_a.append(labels[:-d][same_item])
        label_b.append(labels[d:][same_item])
    if not first_a:
        return []
    ann_a, ann_b = np.concatenate(first_a), np.concatenate(first_b)
    lab_a, lab_b = np.concatenate(label_a), np.concatenate(label_b)

    pair_keys, pair_index = np.unique(ann_a * len(annotator_ids) + ann_b, return_inverse=True)
    n_pairs = len(pair_keys)
    n_shared = np.bincount(pair_index, minlength=n_pairs)
    n_agree = np.bincount(pair_index[lab_a == lab_b], minlength=n_pairs)
    marginal_a = np.bincount(pair_index * n_labels + lab_a, minlength=n_pairs * n_labels).reshape(n_pairs, n_labels)
    marginal_b = np.bincount(pair_index * n_labels + lab_b, minlength=n_pairs * n_labels).reshape(n_pairs, n_labels)
    chance_products = (marginal_a * marginal_b).sum(axis=1)

    result = []
    for key, n, agree, products in zip(
        pair_keys.tolist(), n_shared.tolist(), n_agree.tolist(), chance_products.tolist(), strict=True
    ):
        if n < min_items:
            continue
        code_a, code_b = divmod(key, len(annotator_ids))
        result.append(
            PairAgreement(
                annotator_a=annotator_ids[code_a],
                annotator_b=annotator_ids[code_b],
                n_items=n,
                observed=agree / n,
                kappa=_kappa_from_counts(n, agree, products),
            )
        )
    result.sort(key=lambda pair: (-pair.n_items, pair.annotator_a, pair.annotator_b))
    return result


def krippendorff_alpha_nominal(ratings: Iterable[Rating]) -> AlphaResult:
    """Return Krippendorff's nominal alpha, which handles any number of annotators and missing ratings.

    Built on the coincidence matrix o_ck = sum_u n_uc * n_uk / (m_u - 1) (minus the self-pairs on the diagonal),
    where n_uc counts value c in item u and m_u is the item's number of values. Nominal disagreement only needs
    its diagonal and margins: D_o = 1 - sum_c o_cc / n and D_e = (n^2 - sum_c n_c^2) / (n (n - 1)), so the
    work is one pass over (item, label) counts rather than a dense matrix. Items with one value are dropped.
    """
    latest = _latest(ratings)
    if not latest:
        return AlphaResult(None, 0, 0, None, None)
    items, _, _, labels, n_labels = _encode(latest)

    values_per_item = np.bincount(items)
    pairable = values_per_item[items] >= 2
    items, labels = items[pairable], labels[pairable]
    n = len(items)
    n_items = int(np.count_nonzero(values_per_item >= 2))
    if n < 2:
        return AlphaResult(None, n_items, n, None, None)

    cells, n_uc = np.unique(items * n_labels + labels, return_counts=True)
    m_u = values_per_item[cells // n_labels]
    coincidence_diagonal = float(np.sum(n_uc * (n_uc - 1) / (m_u - 1)))
    n_c = np.bincount(labels, minlength=n_labels)
    unequal_pairs = n * n - int(n_c @ n_c)
    if unequal_pairs == 0:
        return AlphaResult(None, n_items, n, 0.0, 0.0)

    observed = (n - coincidence_diagonal) / n
    expected = unequal_pairs / (n * (n - 1))
    return AlphaResult(
        alpha=1.0 - observed / expected,
        n_items=n_items,
        n_values=n,
        observed_disagreement=observed,
        expected_disagreement=expected,
    )
