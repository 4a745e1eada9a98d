"""Shard files of the feature store: where they live, how one is written atomically, how they are read and checked.

Layout, under settings.FEATURE_DIR: `<project id>/<featurizer version>/shard-000042.npy` (dense float32 matrix,
`np.save`) or `shard-000042.npz` (CSR float32, `scipy.sparse.save_npz` uncompressed), each beside
`shard-000042-ids.npy` (the int64 example ids of its rows, increasing). A shard is written under a temporary name,
fsynced, renamed into place and recorded as a FeatureShard row in the transaction that moves FeatureSet.rows.
Files are read with `allow_pickle=False` only; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from models_app.models import FeatureSet, FeatureShard

Matrix = np.ndarray | sp.csr_matrix
# One part of a load: the shard, its matrix file, the ids it contributes, and which of its rows (None: all).
LoadPart = tuple[FeatureShard, Path, np.ndarray, np.ndarray | None]

# Leftover temporary files older than this (a worker killed mid-write) are removed by the next writer.
TEMP_FILE_MAX_AGE_SECONDS = 3600

ERROR_FEATURIZER_SHAPE = "The featurizer returned a {shape} matrix for {rows:,} texts of width {dim:,}."
ERROR_SHARD_MISSING = "Shard {number} of feature set {version} has lost its file {path}."
ERROR_SHARD_SIZE = (
    "Shard {number} of feature set {version} has {actual:,} bytes on disk, not the {expected:,} recorded; "
    "its files were changed or cut short."
)
ERROR_SHARD_SHAPE = "Shard {number} of feature set {version} holds {found}, not the {expected} recorded."
ERROR_SHARD_CHECKSUM = (
    "Shard {number} of feature set {version} does not match its recorded SHA-256; its files were changed after "
    "they were written."
)


class FeatureStoreError(Exception):
    """Features cannot be computed or loaded as asked; the message says why and what to do."""


def feature_dir() -> Path:
    return Path(settings.FEATURE_DIR)


def stored_ids(feature_set: FeatureSet) -> tuple[np.ndarray, int]:
    """Return the increasing ids that have vectors in the set, and the highest shard number read."""
    shards = list(FeatureShard.objects.filter(feature_set_id=feature_set.pk).order_by("number"))
    parts = [shard_open(feature_set, shard, verify=False)[1] for shard in shards]
    ids = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    return ids, max((shard.number for shard in shards), default=0)


def _set_folder(feature_set: FeatureSet) -> str:
    """Return the set's folder relative to FEATURE_DIR; a version with unsafe characters gets a hashed suffix."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", feature_set.version).lstrip(".") or "version"
    if safe != feature_set.version:
        safe = f"{safe}-{hashlib.sha256(feature_set.version.encode()).hexdigest()[:8]}"
    return f"{feature_set.project_id}/{safe}"


def _ids_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(f"{matrix_path.stem}-ids.npy")


