"""Blend the candidate sources into one queue slice: rank, filter, and share the slots out by quota.

The queue is built like a recommender cascade. Sources (``candidates.py``) propose rows with scores; here:

1. **Ranking**: every proposal gets one priority, ``score × weight`` of its source. An example proposed by several
   sources goes to the one with a quota that ranks it highest.
2. **Filtering**: excluded ids (already labeled, leased, gold) are dropped, then exact duplicates (same text key)
   and near duplicates (cosine ≥ ``near_duplicate``) of an item already in the slice.
3. **Blending**: each source gets ``quota × size`` slots; a source with too few candidates gives its spare slots
   to the others in proportion to their quotas, so no source starves the rest and none is left unused. The
   sources are interleaved in proportion to their shares, so the first items an annotator sees are already
   mixed, and each item's queue priority follows that order.

Pure: ids in, picks out. ``models_app.services.queue_plan`` loads the inputs; ``queue_builds`` writes the picks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from models_app.ml.candidates import NEAR_DUPLICATE_SIMILARITY, Candidates, duplicate_groups

SOURCES = ("uncertain", "hard_negative", "label_error", "llm_disagrees", "feedback", "exploration")
DEFAULT_QUOTAS: dict[str, float] = {
    "uncertain": 0.5,
    "hard_negative": 0.15,
    "label_error": 0.05,
    "llm_disagrees": 0.1,
    "feedback": 0.1,
    "exploration": 0.1,
}
DEFAULT_WEIGHTS: dict[str, float] = dict.fromkeys(SOURCES, 1.0)
# Which source keeps an example two sources rank equally: the most specific reason first.
TIE_ORDER = ("feedback", "label_error", "llm_disagrees", "hard_negative", "uncertain", "exploration")
UNKNOWN_SOURCE = "Unknown queue source {name!r}: choose from " + ", ".join(SOURCES) + "."
QUOTAS_EMPTY = "At least one source needs a quota above 0."


@dataclass(frozen=True)
class Pick:
    """One item of the slice: the example id, the source that won it, its scores and reason, and its order."""

    example_id: int
    source: str
    score: float
    rank_score: float
    reason: str
    position: int


@dataclass(frozen=True)
class Blend:
    """The slice, best first, with what each stage did (for the queue page and the benchmark)."""

    picks: tuple[Pick, ...]
    proposed: dict[str, int] = field(default_factory=dict)
    picked: dict[str, int] = field(default_factory=dict)
    slots: dict[str, int] = field(default_factory=dict)
    dropped_excluded: int = 0
    dropped_contested: int = 0
    dropped_duplicates: int = 0
    dropped_near_duplicates: int = 0

    def ids(self) -> list[int]:
        return [pick.example_id for pick in self.picks]


def check_sources(values: Mapping[str, float]) -> None:
    unknown = sorted(set(values) - set(SOURCES))
    if unknown:
        raise ValueError(UNKNOWN_SOURCE.format(name=unknown[0]))


def allocate(quotas: Mapping[str, float], available: Mapping[str, int], size: int) -> dict[str, int]:
    """Share ``size`` slots by quota (largest remainders), then move spare slots to sources that have more.

    A source never gets more slots than it has candidates; when every source is exhausted the total is below size.
    """
    check_sources(quotas)
    active = {name: float(share) for name, share in quotas.items() if share > 0}
    if not active:
        raise ValueError(QUOTAS_EMPTY)
    slots = dict.fromkeys(active, 0)
    remaining = size
    open_sources = {name for name in active if available.get(name, 0) > 0}
    while remaining > 0 and open_sources:
        total = sum(active[name] for name in open_sources)
        exact = {name: remaining * active[name] / total for name in open_sources}
        grant = {name: int(exact[name]) for name in open_sources}
        leftover = remaining - sum(grant.values())
        for name in sorted(open_sources, key=lambda n: (exact[n] - grant[n], active[n], n), reverse=True)[:leftover]:
            grant[name] += 1
        given = 0
        for name in open_sources:
            room = available.get(name, 0) - slots[name]
            take = min(grant[name], room)
            slots[name] += take
            given += take
        remaining -= given
        open_sources = {name for name in open_sources if slots[name] < available.get(name, 0)}
        if given == 0:
            break
    return slots


def _interleave(chosen: dict[str, list[tuple[int, float, float, str]]]) -> list[tuple[str, int, float, float, str]]:
    """Merge the per-source lists so each source appears in proportion to its share, best items first."""
    keyed = []
    for name, items in chosen.items():
        for rank, (example_id, score, rank_score, reason) in enumerate(items):
            keyed.append(((rank + 0.5) / len(items), -rank_score, name, example_id, score, rank_score, reason))
    keyed.sort(key=lambda entry: entry[:4])
    return [
        (name, example_id, score, rank_score, reason) for _, _, name, example_id, score, rank_score, reason in keyed
    ]


def _fill(
    lists: dict[str, list[tuple[int, float, float, str]]],
    quotas: dict[str, float],
    size: int,
    text_keys: Mapping[int, str],
    blocked: set[int],
) -> tuple[dict[str, list[tuple[int, float, float, str]]], dict[str, int], int, set[int]]:
    """Fill each source's slots greedily, highest score x weight first across all sources.

    An example two sources want goes to the one that ranks it higher while that one still has a free slot; the
    other goes on to its next candidates. A source left short (its candidates were taken or duplicates) gives its
    spare slots to the others in the next round. Return the picks per source, the slots, how many proposals lost an
    example to another source, and the ids dropped as exact duplicates.
    """
    chosen: dict[str, list[tuple[int, float, float, str]]] = {name: [] for name in lists}
    taken: dict[int, str] = {}
    keys: set[str] = set()
    contested: set[tuple[str, int]] = set()
    exact: set[int] = set()
    # On equal score x weight the more specific source wins: a production prediction's own uncertainty makes it a
    # feedback item rather than one more uncertain one.
    order = sorted(
        ((entry[2], position, name, entry) for name, items in lists.items() for position, entry in enumerate(items)),
        key=lambda item: (-item[0], TIE_ORDER.index(item[2]) if item[2] in TIE_ORDER else len(TIE_ORDER)),
    )
    slots: dict[str, int] = {}
    for _ in range(3):
        left = {
            name: len(chosen[name])
            + sum(1 for entry in items if entry[0] not in taken and entry[0] not in blocked and entry[0] not in exact)
            for name, items in lists.items()
        }
        slots = allocate(quotas, left, size)
        grew = False
        for _, _, name, entry in order:
            example_id = entry[0]
            if len(chosen[name]) >= slots.get(name, 0) or example_id in blocked or example_id in exact:
                continue
            if example_id in taken:
                if taken[example_id] != name:
                    contested.add((name, example_id))
                continue
            key = text_keys.get(example_id)
            if key is not None and key in keys:
                exact.add(example_id)
                continue
            if key is not None:
                keys.add(key)
            taken[example_id] = name
            chosen[name].append(entry)
            grew = True
        if not grew or sum(len(items) for items in chosen.values()) >= size:
            break
    return {name: items for name, items in chosen.items() if items}, slots, len(contested), exact


def blend(
    sources: Sequence[Candidates],
    *,
    size: int,
    quotas: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    exclude: set[int] | frozenset[int] = frozenset(),
    text_keys: Mapping[int, str] | None = None,
    vectors: Callable[[np.ndarray], np.ndarray | sp.spmatrix] | None = None,
    near_duplicate: float = NEAR_DUPLICATE_SIMILARITY,
) -> Blend:
    """Build a slice of at most ``size`` items from the sources' candidates (their ``index`` holds example ids).

    ``vectors(ids)`` returns feature rows for near-duplicate filtering; without it only exact duplicates (equal
    ``text_keys``) are dropped.
    """
    quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    check_sources(quotas)
    check_sources(weights)
    text_keys = text_keys or {}

    # Ranking: one priority per proposal, score x weight. A source without a quota can never be picked: it takes part
    # in nothing. Each source's list is its candidates, best first, each id once.
    active = [name for name in SOURCES if quotas.get(name, 0.0) > 0]
    proposed: dict[str, int] = {}
    excluded: set[int] = set()
    lists: dict[str, list[tuple[int, float, float, str]]] = {name: [] for name in active}
    for candidates in sources:
        proposed[candidates.source] = proposed.get(candidates.source, 0) + len(candidates)
        if candidates.source not in lists:
            continue
        weight = weights.get(candidates.source, 1.0)
        for example_id, score, reason in zip(
            candidates.index.tolist(), candidates.score.tolist(), candidates.reason, strict=True
        ):
            if example_id in exclude:
                excluded.add(example_id)
                continue
            lists[candidates.source].append((example_id, score, score * weight, reason))
    for name, items in lists.items():
        items.sort(key=lambda entry: -entry[2])
        seen: set[int] = set()
        lists[name] = [entry for entry in items if not (entry[0] in seen or seen.add(entry[0]))]

    # Filtering and blending, repeated when near duplicates free slots for the next candidates.
    blocked: set[int] = set()
    for _ in range(4):
        chosen, slots, contested, exact = _fill(
            lists, {name: quotas[name] for name in active}, size, text_keys, blocked
        )
        merged = _interleave(chosen)
        near: set[int] = set()
        if vectors is not None and len(merged) >= 2:
            ids = np.array([example_id for _, example_id, *_ in merged], dtype=np.int64)
            duplicate = duplicate_groups(vectors(ids), np.arange(len(ids)), threshold=near_duplicate)
            near = {int(ids[i]) for i in np.flatnonzero(duplicate)}
        if not near:
            break
        blocked |= near
    else:
        merged = [entry for entry in merged if entry[1] not in blocked]
    dropped_near = len(blocked)
    dropped_exact = len(exact)
    excluded_count = len(excluded)

    picks = tuple(
        Pick(example_id=example_id, source=name, score=score, rank_score=rank_score, reason=reason, position=position)
        for position, (name, example_id, score, rank_score, reason) in enumerate(merged)
    )
    picked: dict[str, int] = {}
    for pick in picks:
        picked[pick.source] = picked.get(pick.source, 0) + 1
    return Blend(
        picks=picks,
        proposed=proposed,
        picked=picked,
        slots={name: count for name, count in slots.items() if count},
        dropped_excluded=excluded_count,
        dropped_contested=contested,
        dropped_duplicates=dropped_exact,
        dropped_near_duplicates=dropped_near,
    )
