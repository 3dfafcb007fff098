"""Pack: plan shards in the driver, write them on the executor, stream the index and rejects.

1. ``measure`` (an executor task per batch of entries) and ``plan_shards``: shard membership in key
   order from per-clip metadata known without reading a payload (the file sizes in each cache
   entry's ledger, the sizes of ``lmk_norm``/``pca`` from the frame count, the sample json from
   ``meta.json``). The rule is ``ShardWriter``'s, so the shards are the ones a single writer would
   make.
2. ``write_shard``: an executor task that reads its samples from the cache, computes
   ``lmk_norm``/``pca``, writes one shard (sha256 while writing) and returns its index rows and
   the card's statistics of its samples (:class:`~talkdata.pipeline.pack_stats.PackStats`).
3. The driver takes shard results in plan order, streams the rows into ``index.parquet``
   (``TableWriter``: row groups of ``ROW_GROUP`` rows) and merges the statistics (the card is
   written from them, without reading a shard back); the same for ``rejects.parquet``.

Output bytes do not depend on the number of workers or the order shards finish in.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..manifest import canonical_json
from ..sample_meta import normalize as normalize_meta
from ..shards import ShardFile, ShardInfo, sample_hash, starts_new_shard
from .cache import ClipCache
from .clip import npy_bytes
from .pack_stats import PackStats
from .shape_fit import shape_fields

ROW_GROUP = 65536
ROWS_AS_DICTS = 4096  # rows held as dicts before they are made columnar (a row group is buffered in Arrow)
INDEX_COLUMNS = ["key", "split", "shard", "speaker", "clip", "frames", "fps", "duration", "sha256", "source"]
REJECT_COLUMNS = ["key", "source", "split", "stage", "reason", "message"]
_ROW_SKIP = {"dataset", "key", "speaker", "clip", "source", "fps", "frames", "duration", "face", "backends", "split"}


@dataclass(frozen=True)
class ShapeRef:
    """What every sample's json says about the shape model."""

    sha256: str
    components: int


@dataclass(frozen=True)
class Member:
    """One sample to pack: its record key, cache key and planned size in bytes."""

    key: str
    cache_key: str
    bytes: int


@dataclass(frozen=True)
class ShardPlan:
    split: str
    index: int
    members: tuple[Member, ...]


@dataclass
class ShardResult:
    info: ShardInfo
    rows: list[dict] = field(repr=False)
    stats: PackStats = field(repr=False, default_factory=PackStats)  # what the card needs of these samples


def meta_columns(meta: dict) -> dict:
    """Corpus metadata columns for index.parquet: scalars as they are, the rest as JSON text."""
    row = {}
    for name, value in meta.items():
        if name in _ROW_SKIP:
            continue
        row[name] = value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value, sort_keys=True)
    return row


def sample_meta(meta: dict, split: str, payload: Iterable[str], shape: ShapeRef) -> dict:
    """The sample's ``json`` field: the cached metadata with its split, fields and shape model."""
    meta = normalize_meta(dict(meta, split=split))  # one type per field (datasets reads every sample alike)
    meta["fields"] = sorted(list(payload) + ["lmk_norm.npy", "pca.npy"]) + ["json"]
    meta["shape_model"] = {"sha256": shape.sha256, "components": shape.components}
    return meta


def npy_size(shape: tuple[int, ...], dtype: str = "<f4") -> int:
    """Bytes of ``np.save`` of a C-order array of this shape and dtype."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    return len(header.getvalue()) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


#: what the ``shape_model`` entry adds to a sample's canonical json (the same whether or not it is the last key:
#: the comma moves to the line before)
_SHAPE_ENTRY = '  "shape_model": {{\n    "components": {components},\n    "sha256": "{sha256}"\n  }},\n'


def shape_bytes(frames: int, shape: ShapeRef) -> int:
    """The bytes of a sample that depend on the shape model: ``pca.npy`` and the json's ``shape_model`` entry."""
    return npy_size((frames, shape.components)) + len(_SHAPE_ENTRY.format(components=shape.components,
                                                                          sha256=shape.sha256))


@dataclass
class Measured:
    """What ``measure`` learns from a batch of cache entries (in the order given)."""

    bytes: list[int]  # each sample's bytes but those of ``shape_bytes``
    frames: list[int]
    columns: ColumnTypes
    fingerprint: list[tuple[str, str]]  # (source relpath, source sha256)
    audio_features: set[str]


def measure(work_dir: str, items: list[tuple[str, str]]) -> Measured:
    """Executor task: sizes, frame counts and index columns of done entries (``(split, cache key)``), from
    their ledgers and ``meta.json`` only (no payload is read)."""
    cache = ClipCache(work_dir)
    placeholder = ShapeRef("", 0)
    result = Measured([], [], ColumnTypes(INDEX_COLUMNS), [], set())
    for split, key in items:
        meta, sizes = cache.meta(key), cache.sizes(key)
        frames = int(meta["frames"])
        json_meta = sample_meta(meta, split, sizes, placeholder)
        result.columns.add(index_row(json_meta, split, "", ""))
        del json_meta["shape_model"]
        result.bytes.append(sum(sizes.values()) + npy_size((frames, 68, 2)) + len(canonical_json(json_meta).encode()))
        result.frames.append(frames)
        result.fingerprint.append((meta["source"]["path"], meta["source"]["sha256"]))
        result.audio_features.update(meta.get("backends", {}).get("audio_features", []))
    return result


