"""Queue cascade: quota allocation by largest remainders, spare slots, and the invariants of every blended slice."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from models_app.ml.candidates import Candidates
from models_app.ml.cascade import (
    DEFAULT_QUOTAS,
    QUOTAS_EMPTY,
    SOURCES,
    UNKNOWN_SOURCE,
    Blend,
    allocate,
    blend,
)


def make(source: str, ids: list[int], scores: list[float] | None = None) -> Candidates:
    """Build a source's candidates; without scores they fall from 1.0 in proposal order."""
    if scores is None:
        scores = [1.0 - rank / (len(ids) + 1) for rank in range(len(ids))]
    return Candidates(
        source,
        np.array(ids, dtype=np.int64),
        np.array(scores, dtype=np.float64),
        tuple(f"{source} {example_id}" for example_id in ids),
    )


def plentiful(size: int, names: tuple[str, ...] = SOURCES) -> list[Candidates]:
    """Give every source `size` candidates with ids that never overlap."""
    return [make(name, [1000 * k + i for i in range(size)]) for k, name in enumerate(names, start=1)]


def assert_slice_invariants(result: Blend, size: int, exclude: set[int] | frozenset[int] = frozenset()) -> None:
    """Check what every slice promises whatever the inputs."""
    ids = result.ids()
    assert len(ids) == len(set(ids))
    assert len(ids) <= size
    assert not set(ids) & set(exclude)
    assert [pick.position for pick in result.picks] == list(range(len(ids)))
    counts = Counter(pick.source for pick in result.picks)
    assert dict(counts) == result.picked
    for name, count in counts.items():
        assert count <= result.slots.get(name, 0)


# Allocation


def test_allocate_default_quotas_on_a_hundred_slots() -> None:
    slots = allocate(DEFAULT_QUOTAS, dict.fromkeys(SOURCES, 1000), 100)
    assert slots == {
        "uncertain": 50,
        "hard_negative": 15,
        "label_error": 5,
        "llm_disagrees": 10,
        "feedback": 10,
        "exploration": 10,
    }


def test_allocate_gives_leftover_slots_to_the_largest_remainders() -> None:
    # Exact shares are 3.5, 2.1 and 1.4: floors sum to 6 and the one spare slot goes to the 0.5 remainder.
    quotas = {"uncertain": 0.5, "exploration": 0.3, "feedback": 0.2}
    assert allocate(quotas, dict.fromkeys(quotas, 50), 7) == {"uncertain": 4, "exploration": 2, "feedback": 1}
    # Exact shares 1.8, 1.2 (of 3 by 0.6 / 0.4): the remainder 0.8 wins.
    assert allocate({"uncertain": 0.6, "exploration": 0.4}, dict.fromkeys(SOURCES, 9), 3) == {
        "uncertain": 2,
        "exploration": 1,
    }


def test_allocate_moves_a_short_source_spare_to_the_others_in_proportion() -> None:
    quotas = {"uncertain": 0.5, "hard_negative": 0.25, "exploration": 0.25}
    slots = allocate(quotas, {"uncertain": 500, "hard_negative": 5, "exploration": 500}, 100)
    # hard_negative can fill 5 of its 25; the 20 spare split 2:1 between uncertain and exploration.
    assert slots["hard_negative"] == 5
    assert sum(slots.values()) == 100
    assert abs(slots["uncertain"] - (50 + 20 * 2 / 3)) < 1
    assert abs(slots["exploration"] - (25 + 20 / 3)) < 1


def test_allocate_skips_a_source_with_nothing_and_shares_among_the_rest() -> None:
    quotas = {"uncertain": 0.5, "hard_negative": 0.3, "exploration": 0.2}
    slots = allocate(quotas, {"uncertain": 100, "exploration": 100}, 10)
    assert slots == {"uncertain": 7, "hard_negative": 0, "exploration": 3}


