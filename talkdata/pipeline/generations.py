"""The dataset stored once: cache entries point into the shards after a successful pack.

A pack moves the shards of the generation the cache points into out of the way (``park``: into
``.work/previous-shards``), writes the new shards from the cache (following pointers into the
parked ones), and after the manifest is written makes the new generation current (``commit``),
re-points every entry into the new shards and drops the payload copies (``release_shard``, an
executor task per shard), then removes the parked shards. A kill -9 at any point leaves every
entry readable: before the commit all pointers name the parked generation; after it, the parked
shards stay until every entry has been re-pointed, and the next build finishes that first.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..files import write_atomic
from ..shards import split_member
from .cache import GENERATION, PREVIOUS_GENERATION, PREVIOUS_SHARDS, ClipCache, read_generation


def shard_members(path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """``{key: {field: (data offset, size)}}`` of a shard, from its tar headers only."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, field = split_member(member.name)
            samples.setdefault(key, {})[field] = (member.offset_data, member.size)
    return samples


class KeyLookup:
    """Record key -> cache key for many records, as two fixed-width arrays in key order (about 100 bytes
    per record, no object per record): what ``release_shard`` needs when the shards' members are not
    known (a release that did not finish), sent to the workers once."""

    def __init__(self, keys: Iterable[str], cache_keys: Iterable[str]):
        """``keys`` and ``cache_keys``: the same records in the same order."""
        names = np.array([key.encode("ascii") for key in keys], dtype=bytes)
        cached = np.fromiter((key.encode("ascii") for key in cache_keys), dtype="S64", count=len(names))
        order = np.argsort(names, kind="stable")
        self._keys, self._cache_keys = names[order], cached[order]

    def get(self, key: str) -> str | None:
        name = key.encode("ascii", "replace")
        at = int(np.searchsorted(self._keys, name))
        if at < len(self._keys) and self._keys[at] == name:
            return self._cache_keys[at].decode("ascii")
        return None


def release_shard(out: str, work_dir: str, generation: str, keep: bool, lookup: KeyLookup | None,
                  item: tuple[str, dict[str, str] | None]) -> int:
    """Executor task: point the entries of one shard's samples (``item``: shard path, ``{key: cache key}``, or
    None to find them in ``lookup``) into it and drop their payload copies (with ``keep``, only entries already
    released are re-pointed). Returns how many entries now point into the shard."""
    shard, members = item
    if members is None:
        members = lookup
    cache = ClipCache(work_dir)
    count = 0
    for key, offsets in shard_members(Path(out) / shard).items():
        cache_key = members.get(key)
        if cache_key is None or (keep and cache.pointer(cache_key) is None):
            continue
        cache.release(cache_key, generation, shard, offsets)
        count += 1
    return count


def park(out: Path, work: Path, own_shards: list[Path], finish) -> None:
    """Before a pack writes shards: keep the generation the cache points into readable.

    ``own_shards``: talkdata's shard files in OUT/shards (the caller refuses a shards folder holding
    anything else); ``finish()``: re-point entries into the current generation (a committed pack
    whose release did not finish)."""
    current = read_generation(work / GENERATION)
    previous = read_generation(work / PREVIOUS_GENERATION)
    parked = work / PREVIOUS_SHARDS
    if parked.is_dir() and current and current != previous:  # committed, release unfinished
        finish()
        drop_parked(work)
    if parked.is_dir() or current is None:
        # an interrupted pack's shards (every pointer names the parked ones), or nothing points here
        for path in own_shards:
            path.unlink()
        return
    write_atomic(work / PREVIOUS_GENERATION, current.encode())
    if (out / "shards").is_dir():
        (out / "shards").replace(parked)  # one rename: the whole generation moves or none of it


def commit(work: Path, generation: str) -> None:
    write_atomic(work / GENERATION, generation.encode())


def drop_parked(work: Path) -> None:
    shutil.rmtree(work / PREVIOUS_SHARDS, ignore_errors=True)
    (work / PREVIOUS_GENERATION).unlink(missing_ok=True)