def index_row(meta: dict, split: str, shard: str, sha256: str) -> dict:
    return {"key": meta["key"], "split": split, "shard": shard, "speaker": meta["speaker"], "clip": meta["clip"],
            "frames": meta["frames"], "fps": meta["fps"], "duration": meta["duration"], "sha256": sha256,
            "source": meta["source"]["path"], **meta_columns(meta)}


def plan_shards(members: Iterable[tuple[str, Member]], max_samples: int, max_bytes: int) -> Iterator[ShardPlan]:
    """Shards of ``(split, member)`` given split by split in key order (``ShardWriter``'s rule)."""
    current: list[Member] = []
    split, index, size = None, 0, 0
    for member_split, member in members:
        if member_split != split:
            if current:
                yield ShardPlan(split, index, tuple(current))
            split, index, size, current = member_split, 0, 0, []
        elif starts_new_shard(len(current), size, member.bytes, max_samples, max_bytes):
            yield ShardPlan(split, index, tuple(current))
            index, size, current = index + 1, 0, []
        current.append(member)
        size += member.bytes
    if current:
        yield ShardPlan(split, index, tuple(current))


def write_shard(out: str, name: str, work_dir: str, model, shape: ShapeRef, plan: ShardPlan) -> ShardResult:
    """Executor task: write one planned shard from the cache; returns its manifest entry, its index rows
    and the card's statistics of its samples."""
    from .executor import cap_blas_threads

    cap_blas_threads()
    cache = ClipCache(work_dir)
    shard = ShardFile(Path(out), name, plan.split, plan.index)
    rows = []
    stats = PackStats()
    try:
        for member in plan.members:
            files = cache.files(member.cache_key)
            meta = cache.meta(member.cache_key)
            json_meta = sample_meta(meta, plan.split, files, shape)
            landmarks = np.load(io.BytesIO(files["lmk_src.npy"]))
            norm, codes = shape_fields(landmarks, model)
            files["lmk_norm.npy"] = npy_bytes(norm)
            files["pca.npy"] = npy_bytes(codes)
            files["json"] = canonical_json(json_meta).encode()
            written = sum(len(v) for v in files.values())
            if written != member.bytes:
                raise RuntimeError(f"sample {member.key}: {written} bytes, planned {member.bytes} (cache entry changed "
                                   "during the build?)")
            shard.write(member.key, files)
            rows.append(index_row(json_meta, plan.split, shard.relpath, sample_hash(files)))
            stats.add(plan.split, rows[-1], files)
    except BaseException:
        shard.abort()
        raise
    return ShardResult(shard.close(), rows, stats)


class ColumnTypes:
    """Arrow types of index columns, as ``pa.table`` would infer them from all the rows."""

    def __init__(self, columns: list[str]):
        self.names = list(columns)
        self._seen: dict[str, set[type]] = {name: set() for name in columns}

    def add(self, row: dict) -> None:
        for name, value in row.items():
            if name not in self._seen:
                self.names.append(name)
                self._seen[name] = set()
            if value is not None:
                self._seen[name].add(type(value))

    def merge(self, other: ColumnTypes) -> None:
        for name in other.names:
            if name not in self._seen:
                self.names.append(name)
                self._seen[name] = set()
            self._seen[name] |= other._seen[name]

    def schema(self, strings: Iterable[str] = ()) -> pa.Schema:
        strings = set(strings)
        fields = []
        for name in self.names:
            seen = self._seen[name] | ({str} if name in strings else set())
            if not seen:
                kind = pa.null()
            elif seen == {bool}:
                kind = pa.bool_()
            elif seen == {int}:
                kind = pa.int64()
            elif seen <= {int, float}:
                kind = pa.float64()
            else:
                kind = pa.string()
            fields.append(pa.field(name, kind))
        return pa.schema(fields)


class TableWriter:
    """``path`` written as parquet in row groups of ``ROW_GROUP`` rows, then renamed into place."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = Path(path), schema
        self._temp = self.path.with_name(self.path.name + ".tmp")
        self._writer = None
        self._rows: list[dict] = []  # at most ROWS_AS_DICTS, then columnar in ``_chunks``
        self._chunks: list[pa.Table] = []
        self._buffered = 0
        self.count = 0

    def write(self, row: dict) -> None:
        self._rows.append(row)
        self.count += 1
        self._buffered += 1
        if len(self._rows) >= ROWS_AS_DICTS:
            self._columnar()
        if self._buffered >= ROW_GROUP:
            self._flush()

    def _columnar(self) -> None:
        if self._rows:
            self._chunks.append(pa.table({f.name: pa.array([r.get(f.name) for r in self._rows], f.type)
                                          for f in self.schema}, schema=self.schema))
            self._rows = []

    def _flush(self) -> None:
        self._columnar()
        if not self._chunks:
            return
        table = pa.concat_tables(self._chunks).combine_chunks()  # one row group, the bytes of a single table
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._temp, self.schema, compression="zstd", write_statistics=False)
        self._writer.write_table(table)
        self._chunks, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        if self._writer is None:  # no rows: every column as text
            empty = pa.table({f.name: pa.array([], pa.string()) for f in self.schema})
            pq.write_table(empty, self._temp, compression="zstd", write_statistics=False)
        else:
            self._writer.close()
        with open(self._temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self._temp, self.path)