def test_allocate_returns_less_than_size_only_when_every_source_is_exhausted() -> None:
    quotas = {"uncertain": 0.5, "exploration": 0.5}
    assert allocate(quotas, {"uncertain": 3, "exploration": 4, "feedback": 99}, 20) == {
        "uncertain": 3,
        "exploration": 4,
    }


def test_allocate_refuses_unknown_sources_and_empty_quotas() -> None:
    with pytest.raises(ValueError) as error:
        allocate({"uncertain": 0.5, "vibes": 0.5}, {}, 10)
    assert str(error.value) == UNKNOWN_SOURCE.format(name="vibes")
    with pytest.raises(ValueError) as error:
        allocate({"uncertain": 0.0, "exploration": 0.0}, {"uncertain": 5}, 10)
    assert str(error.value) == QUOTAS_EMPTY
    with pytest.raises(ValueError) as error:
        allocate({}, {"uncertain": 5}, 10)
    assert str(error.value) == QUOTAS_EMPTY


quota_values = st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.15, 0.3, 0.5, 1.0])
quotas_strategy = st.dictionaries(st.sampled_from(SOURCES), quota_values, min_size=1).filter(
    lambda quotas: any(share > 0 for share in quotas.values())
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    quotas=quotas_strategy,
    available=st.dictionaries(st.sampled_from(SOURCES), st.integers(0, 40)),
    size=st.integers(0, 120),
)
def test_allocate_invariants(quotas: dict[str, float], available: dict[str, int], size: int) -> None:
    slots = allocate(quotas, available, size)
    active = {name for name, share in quotas.items() if share > 0}
    assert set(slots) == active
    assert all(0 <= slots[name] <= available.get(name, 0) for name in slots)
    total = sum(slots.values())
    assert total <= size
    if total < size:
        assert all(slots[name] == available.get(name, 0) for name in active)
    # A source that still has candidates left never gets less than its plain share rounded down.
    total_share = sum(quotas[name] for name in active)
    for name in active:
        if slots[name] < available.get(name, 0):
            assert slots[name] >= math.floor(size * quotas[name] / total_share)


@hypothesis_settings(max_examples=200, deadline=None)
@given(quotas=quotas_strategy, size=st.integers(0, 120))
def test_allocate_holds_quotas_exactly_when_every_source_has_enough(quotas: dict[str, float], size: int) -> None:
    slots = allocate(quotas, dict.fromkeys(SOURCES, size), size)
    total_share = sum(share for share in quotas.values() if share > 0)
    assert sum(slots.values()) == size
    for name, count in slots.items():
        assert abs(count - size * quotas[name] / total_share) < 1


# Blending: hand-made cases


def test_blend_gives_each_source_its_quota_when_all_have_plenty() -> None:
    result = blend(plentiful(200), size=100)
    assert_slice_invariants(result, 100)
    assert len(result.picks) == 100
    assert result.picked == allocate(DEFAULT_QUOTAS, dict.fromkeys(SOURCES, 200), 100)
    assert result.picked["exploration"] == 10


def test_blend_takes_each_source_best_candidates() -> None:
    uncertain = make("uncertain", [1, 2, 3, 4, 5, 6], [0.2, 0.9, 0.5, 0.7, 0.1, 0.3])
    result = blend([uncertain], size=3, quotas={"uncertain": 1.0})
    assert result.ids() == [2, 4, 3]
    assert [pick.reason for pick in result.picks] == ["uncertain 2", "uncertain 4", "uncertain 3"]


def test_blend_contested_id_goes_to_the_higher_weighted_score() -> None:
    uncertain = make("uncertain", [5, 6, 7], [0.6, 0.5, 0.4])
    hard = make("hard_negative", [5, 8], [0.4, 0.3])
    quotas = {"uncertain": 0.5, "hard_negative": 0.5}
    plain = blend([uncertain, hard], size=4, quotas=quotas)
    assert {pick.example_id: pick.source for pick in plain.picks}[5] == "uncertain"
    weighted = blend([uncertain, hard], size=4, quotas=quotas, weights={"hard_negative": 2.0})
    by_id = {pick.example_id: pick for pick in weighted.picks}
    assert by_id[5].source == "hard_negative"
    assert by_id[5].score == pytest.approx(0.4)
    assert by_id[5].rank_score == pytest.approx(0.8)
    assert weighted.dropped_contested == 1
    assert_slice_invariants(weighted, 4)


