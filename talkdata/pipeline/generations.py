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
from pathlib import Path

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


def release_shard(out: str, work_dir: str, generation: str, keep: bool, item: tuple[str, dict[str, str]]) -> int:
    """Executor task: point the entries of one shard's samples (``item``: shard path, ``{key: cache key}``)
    into it and drop their payload copies (with ``keep``, only entries already released are re-pointed).
    Returns how many entries now point into the shard."""
    shard, members = item
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
