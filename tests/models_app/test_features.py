"""The feature store computes each example's vectors once per featurizer version and loads them back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.models import Example
from models_app.ml.featurizers import HashingFeaturizer, MiniLMFeaturizer
from models_app.models import FeatureSet, FeatureShard
from models_app.services import (
    FeatureStoreError,
    feature_set_get_or_create,
    feature_set_missing_ids,
    features_compute,
    features_load,
    features_verify,
    featurizer_build,
)
from models_app.services.feature_shards import ERROR_SHARD_CHECKSUM, ERROR_SHARD_SIZE, feature_dir
from models_app.services.features import ERROR_MISSING_VECTORS, ERROR_UNKNOWN_FEATURIZER, ERROR_VERSION_MISMATCH

from .factories import CountingFeaturizer, FakeDenseFeaturizer, dense, examples_create, small_hashing

pytestmark = pytest.mark.django_db

# Far above any id the database hands out in these tests, so chosen ids never collide with generated ones.
BASE_ID = 9_000_000


def _texts(prefix: str, count: int) -> list[str]:
    return [f"{prefix} comment number {n} about the video" for n in range(count)]


def _expected(featurizer, project) -> tuple[np.ndarray, np.ndarray]:
    """Featurize every example of the project directly, in id order."""
    rows = list(Example.objects.filter(project=project).order_by("id").values_list("id", "text"))
    ids = np.array([pk for pk, _ in rows], dtype=np.int64)
    return ids, dense(featurizer.transform([text for _, text in rows]))


def test_only_examples_without_vectors_are_featurized_and_load_returns_each_once(project):
    examples_create(project, _texts("first", 25))
    featurizer = CountingFeaturizer(small_hashing())
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)

    assert features_compute(feature_set=feature_set, featurizer=featurizer, chunk_size=10) == 25
    assert featurizer.calls == 3 and len(featurizer.texts) == 25
    examples_create(project, _texts("second", 7))
    assert features_compute(feature_set=feature_set, featurizer=featurizer, chunk_size=10) == 7
    assert len(featurizer.texts) == 32 and sorted(featurizer.texts[25:]) == sorted(_texts("second", 7))
    assert features_compute(feature_set=feature_set, featurizer=featurizer) == 0
    assert len(featurizer.texts) == 32

    feature_set.refresh_from_db()
    assert feature_set.rows == 32 and feature_set.sparse and feature_set.dim == 256
    assert list(feature_set.shards.values_list("number", "rows")) == [(1, 10), (2, 10), (3, 5), (4, 7)]
    loaded = features_load(feature_set=feature_set, verify=True)
    ids, expected = _expected(small_hashing(), project)
    np.testing.assert_array_equal(loaded.ids, ids)
    np.testing.assert_array_equal(dense(loaded.matrix), expected)
    assert loaded.matrix.dtype == np.float32 and loaded.matrix.format == "csr"
    assert features_verify(feature_set=feature_set) == 32


def test_examples_committed_with_lower_ids_later_are_featurized_and_loaded_in_id_order(project):
    featurizer = FakeDenseFeaturizer()
    examples_create(project, _texts("late", 6), ids=[BASE_ID + 100 + n for n in range(6)])
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    assert features_compute(feature_set=feature_set, featurizer=featurizer) == 6
    # An import that started earlier commits lower ids after the shard above was written.
    examples_create(project, _texts("early", 4), ids=[BASE_ID + 10 + n for n in range(4)])

    assert feature_set_missing_ids(feature_set=feature_set).tolist() == [BASE_ID + 10 + n for n in range(4)]
    counting = CountingFeaturizer(featurizer)
    assert features_compute(feature_set=feature_set, featurizer=counting) == 4
    assert sorted(counting.texts) == sorted(_texts("early", 4))
    assert feature_set_missing_ids(feature_set=feature_set).size == 0

    loaded = features_load(feature_set=feature_set)
    ids, expected = _expected(featurizer, project)
    np.testing.assert_array_equal(loaded.ids, ids)
    assert isinstance(loaded.matrix, np.ndarray)
    np.testing.assert_array_equal(loaded.matrix, expected)


def test_rows_for_follows_the_given_order_and_names_examples_without_vectors(project):
    featurizer = FakeDenseFeaturizer()
    examples = examples_create(project, _texts("row", 12))
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    features_compute(feature_set=feature_set, featurizer=featurizer, chunk_size=5)
    loaded = features_load(feature_set=feature_set)
    by_id = {example.pk: example.text for example in examples}

    wanted = [examples[7].pk, examples[0].pk, examples[7].pk, examples[11].pk]
    np.testing.assert_array_equal(loaded.rows_for(wanted), featurizer.transform([by_id[pk] for pk in wanted]))
    later = examples_create(project, ["added after the load"])[0]
    with pytest.raises(FeatureStoreError) as error:
        loaded.rows_for([examples[0].pk, later.pk])
    assert str(error.value) == ERROR_MISSING_VECTORS.format(count=1, version=feature_set.version, ids=str(later.pk))

    subset = features_load(feature_set=feature_set, example_ids=[examples[9].pk, examples[2].pk, later.pk])
    assert subset.ids.tolist() == [examples[2].pk, examples[9].pk]
    np.testing.assert_array_equal(subset.matrix, featurizer.transform([by_id[examples[2].pk], by_id[examples[9].pk]]))


def test_new_params_make_a_new_feature_set_and_sets_never_mix(project):
    examples_create(project, _texts("mix", 9))
    narrow, wide = small_hashing(256), small_hashing(512)
    narrow_set = feature_set_get_or_create(project=project, featurizer=narrow)
    wide_set = feature_set_get_or_create(project=project, featurizer=wide)
    assert narrow_set.pk != wide_set.pk and narrow_set.version != wide_set.version
    assert feature_set_get_or_create(project=project, featurizer=small_hashing(256)).pk == narrow_set.pk

    features_compute(feature_set=narrow_set, featurizer=narrow)
    assert feature_set_missing_ids(feature_set=wide_set).size == 9
    counting = CountingFeaturizer(wide)
    assert features_compute(feature_set=wide_set, featurizer=counting) == 9 and len(counting.texts) == 9

    narrow_loaded, wide_loaded = features_load(feature_set=narrow_set), features_load(feature_set=wide_set)
    assert narrow_loaded.matrix.shape == (9, 256) and wide_loaded.matrix.shape == (9, 512)
    np.testing.assert_array_equal(dense(wide_loaded.matrix), _expected(wide, project)[1])
    assert FeatureShard.objects.filter(feature_set=narrow_set).count() == 1
    assert {shard.path.split("/")[1] for shard in FeatureShard.objects.all()} == {narrow.version, wide.version}
    with pytest.raises(FeatureStoreError) as error:
        features_compute(feature_set=wide_set, featurizer=narrow)
    assert str(error.value) == ERROR_VERSION_MISMATCH.format(actual=narrow.version, version=wide_set.version)


def test_a_changed_shard_fails_verification_and_a_cut_one_fails_every_load(project):
    examples_create(project, _texts("tamper", 5))
    featurizer = FakeDenseFeaturizer()
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    features_compute(feature_set=feature_set, featurizer=featurizer)
    shard = FeatureShard.objects.get(feature_set=feature_set)
    path = feature_dir() / shard.path

    content = bytearray(path.read_bytes())
    content[-3] ^= 0xFF
    path.write_bytes(bytes(content))
    features_load(feature_set=feature_set)  # same size and shape: only the checksum can tell
    with pytest.raises(FeatureStoreError) as error:
        features_load(feature_set=feature_set, verify=True)
    assert str(error.value) == ERROR_SHARD_CHECKSUM.format(number=1, version=feature_set.version)

    path.write_bytes(bytes(content[:-4]))
    with pytest.raises(FeatureStoreError) as error:
        features_load(feature_set=feature_set)
    assert str(error.value) == ERROR_SHARD_SIZE.format(
        number=1, version=feature_set.version, actual=shard.size_bytes - 4, expected=shard.size_bytes
    )


def test_shards_are_written_atomically_under_the_set_folder(project):
    examples_create(project, _texts("files", 3))
    featurizer = small_hashing()
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    features_compute(feature_set=feature_set, featurizer=featurizer)

    folder = feature_dir() / str(project.pk) / feature_set.version
    assert sorted(path.name for path in folder.iterdir()) == ["shard-000001-ids.npy", "shard-000001.npz"]
    assert np.load(folder / "shard-000001-ids.npy", allow_pickle=False).dtype == np.int64


def test_unknown_featurizers_and_params_are_refused():
    with pytest.raises(FeatureStoreError) as error:
        featurizer_build(name="bag-of-words")
    assert str(error.value) == ERROR_UNKNOWN_FEATURIZER.format(name="bag-of-words", choices="hashing, minilm")
    with pytest.raises(FeatureStoreError):
        featurizer_build(name="hashing", params={"n_features": 0})
    assert featurizer_build(name="hashing").params() == HashingFeaturizer().params()


def test_minilm_vectors_round_trip_through_the_store(project):
    texts = [
        "Check out my channel for free gift cards!!!",
        "This song never gets old.",
        "subscribe to me and I will subscribe back",
        "The dance at 2:10 is the best part",
        "Who is still watching in 2015?",
        "click here http://example.com to win",
        "I love the music video so much",
        "Great beat, terrible lyrics.",
        "please like my comment",
        "Korean pop is taking over",
    ]
    examples_create(project, texts)
    featurizer = MiniLMFeaturizer(threads=1)
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    assert features_compute(feature_set=feature_set, featurizer=featurizer, chunk_size=4) == 10

    loaded = features_load(feature_set=FeatureSet.objects.get(pk=feature_set.pk), verify=True)
    assert feature_set.dim == 384 and not feature_set.sparse
    assert loaded.matrix.shape == (10, 384) and loaded.matrix.dtype == np.float32
    np.testing.assert_allclose(loaded.matrix, _expected(featurizer, project)[1], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(loaded.matrix, axis=1), 1.0, atol=1e-5)