def test_blend_source_without_a_quota_claims_nothing() -> None:
    # Exploration outscores uncertain on id 5 but has no slots; uncertain must still be able to pick it.
    uncertain = make("uncertain", [5, 6, 7], [0.9, 0.5, 0.4])
    explore = make("exploration", [5], [1.0])
    result = blend([uncertain, explore], size=3, quotas={"uncertain": 1.0})
    assert result.ids() == [5, 6, 7]
    assert result.proposed == {"uncertain": 3, "exploration": 1}


def test_blend_drops_excluded_ids() -> None:
    uncertain = make("uncertain", [1, 2, 3, 4, 5])
    result = blend([uncertain], size=3, quotas={"uncertain": 1.0}, exclude={1, 3})
    assert result.ids() == [2, 4, 5]
    assert result.dropped_excluded == 2
    assert result.proposed == {"uncertain": 5}


def test_blend_keeps_the_first_of_exact_duplicates_within_a_source() -> None:
    uncertain = make("uncertain", [1, 2, 3, 4, 5, 6])
    text_keys = {1: "buy now", 2: "buy now", 3: "nice song", 4: "first", 5: "nice song"}
    result = blend([uncertain], size=4, quotas={"uncertain": 1.0}, text_keys=text_keys)
    assert result.ids() == [1, 3, 4, 6]
    assert result.dropped_duplicates == 2


def test_blend_keeps_one_of_exact_duplicates_across_sources_and_stays_full() -> None:
    uncertain = make("uncertain", list(range(1, 11)))
    # Exploration has exactly its three slots' worth of candidates, two of them copies of uncertain's best.
    explore = make("exploration", [11, 12, 13])
    text_keys = {1: "a", 2: "b", 11: "a", 12: "b", 13: "c"}
    quotas = {"uncertain": 0.5, "exploration": 0.5}
    result = blend([uncertain, explore], size=6, quotas=quotas, text_keys=text_keys)
    assert_slice_invariants(result, 6)
    ids = result.ids()
    keys = [text_keys[i] for i in ids if i in text_keys]
    assert len(keys) == len(set(keys))
    assert len(ids) == 6


