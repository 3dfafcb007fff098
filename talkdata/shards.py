"""Deterministic WebDataset shards.

A shard is a plain tar whose members are ``{key}.{field}`` (key ``speaker/clip``; WebDataset
groups consecutive members by the part before the first dot of the base name). Members are written
sorted by key, then by field name, with fixed metadata (mtime 0, uid/gid 0, no user names, mode
0644, GNU format), so the same samples always give the same bytes. Shards are written under a
temporary name and renamed when complete: a reader never sees half a shard under its final name.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .manifest import sha256_file


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


class ShardWriter:
    """Write samples in key order into ``shards/{split}/{name}-{split}-{i:06d}.tar``."""

    def __init__(self, root: Path, name: str, split: str, max_samples: int, max_bytes: int):
        self.root = Path(root)
        self.name, self.split = name, split
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.folder = self.root / "shards" / split
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shards: list[ShardInfo] = []
        self._tar = None
        self._keys: list[str] = []
        self._size = 0

    def _open(self) -> None:
        index = len(self.shards)
        self._final = self.folder / f"{self.name}-{self.split}-{index:06d}.tar"
        self._temp = self._final.with_name(self._final.name + ".tmp")
        self._handle = open(self._temp, "wb")
        self._tar = tarfile.open(fileobj=self._handle, mode="w", format=tarfile.GNU_FORMAT)
        self._keys, self._size = [], 0

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._temp, self._final)
        self.shards.append(ShardInfo(
            path=self._final.relative_to(self.root).as_posix(), split=self.split, samples=len(self._keys),
            bytes=self._final.stat().st_size, sha256=sha256_file(self._final), keys=self._keys,
        ))
        self._tar = None

    def write(self, key: str, files: dict[str, bytes]) -> str:
        """Add one sample; returns the relative path of the shard it went into."""
        size = sum(len(v) for v in files.values())
        if self._tar is not None and (len(self._keys) >= self.max_samples or self._size + size > self.max_bytes):
            self._close()
        if self._tar is None:
            self._open()
        for field in sorted(files):
            data = files[field]
            self._tar.addfile(_member(f"{key}.{field}", len(data)), io.BytesIO(data))
        self._keys.append(key)
        self._size += size
        return self._final.relative_to(self.root).as_posix()

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
            folder, _, base = member.name.rpartition("/")
            stem, _, field = base.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            samples.setdefault(key, {})[field] = tar.extractfile(member).read()
    return samples
