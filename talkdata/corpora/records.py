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


class StringTable:
    """Distinct strings held as one buffer (no Python object per string): ``add`` gives a string's number (the same
    number for the same string while the table is being filled), ``table[n]`` the string. Any ``str`` round-trips,
    the surrogate escapes of a file name that is not UTF-8 included."""

    def __init__(self, blob: bytes | bytearray | np.ndarray = b"", offsets: np.ndarray | None = None):
        self._blob = blob if len(blob) else bytearray()
        self._offsets = offsets if offsets is not None else np.zeros(1, dtype=np.int64)
        self._growing: tuple[array, dict[str, int]] | None = None

    def add(self, text: str) -> int:
        if self._growing is None:
            self._blob = bytearray(self._blob)
            self._growing = array("q", self._offsets.tolist()), {}
        offsets, numbers = self._growing
        number = numbers.get(text)
        if number is None:
            number = numbers[text] = len(offsets) - 1
            self._blob += text.encode("utf-8", "surrogatepass")
            offsets.append(len(self._blob))
        return number

    def freeze(self) -> None:
        """Stop adding: drop the lookup of strings to numbers (the table keeps only the buffer and the offsets)."""
        if self._growing is not None:
            self._offsets = np.frombuffer(self._growing[0], dtype=np.int64).copy()
            self._growing = None

    def __len__(self) -> int:
        return len(self._growing[0]) - 1 if self._growing is not None else len(self._offsets) - 1

    def __getitem__(self, number: int) -> str:
        offsets = self._growing[0] if self._growing is not None else self._offsets
        return bytes(self._blob[int(offsets[number]):int(offsets[number + 1])]).decode("utf-8", "surrogatepass")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self.freeze()
        return np.frombuffer(self._blob, dtype=np.uint8), self._offsets