def near_duplicate_vectors(pairs: dict[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """Give every id its own axis, except ids in `pairs`, which point almost along their partner's axis."""

    def vectors(ids: np.ndarray) -> np.ndarray:
        rows = np.zeros((len(ids), 200))
        for row, example_id in enumerate(ids.tolist()):
            rows[row, pairs.get(example_id, example_id)] = 1.0
            if example_id in pairs:
                rows[row, 199] = 0.05
        return rows

    return vectors


def test_blend_replaces_near_duplicates_with_the_next_candidates() -> None:
    uncertain = make("uncertain", list(range(1, 11)))
    vectors = near_duplicate_vectors({2: 1, 4: 3})
    result = blend([uncertain], size=5, quotas={"uncertain": 1.0}, vectors=vectors)
    assert result.ids() == [1, 3, 5, 6, 7]
    assert result.dropped_near_duplicates == 2
    assert_slice_invariants(result, 5)


def test_blend_near_duplicates_across_sources_keep_one_and_stay_full() -> None:
    uncertain = make("uncertain", list(range(1, 21)))
    explore = make("exploration", list(range(101, 121)))
    # 101 and 102 copy uncertain's two best; 103 copies 101.
    vectors = near_duplicate_vectors({101: 1, 102: 2, 103: 1})
    quotas = {"uncertain": 0.5, "exploration": 0.5}
    result = blend([uncertain, explore], size=10, quotas=quotas, vectors=vectors)
    ids = result.ids()
    assert len(ids) == 10
    assert not {1, 101, 103} <= set(ids)
    assert sum(i in ids for i in (1, 101, 103)) == 1
    assert sum(i in ids for i in (2, 102)) == 1
    assert result.picked == {"uncertain": 5, "exploration": 5}
    assert_slice_invariants(result, 10)


def test_blend_near_duplicate_threshold_is_respected() -> None:
    uncertain = make("uncertain", list(range(1, 11)))
    vectors = near_duplicate_vectors({2: 1})
    # Rows 1 and 2 have a cosine of about 0.9988.
    strict = blend([uncertain], size=3, quotas={"uncertain": 1.0}, vectors=vectors, near_duplicate=0.9999)
    assert strict.ids() == [1, 2, 3]
    loose = blend([uncertain], size=3, quotas={"uncertain": 1.0}, vectors=vectors, near_duplicate=0.99)
    assert loose.ids() == [1, 3, 4]


def test_blend_interleaves_every_source_into_the_first_picks() -> None:
    result = blend(plentiful(200), size=100)
    first = [pick.source for pick in result.picks[:15]]
    assert set(first) == set(SOURCES)
    assert "exploration" in [pick.source for pick in result.picks[:10]]
    # Any prefix holds each source close to its share of the slice.
    for k in range(1, 101):
        prefix = Counter(pick.source for pick in result.picks[:k])
        for name in SOURCES:
            assert abs(prefix[name] - k * result.picked[name] / 100) <= 1.5, (k, name)


def test_blend_each_source_best_comes_first_within_the_interleaving() -> None:
    result = blend(plentiful(50), size=40)
    for name in SOURCES:
        scores = [pick.rank_score for pick in result.picks if pick.source == name]
        assert scores == sorted(scores, reverse=True)


def test_blend_refuses_unknown_sources() -> None:
    with pytest.raises(ValueError):
        blend(plentiful(5), size=5, quotas={"vibes": 1.0})
    with pytest.raises(ValueError):
        blend(plentiful(5), size=5, weights={"vibes": 2.0})
    with pytest.raises(ValueError):
        blend(plentiful(5), size=5, quotas={"uncertain": 0.0})


# Blending: invariants over random inputs


@st.composite
def blend_inputs(draw: st.DrawFn) -> tuple[list[Candidates], dict[str, float], dict[str, float], set[int], int]:
    """Draw overlapping sources over a small id space, with weights, quotas, exclusions and a size."""
    sources = []
    for name in draw(st.lists(st.sampled_from(SOURCES), min_size=1, max_size=7)):
        ids = draw(st.lists(st.integers(0, 59), max_size=30, unique=True))
        scores = draw(
            st.lists(
                st.one_of(st.sampled_from([0.1, 0.5, 0.9, 1.0]), st.floats(0.0, 1.0)),
                min_size=len(ids),
                max_size=len(ids),
            )
        )
        sources.append(make(name, ids, scores))
    weights = draw(st.dictionaries(st.sampled_from(SOURCES), st.sampled_from([0.5, 1.0, 2.0])))
    quotas = draw(quotas_strategy)
    exclude = draw(st.sets(st.integers(0, 59), max_size=15))
    size = draw(st.integers(0, 40))
    return sources, weights, quotas, exclude, size


def reference_owners(
    sources: list[Candidates], weights: dict[str, float], quotas: dict[str, float], exclude: set[int]
) -> dict[int, tuple[float, str]]:
    """Find each id's winning source among those with a quota: the highest score x weight, the earliest on a tie."""
    owner: dict[int, tuple[float, str]] = {}
    for candidates in sources:
        if quotas.get(candidates.source, 0.0) <= 0:
            continue
        weight = weights.get(candidates.source, 1.0)
        for example_id, score in zip(candidates.index.tolist(), candidates.score.tolist(), strict=True):
            if example_id in exclude:
                continue
            if example_id not in owner or score * weight > owner[example_id][0]:
                owner[example_id] = (score * weight, candidates.source)
    return owner


@hypothesis_settings(max_examples=200, deadline=None)
@given(inputs=blend_inputs())
def test_blend_invariants(inputs: tuple[list[Candidates], dict[str, float], dict[str, float], set[int], int]) -> None:
    sources, weights, quotas, exclude, size = inputs
    result = blend(sources, size=size, quotas=quotas, weights=weights, exclude=exclude)
    assert_slice_invariants(result, size, exclude)

    owner = reference_owners(sources, weights, quotas, exclude)
    offered: dict[tuple[str, int], float] = {}
    for candidates in sources:
        weight = weights.get(candidates.source, 1.0)
        for example_id, score in zip(candidates.index.tolist(), candidates.score.tolist(), strict=True):
            key = (candidates.source, example_id)
            if example_id not in exclude:
                offered[key] = max(offered.get(key, float("-inf")), score * weight)
    for pick in result.picks:
        # Every pick is one of its source's own proposals, at that proposal's score x weight.
        assert offered[(pick.source, pick.example_id)] == pytest.approx(pick.rank_score)
        assert pick.rank_score == pytest.approx(pick.score * weights.get(pick.source, 1.0))

    # The slice is as full as the candidates of sources with a quota allow.
    assert len(result.picks) == min(size, len(owner))
    # No source passed over a better candidate of its own that nobody took.
    picked_ids = set(result.ids())
    for name in result.picked:
        lowest = min(pick.rank_score for pick in result.picks if pick.source == name)
        free = [
            rank for (source, example_id), rank in offered.items() if source == name and example_id not in picked_ids
        ]
        assert all(rank <= lowest + 1e-9 for rank in free)


@hypothesis_settings(max_examples=100, deadline=None)
@given(quotas=quotas_strategy, size=st.integers(0, 60), plenty=st.integers(0, 20))
def test_blend_holds_quotas_when_every_source_has_plenty(quotas: dict[str, float], size: int, plenty: int) -> None:
    result = blend(plentiful(size + plenty), size=size, quotas=quotas)
    assert_slice_invariants(result, size)
    expected = {name: count for name, count in allocate(quotas, dict.fromkeys(SOURCES, size), size).items() if count}
    assert result.picked == expected
    total_share = sum(share for share in quotas.values() if share > 0)
    for name, count in result.picked.items():
        assert abs(count - size * quotas[name] / total_share) < 1


@hypothesis_settings(max_examples=100, deadline=None)
@given(inputs=blend_inputs(), n_texts=st.integers(1, 30))
def test_blend_never_repeats_a_text(
    inputs: tuple[list[Candidates], dict[str, float], dict[str, float], set[int], int], n_texts: int
) -> None:
    sources, weights, quotas, exclude, size = inputs
    text_keys = {example_id: f"text {example_id % n_texts}" for example_id in range(60)}
    result = blend(sources, size=size, quotas=quotas, weights=weights, exclude=exclude, text_keys=text_keys)
    assert_slice_invariants(result, size, exclude)
    texts = [text_keys[i] for i in result.ids()]
    assert len(texts) == len(set(texts))
    # Distinct texts among the owned candidates of sources with a quota bound how full the slice can be.
    owner = reference_owners(sources, weights, quotas, exclude)
    distinct = {text_keys[i] for i in owner}
    assert len(result.picks) <= min(size, len(distinct))


def test_a_source_whose_best_items_go_to_a_higher_ranked_source_still_fills_its_share():
    # The LLM's doubts overlap the model's: the model's uncertainty ranks them higher, so the LLM source takes its
    # next candidates instead of losing its share.
    uncertain = make("uncertain", list(range(20)), [0.9] * 20)
    llm = make("llm_disagrees", [0, 1, 2, 3, 30, 31, 32, 33], [0.3] * 8)
    result = blend([uncertain, llm], size=10, quotas={"uncertain": 0.8, "llm_disagrees": 0.2})
    assert result.picked == {"uncertain": 8, "llm_disagrees": 2}
    assert {pick.example_id for pick in result.picks if pick.source == "llm_disagrees"} == {30, 31}
    assert result.dropped_contested == 4