def _sha256(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while read := handle.readinto(buffer):
                digest.update(view[:read])
    return digest.hexdigest()


def shard_open(feature_set: FeatureSet, shard: FeatureShard, *, verify: bool) -> tuple[Path, np.ndarray]:
    """Check a shard's files against its row and return the matrix path and its ids."""
    matrix_path = feature_dir() / shard.path
    ids_path = _ids_path(matrix_path)
    sizes = []
    for path in (matrix_path, ids_path):
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            raise FeatureStoreError(
                ERROR_SHARD_MISSING.format(number=shard.number, version=feature_set.version, path=path)
            ) from None
    if sum(sizes) != shard.size_bytes:
        raise FeatureStoreError(
            ERROR_SHARD_SIZE.format(
                number=shard.number, version=feature_set.version, actual=sum(sizes), expected=shard.size_bytes
            )
        )
    if verify and _sha256([matrix_path, ids_path]) != shard.sha256:
        raise FeatureStoreError(ERROR_SHARD_CHECKSUM.format(number=shard.number, version=feature_set.version))
    try:
        ids = np.load(ids_path, allow_pickle=False)
    except ValueError as exc:
        raise _shape_error(feature_set, shard, found=f"an unreadable ids file ({exc})") from exc
    if (
        ids.dtype != np.int64
        or ids.shape != (shard.rows,)
        or int(ids[0]) != shard.first_example_id
        or int(ids[-1]) != shard.last_example_id
        or not bool(np.all(ids[1:] > ids[:-1]))
    ):
        raise _shape_error(feature_set, shard, found=f"ids {ids.dtype} {ids.shape} not in increasing order")
    return matrix_path, ids


def _shape_error(feature_set: FeatureSet, shard: FeatureShard, *, found: str) -> FeatureStoreError:
    expected = (
        f"{shard.rows:,} × {feature_set.dim:,} float32 rows for ids {shard.first_example_id}…{shard.last_example_id}"
    )
    return FeatureStoreError(
        ERROR_SHARD_SHAPE.format(number=shard.number, version=feature_set.version, found=found, expected=expected)
    )


def shard_matrix_check(feature_set: FeatureSet, shard: FeatureShard, matrix_path: Path) -> Matrix:
    """Open a shard's matrix (memory-mapped when dense) and check its shape and dtype against the row."""
    try:
        matrix: Matrix = (
            sp.load_npz(matrix_path) if feature_set.sparse else np.load(matrix_path, mmap_mode="r", allow_pickle=False)
        )
    except ValueError as exc:
        raise _shape_error(feature_set, shard, found=f"an unreadable matrix ({exc})") from exc
    if feature_set.sparse and matrix.format != "csr":
        raise _shape_error(feature_set, shard, found=f"a {matrix.format} matrix")
    if matrix.shape != (shard.rows, feature_set.dim) or matrix.dtype != np.float32:
        raise _shape_error(feature_set, shard, found=f"{matrix.shape} {matrix.dtype}")
    return matrix


def dense_concatenate(feature_set: FeatureSet, parts: list[LoadPart], *, total: int) -> np.ndarray:
    """Copy every shard straight from its memory map into one preallocated array."""
    out = np.empty((total, feature_set.dim), dtype=np.float32)
    offset = 0
    for shard, matrix_path, ids, rows in parts:
        source = shard_matrix_check(feature_set, shard, matrix_path)
        count = int(ids.size)
        out[offset : offset + count] = source if rows is None else source[rows]
        offset += count
        del source
    return out


def sparse_concatenate(feature_set: FeatureSet, parts: list[LoadPart], *, total: int) -> sp.csr_matrix:
    """Join CSR shards into one CSR matrix through preallocated data, indices and indptr arrays."""
    blocks = []
    for shard, matrix_path, _ids, rows in parts:
        block = shard_matrix_check(feature_set, shard, matrix_path)
        blocks.append(block if rows is None else block[rows])
    nnz = sum(int(block.nnz) for block in blocks)
    index_dtype = np.int64 if max(nnz, feature_set.dim) > np.iinfo(np.int32).max else np.int32
    data = np.empty(nnz, dtype=np.float32)
    indices = np.empty(nnz, dtype=index_dtype)
    indptr = np.empty(total + 1, dtype=index_dtype)
    indptr[0] = 0
    row = value = 0
    for block in blocks:
        count, block_nnz = block.shape[0], int(block.nnz)
        data[value : value + block_nnz] = block.data
        indices[value : value + block_nnz] = block.indices
        indptr[row + 1 : row + count + 1] = block.indptr[1:] + value
        row += count
        value += block_nnz
    return sp.csr_matrix((data, indices, indptr), shape=(total, feature_set.dim), copy=False)


class ShardWriter:
    """Write a feature set's shards: files first under temporary names, then number, rename and row in one lock."""

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self.relative = _set_folder(feature_set)
        self.folder = feature_dir() / self.relative
        self.folder.mkdir(parents=True, exist_ok=True)
        # Highest shard number this writer has seen; any shard above it was written by someone else since.
        self.known_max = 0
        self._temp_files_remove()

    def store(self, ids: np.ndarray, matrix: Matrix) -> int:
        """Keep one chunk as a shard and return how many rows it holds (fewer when another writer had some)."""
        matrix = self._normalize(ids, matrix)
        files = self._write(ids, matrix)
        try:
            with transaction.atomic():
                FeatureSet.objects.select_for_update().get(pk=self.feature_set.pk)
                newer = list(FeatureShard.objects.filter(feature_set_id=self.feature_set.pk, number__gt=self.known_max))
                taken = [shard_open(self.feature_set, shard, verify=False)[1] for shard in newer]
                if taken:
                    keep = ~np.isin(ids, np.concatenate(taken))
                    if not keep.all():
                        self._remove(files)
                        ids, matrix = ids[keep], matrix[np.flatnonzero(keep)]
                        if ids.size == 0:
                            self.known_max = max(shard.number for shard in newer)
                            return 0
                        files = self._write(ids, matrix)
                last = FeatureShard.objects.filter(feature_set_id=self.feature_set.pk).aggregate(last=Max("number"))
                number = (last["last"] or 0) + 1
                matrix_path = self.folder / f"shard-{number:06d}{'.npz' if self.feature_set.sparse else '.npy'}"
                temp_matrix, temp_ids, sha256, size = files
                os.replace(temp_ids, _ids_path(matrix_path))
                os.replace(temp_matrix, matrix_path)
                FeatureShard.objects.create(
                    feature_set_id=self.feature_set.pk,
                    number=number,
                    path=f"{self.relative}/{matrix_path.name}",
                    sha256=sha256,
                    size_bytes=size,
                    rows=int(ids.size),
                    first_example_id=int(ids[0]),
                    last_example_id=int(ids[-1]),
                )
                FeatureSet.objects.filter(pk=self.feature_set.pk).update(
                    rows=F("rows") + int(ids.size), updated_at=timezone.now()
                )
        except BaseException:
            self._remove(files)
            raise
        self.known_max = number
        return int(ids.size)

    def _normalize(self, ids: np.ndarray, matrix: Matrix) -> Matrix:
        expected = (int(ids.size), self.feature_set.dim)
        if self.feature_set.sparse:
            matrix = sp.csr_matrix(matrix, dtype=np.float32)
            matrix.sort_indices()
        else:
            matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.shape != expected:
            raise FeatureStoreError(
                ERROR_FEATURIZER_SHAPE.format(shape=matrix.shape, rows=expected[0], dim=expected[1])
            )
        return matrix

    def _write(self, ids: np.ndarray, matrix: Matrix) -> tuple[Path, Path, str, int]:
        """Write the matrix and ids under temporary names, synced to disk; return them, their SHA-256 and size."""
        token = uuid.uuid4().hex
        temp_matrix = self.folder / f".tmp-{token}{'.npz' if self.feature_set.sparse else '.npy'}"
        temp_ids = _ids_path(temp_matrix)
        try:
            with open(temp_matrix, "wb") as handle:
                if self.feature_set.sparse:
                    sp.save_npz(handle, matrix, compressed=False)
                else:
                    np.save(handle, matrix, allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            with open(temp_ids, "wb") as handle:
                np.save(handle, np.ascontiguousarray(ids, dtype=np.int64), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            self._remove((temp_matrix, temp_ids))
            raise
        size = temp_matrix.stat().st_size + temp_ids.stat().st_size
        return temp_matrix, temp_ids, _sha256([temp_matrix, temp_ids]), size

    @staticmethod
    def _remove(files: Sequence[Any]) -> None:
        for item in files[:2]:
            Path(item).unlink(missing_ok=True)

    def _temp_files_remove(self) -> None:
        cutoff = time.time() - TEMP_FILE_MAX_AGE_SECONDS
        for path in self.folder.glob(".tmp-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                continue