class RecordList(Sequence[ClipRecord]):
    """Clip records, held as one buffer of compact JSON entries (about 200 bytes per VoxCeleb2 clip, no Python
    object per clip): ``records[i]`` makes the ``ClipRecord`` when it is needed.

    An entry holds the values of a record, not its field names, and no string that many records share: those are
    numbers into one :class:`StringTable` (the dataset name, the folder of ``path``, the source root that
    ``relpath`` is relative to, the names of the ``meta`` fields). ``path`` is that folder and a file name;
    ``relpath`` is not stored when it is ``path`` past the root (as every indexer makes it).

    ``pack`` takes the records one at a time (an indexer's generator: no list of records is ever
    held); with ``by_key`` the list is in key order without moving the buffer: the records stay in
    the order they came, and ``order`` (8 bytes per clip) says which one is ``records[i]``.
    The split of every record is a column of its own (``set_splits`` does not rewrite the buffer).
    ``write``/``read`` (``to_bytes``/``from_bytes``): the index stored for reuse (``corpora/index_cache.py``).
    """

    KEY_CHUNK = 1024  # keys gathered as one fixed-width array per this many records while packing
    FORMAT = "talkdata-records/2"  # the stored form (``write``); ``read`` refuses any other

    def __init__(self, blob: bytes | bytearray | np.ndarray, offsets: np.ndarray, splits: np.ndarray,
                 split_names: list[str], order: np.ndarray | None = None, texts: StringTable | None = None):
        self._blob, self._offsets, self._order = blob, offsets, order
        self._splits, self._split_names = splits, split_names
        self._texts = texts if texts is not None else StringTable()
        self._layouts: dict[int, list[str]] = {}  # meta field names by their number (a few per corpus)
        self._indexed = splits  # the indexer's own splits (what is stored), before ``set_splits``
        self.fingerprint: str | None = None  # set by the index stage: the source tree it was made from
        self.reused = False  # True when it was read from a stored index

    @classmethod
    def pack(cls, records: Iterable[ClipRecord], by_key: bool = False) -> "RecordList":
        """The records of ``records`` (any iterable, consumed once), in that order or (``by_key``) in key
        order; ``by_key`` stops with one line when two records have the same key."""
        blob, offsets, splits, names = bytearray(), array("q", [0]), array("B"), {"": 0}
        texts = StringTable()
        keys: list[np.ndarray] = []
        chunk: list[bytes] = []
        for record in records:
            blob += _encode(record, texts)
            offsets.append(len(blob))
            splits.append(names.setdefault(record.split, len(names)))
            if by_key:
                chunk.append(record.key.encode("ascii"))  # keys are [A-Za-z0-9_-/]: byte order is str order
                if len(chunk) == cls.KEY_CHUNK:
                    keys.append(np.array(chunk))
                    chunk = []
        texts.freeze()
        codes = np.frombuffer(splits, dtype=np.uint8).copy()
        del splits
        positions = np.frombuffer(offsets, dtype=np.int64).copy()
        del offsets
        held = cls(blob, positions, codes, list(names), None, texts)
        if by_key:
            if chunk:
                keys.append(np.array(chunk))
            del chunk
            every = np.concatenate(keys) if keys else np.zeros(0, dtype="S1")
            del keys
            order = np.argsort(every, kind="stable")  # records with one key stay in the order they came
            every = every[order]
            held._refuse_duplicates(every, order)
            del every
            held._order, held._splits = order, codes[order]
            held._indexed = held._splits
        return held

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
                                  self._order[start:stop], self._texts)
            else:
                first, last = int(self._offsets[start]), int(self._offsets[stop])
                part = RecordList(self._blob[first:last], self._offsets[start:stop + 1] - first,
                                  self._splits[start:stop], self._split_names, None, self._texts)
            part._indexed = self._indexed[start:stop]
            return part
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._record(self._entry(index if self._order is None else int(self._order[index])),
                            self.split(index))

    def _entry(self, stored: int) -> list:
        """The ``stored``-th entry of the buffer (in the order the records came)."""
        return json.loads(bytes(self._blob[int(self._offsets[stored]):int(self._offsets[stored + 1])]).decode("ascii"))

    def _data(self, index: int) -> list:
        return self._entry(index if self._order is None else int(self._order[index]))

    def _record(self, entry: list, split: str) -> ClipRecord:
        dataset, speaker, clip, folder, name, relpath, layout, values, *skip = entry
        path = name if folder < 0 else f"{self._texts[folder]}/{name}"
        if isinstance(relpath, int):  # ``path`` past the root numbered ``relpath``
            relpath = path[len(self._texts[relpath]) + 1:]
        fields = self._layouts.get(layout)
        if fields is None:
            if len(self._layouts) >= 256:  # a corpus whose records differ in their meta fields
                self._layouts.clear()
            fields = self._layouts[layout] = json.loads(self._texts[layout])
        return ClipRecord(self._texts[dataset], speaker, clip, path, relpath, split, dict(zip(fields, values)), *skip)

    def _refuse_duplicates(self, ordered_keys: np.ndarray, order: np.ndarray) -> None:
        """One line naming the first record (in the order they came) whose key an earlier one has, and that one."""
        same = np.flatnonzero(ordered_keys[1:] == ordered_keys[:-1]) if len(ordered_keys) > 1 else np.zeros(0, np.int64)
        if not len(same):
            return
        at = same[np.argmin(order[same + 1])]  # a stable order: the earlier record of a pair comes first
        first, second = (self._record(self._entry(int(order[n])), "") for n in (at, at + 1))
        raise UserError(f"two clips map to the key {first.key!r}: {first.relpath} and {second.relpath}")

    def split(self, index: int) -> str:
        return self._split_names[self._splits[index]]

    def in_split(self, indices: np.ndarray, split: str) -> np.ndarray:
        """Those of ``indices`` whose record is in ``split``, in their order (no object per record)."""
        if split not in self._split_names:
            return indices[:0]
        return indices[self._splits[indices] == self._split_names.index(split)]

    def key(self, index: int) -> str:
        """``records[index].key`` without making the record."""
        entry = self._data(index)
        return f"{safe_key_part(representable(entry[1]))}/{safe_key_part(representable(entry[2]))}"

    def speaker(self, index: int) -> str:
        return representable(self._data(index)[1])

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
        """The stored form into an open binary file: ``np.savez`` of the buffer, the offsets, the splits, the key
        order and the string table (no pickle; the buffer is written in pieces, never copied whole)."""
        texts, text_offsets = self._texts.arrays()
        arrays = {"format": np.array(self.FORMAT), "blob": np.frombuffer(self._blob, dtype=np.uint8),
                  "offsets": self._offsets, "splits": self._indexed,
                  "split_names": np.array("\n".join(self._split_names)), "texts": texts, "text_offsets": text_offsets}
        if self._order is not None:
            arrays["order"] = self._order
        np.savez(handle, **arrays)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()

    @classmethod
    def read(cls, source: str | Path | BinaryIO) -> "RecordList":
        """A stored form from a file (path or open binary file): the buffer is the array read, not a copy of it.
        ``ValueError`` when it is not of this :data:`FORMAT` (an index stored by an earlier version)."""
        with np.load(source, allow_pickle=False) as stored:
            if "format" not in stored.files or str(stored["format"]) != cls.FORMAT:
                raise ValueError(f"not a stored index of the format {cls.FORMAT}")
            return cls(stored["blob"], stored["offsets"], stored["splits"], str(stored["split_names"]).split("\n"),
                       stored["order"] if "order" in stored.files else None,
                       StringTable(stored["texts"], stored["text_offsets"]))

    @classmethod
    def from_bytes(cls, data: bytes) -> "RecordList":
        return cls.read(io.BytesIO(data))


def _encode(record: ClipRecord, texts: StringTable) -> bytes:
    """A record's entry (all but its split): ``[dataset, speaker, clip, folder, file name, relpath, meta layout,
    meta values]`` and, when set, ``skip`` and ``skip_message``; the numbers are of ``texts``. JSON escapes keep
    the surrogates of undecodable names."""
    folder, sep, name = record.path.rpartition("/")
    relpath: int | str = record.relpath
    if record.relpath and record.path.endswith("/" + record.relpath):  # ``relpath`` is ``path`` past a root
        relpath = texts.add(record.path[:len(record.path) - len(record.relpath) - 1])
    entry = [texts.add(record.dataset), record.speaker, record.clip, texts.add(folder) if sep else -1, name, relpath,
             texts.add(json.dumps(list(record.meta), separators=(",", ":"))), list(record.meta.values())]
    if record.skip or record.skip_message:
        entry += [record.skip, record.skip_message]
    return json.dumps(entry, separators=(",", ":")).encode("ascii")


def find_videos(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every video file under ``root`` (by extension), sorted (see :func:`talkdata.corpora.walk.walk`)."""
    return files_under(root, VIDEO_EXTENSIONS, exclude)
