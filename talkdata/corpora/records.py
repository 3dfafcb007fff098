"""Clip records: what the index stage produces for every clip of a corpus."""

from __future__ import annotations

import hashlib
import io
import json
import re
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, overload

import numpy as np

from ..errors import UserError
from .walk import files_under

VIDEO_EXTENSIONS = {".mp4", ".mpg", ".mpeg", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".3gp", ".ts"}

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key_part(text: str) -> str:
    """A key component made of ``[A-Za-z0-9_-]`` (WebDataset splits keys at the first dot).

    Names that had to change get a short hash of the original appended, so that two different
    names never map to the same key.
    """
    cleaned = _KEY_UNSAFE.sub("_", text)
    if cleaned != text or not cleaned:
        cleaned = f"{cleaned}_{hashlib.sha1(text.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"
    return cleaned


def representable(text: str) -> str:
    """``text`` as valid UTF-8: the bytes of a file name that is not UTF-8 become ``\\xNN`` escapes.

    ``os`` hands such names over with surrogate escapes, which open the file but cannot be written
    as UTF-8 (json, parquet); ``b"caf\\xe9.mp4"`` (Latin-1) becomes ``"caf\\\\xe9.mp4"``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


@dataclass(slots=True)  # no per-record __dict__: a million records are held by the driver
class ClipRecord:
    dataset: str
    speaker: str
    clip: str
    path: str  # absolute path of the media file on this machine (never written into outputs)
    relpath: str  # path relative to the source root (written into the sample metadata)
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    skip: str = ""  # reason code when the corpus documents this file as bad (recorded as a reject)
    skip_message: str = ""

    def __post_init__(self) -> None:
        # what goes into the sample metadata must be valid UTF-8; ``path`` keeps the bytes that open the file
        self.speaker, self.clip, self.relpath = (representable(t) for t in (self.speaker, self.clip, self.relpath))

    @property
    def key(self) -> str:
        return f"{safe_key_part(self.speaker)}/{safe_key_part(self.clip)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipRecord":
        return cls(**data)

    def fingerprint(self) -> str:
        """Identity of the source file for caching: relative path, size and modification time."""
        stat = Path(self.path).stat() if Path(self.path).exists() else None
        text = f"{self.relpath}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}"
        return hashlib.sha256(text.encode()).hexdigest()


class RecordList(Sequence[ClipRecord]):
    """Clip records, held as one buffer of their JSON forms (a few hundred bytes per clip, no Python
    object per clip): ``records[i]`` makes the ``ClipRecord`` when it is needed.

    ``pack`` takes the records one at a time (an indexer's generator: no list of records is ever
    held); with ``by_key`` the list is in key order without moving the buffer: the records stay in
    the order they came, and ``order`` (8 bytes per clip) says which one is ``records[i]``.
    The split of every record is a column of its own (``set_splits`` does not rewrite the buffer).
    ``write``/``read`` (``to_bytes``/``from_bytes``): the index stored for reuse (``corpora/index_cache.py``).
    """

    KEY_CHUNK = 1024  # keys gathered as one fixed-width array per this many records while packing

    def __init__(self, blob: bytes | bytearray | np.ndarray, offsets: np.ndarray, splits: np.ndarray,
                 split_names: list[str], order: np.ndarray | None = None):
        self._blob, self._offsets, self._order = blob, offsets, order
        self._splits, self._split_names = splits, split_names
        self._indexed = splits  # the indexer's own splits (what is stored), before ``set_splits``
        self.fingerprint: str | None = None  # set by the index stage: the source tree it was made from
        self.reused = False  # True when it was read from a stored index

    @classmethod
    def pack(cls, records: Iterable[ClipRecord], by_key: bool = False) -> "RecordList":
        """The records of ``records`` (any iterable, consumed once), in that order or (``by_key``) in key
        order; ``by_key`` stops with one line when two records have the same key."""
        blob, offsets, splits, names = bytearray(), array("q", [0]), array("B"), {"": 0}
        keys: list[np.ndarray] = []
        chunk: list[bytes] = []
        for record in records:
            data = record.to_dict()
            split = data.pop("split")
            blob += json.dumps(data, separators=(",", ":")).encode("ascii")  # JSON escapes keep undecodable names
            offsets.append(len(blob))
            splits.append(names.setdefault(split, len(names)))
            if by_key:
                chunk.append(record.key.encode("ascii"))  # keys are [A-Za-z0-9_-/]: byte order is str order
                if len(chunk) == cls.KEY_CHUNK:
                    keys.append(np.array(chunk))
                    chunk = []
        codes = np.frombuffer(splits, dtype=np.uint8).copy()
        del splits
        positions = np.frombuffer(offsets, dtype=np.int64).copy()
        del offsets
        order = None
        if by_key:
            if chunk:
                keys.append(np.array(chunk))
            del chunk
            every = np.concatenate(keys) if keys else np.zeros(0, dtype="S1")
            del keys
            order = np.argsort(every, kind="stable")  # records with one key stay in the order they came
            _refuse_duplicates(every[order], order, blob, positions)
            del every
            codes = codes[order]
        return cls(blob, positions, codes, list(names), order)

    def __len__(self) -> int:
        return len(self._splits)

    @overload
    def __getitem__(self, index: int) -> ClipRecord: ...

    @overload
    def __getitem__(self, index: slice) -> "RecordList": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("RecordList slices are contiguous")
            stop = max(start, stop)
            if self._order is not None:  # the buffer is shared, not copied
                part = RecordList(self._blob, self._offsets, self._splits[start:stop], self._split_names,
                                  self._order[start:stop])
            else:
                first, last = int(self._offsets[start]), int(self._offsets[stop])
                part = RecordList(self._blob[first:last], self._offsets[start:stop + 1] - first,
                                  self._splits[start:stop], self._split_names)
            part._indexed = self._indexed[start:stop]
            return part
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return ClipRecord(**self._data(index), split=self.split(index))

    def _data(self, index: int) -> dict[str, Any]:
        """The stored fields of ``records[index]`` (all but the split)."""
        return _entry(self._blob, self._offsets, index if self._order is None else int(self._order[index]))

    def split(self, index: int) -> str:
        return self._split_names[self._splits[index]]

    def in_split(self, indices: np.ndarray, split: str) -> np.ndarray:
        """Those of ``indices`` whose record is in ``split``, in their order (no object per record)."""
        if split not in self._split_names:
            return indices[:0]
        return indices[self._splits[indices] == self._split_names.index(split)]

    def key(self, index: int) -> str:
        return self[index].key

    def speaker(self, index: int) -> str:
        return self._data(index)["speaker"]

    def unsplit(self) -> np.ndarray:
        """Indices of the records the indexer gave no split (``assign_splits`` fills them)."""
        return np.flatnonzero(np.array([name == "" for name in self._split_names])[self._indexed])

    def set_splits(self, indices: Iterable[int], splits: Iterable[str]) -> None:
        """The split of the records at ``indices`` (the indexer's splits stay what is stored)."""
        names = {name: n for n, name in enumerate(self._split_names)}
        codes = self._indexed.copy()
        for index, split in zip(indices, splits):
            codes[index] = names.setdefault(split, len(names))
        self._splits, self._split_names = codes, list(names)

    def write(self, handle: BinaryIO) -> None:
        """The stored form into an open binary file: ``np.savez`` of the buffer, the offsets, the splits and
        the key order (no pickle; the buffer is written in pieces, never copied whole)."""
        arrays = {"blob": np.frombuffer(self._blob, dtype=np.uint8), "offsets": self._offsets, "splits": self._indexed,
                  "split_names": np.array("\n".join(self._split_names))}
        if self._order is not None:
            arrays["order"] = self._order
        np.savez(handle, **arrays)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()

    @classmethod
    def read(cls, source: str | Path | BinaryIO) -> "RecordList":
        """A stored form from a file (path or open binary file): the buffer is the array read, not a copy of it."""
        with np.load(source, allow_pickle=False) as stored:
            return cls(stored["blob"], stored["offsets"], stored["splits"], str(stored["split_names"]).split("\n"),
                       stored["order"] if "order" in stored.files else None)

    @classmethod
    def from_bytes(cls, data: bytes) -> "RecordList":
        return cls.read(io.BytesIO(data))


def _entry(blob: bytes | bytearray | np.ndarray, offsets: np.ndarray, entry: int) -> dict[str, Any]:
    """The stored fields of the ``entry``-th record packed into ``blob`` (bytes, or a uint8 array read back)."""
    return json.loads(bytes(blob[int(offsets[entry]):int(offsets[entry + 1])]).decode("ascii"))


def _refuse_duplicates(ordered_keys: np.ndarray, order: np.ndarray, blob: bytes | bytearray,
                       offsets: np.ndarray) -> None:
    """One line naming the first record (in the order they came) whose key an earlier one has, and that one."""
    same = np.flatnonzero(ordered_keys[1:] == ordered_keys[:-1]) if len(ordered_keys) > 1 else np.zeros(0, np.int64)
    if not len(same):
        return
    at = same[np.argmin(order[same + 1])]  # a stable order: the earlier record of a pair comes first
    first, second = (ClipRecord(**_entry(blob, offsets, int(order[n])), split="") for n in (at, at + 1))
    raise UserError(f"two clips map to the key {first.key!r}: {first.relpath} and {second.relpath}")


def find_videos(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every video file under ``root`` (by extension), sorted (see :func:`talkdata.corpora.walk.walk`)."""
    return files_under(root, VIDEO_EXTENSIONS, exclude)
