"""Deterministic WebDataset shards.

A shard is a plain tar whose members are ``{key}.{field}`` (key ``speaker/clip``; WebDataset
groups consecutive members by the part before the first dot of the base name). Members are written
sorted by key, then by field name, with fixed metadata (mtime 0, uid/gid 0, no user names, mode
0644, GNU format), so the same samples always give the same bytes. Shards are written under a
temporary name and renamed when complete: a reader never sees half a shard under its final name.
Each shard's sha256 is computed from the bytes as they are written (no second read).

``ShardFile`` writes one shard (the packing stage writes shards in parallel, each by its index);
``ShardWriter`` rolls over to the next shard at ``max_samples`` or ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path


#: the splits of every dataset, in this order (shards/{split}/..., index.parquet, the manifest)
SPLITS = ("train", "val", "test")


def member_name(key: str, field: str) -> str:
    """The tar member of one field of one sample: ``{key}.{field}``."""
    return f"{key}.{field}"


def split_member(name: str) -> tuple[str, str]:
    """``"s1/clip.mfcc.npy"`` -> ``("s1/clip", "mfcc.npy")``: the key is the member path up to the
    first dot of its file name (WebDataset's rule; keys hold no dot), the field the rest."""
    folder, _, base = name.rpartition("/")
    stem, _, field = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), field


def shard_name(name: str, split: str, index: int) -> str:
    return f"{name}-{split}-{index:06d}.tar"


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@dataclass
class ShardInfo:
    path: str  # relative to the dataset root
    split: str
    samples: int
    bytes: int
    sha256: str
    keys: list[str]

    def manifest_entry(self) -> dict:
        return {"path": self.path, "split": self.split, "samples": self.samples, "bytes": self.bytes,
                "sha256": self.sha256}


class _HashingFile:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, handle):
        self.handle, self.digest, self.bytes = handle, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.bytes


class ShardFile:
    """One shard ``shards/{split}/{name}-{split}-{index:06d}.tar``, written under ``.tmp`` then renamed."""

    def __init__(self, root: Path, name: str, split: str, index: int):
        self.root = Path(root)
        self.split = split
        folder = self.root / "shards" / split
        folder.mkdir(parents=True, exist_ok=True)
        self.final = folder / shard_name(name, split, index)
        self.relpath = self.final.relative_to(self.root).as_posix()
        self._temp = self.final.with_name(self.final.name + ".tmp")
        self._handle = open(self._temp, "wb")
        self._file = _HashingFile(self._handle)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)
        self.keys: list[str] = []

    def write(self, key: str, files: dict[str, bytes]) -> None:
        for field in sorted(files):
            data = files[field]
            self._tar.addfile(_member(member_name(key, field), len(data)), io.BytesIO(data))
        self.keys.append(key)

    def close(self) -> ShardInfo:
        self._tar.close()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._temp, self.final)
        return ShardInfo(path=self.relpath, split=self.split, samples=len(self.keys), bytes=self._file.bytes,
                         sha256=self._file.digest.hexdigest(), keys=self.keys)

    def abort(self) -> None:
        self._handle.close()
        self._temp.unlink(missing_ok=True)


def starts_new_shard(samples: int, size: int, sample_bytes: int, max_samples: int, max_bytes: int) -> bool:
    """The rule that closes a shard before the next sample (``samples`` / ``size``: the open shard's)."""
    return samples > 0 and (samples >= max_samples or size + sample_bytes > max_bytes)


class ShardWriter:
    """Write samples in key order into ``shards/{split}/{name}-{split}-{i:06d}.tar``."""

    def __init__(self, root: Path, name: str, split: str, max_samples: int, max_bytes: int):
        self.root = Path(root)
        self.name, self.split = name, split
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.shards: list[ShardInfo] = []
        self._shard: ShardFile | None = None
        self._size = 0

    def write(self, key: str, files: dict[str, bytes]) -> str:
        """Add one sample; returns the relative path of the shard it went into."""
        size = sum(len(v) for v in files.values())
        if self._shard is not None and starts_new_shard(len(self._shard.keys), self._size, size, self.max_samples,
                                                        self.max_bytes):
            self._close()
        if self._shard is None:
            self._shard = ShardFile(self.root, self.name, self.split, len(self.shards))
            self._size = 0
        self._shard.write(key, files)
        self._size += size
        return self._shard.relpath

    def _close(self) -> None:
        if self._shard is not None:
            self.shards.append(self._shard.close())
            self._shard = None

    def close(self) -> list[ShardInfo]:
        self._close()
        return self.shards


def sample_hash(files: dict[str, bytes]) -> str:
    """Content hash of a sample: sha256 over its fields' names and sha256s, in field order."""
    digest = hashlib.sha256()
    for field in sorted(files):
        digest.update(field.encode() + b"\0" + hashlib.sha256(files[field]).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def read_shard(path: str | Path) -> dict[str, dict[str, bytes]]:
    """All samples of a shard as ``{key: {field: bytes}}`` (for tests and tools; the loader streams)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, field = split_member(member.name)
            samples.setdefault(key, {})[field] = tar.extractfile(member).read()
    return samples
