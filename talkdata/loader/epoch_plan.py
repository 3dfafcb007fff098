"""Shard planning: which shards (or samples) each consumer reads in an epoch, in what order.

A *consumer* is one DataLoader worker of one distributed rank: consumer ``rank * workers + worker``
of ``world_size * workers``. Every consumer computes the same epoch plan from ``(seed, epoch)``:

* the split's shards, in a seeded order (the same permutation in every consumer);
* with at least as many shards as consumers, consumer ``i`` reads shards ``i, i + n, i + 2n, ...``
  of that order (**shard-level** split: no shard is opened twice);
* with fewer shards than consumers, every consumer opens every shard and keeps the samples whose
  global ordinal (shard offset from the manifest + position in the shard) is ``i mod n``
  (**sample-level** split, :func:`keep_ordinals`; the skipped samples' selected fields are still
  read from the tar).

Either way each sample of the split is read by exactly one consumer per epoch. With
``resampled=True`` every consumer instead draws shards with replacement, forever, from its own
seeded generator (no split is needed: the stream is a random sample). :func:`rng_for` is the one
seeded generator every random choice of the loader comes from.

Imports only :mod:`talkdata.loader.shard_list` (and webdataset's worker lookup).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from webdataset.utils import pytorch_worker_info

from .shard_list import Shard


@dataclass(frozen=True)
class Consumer:
    index: int  # rank * num_workers + worker
    count: int  # world_size * num_workers
    rank: int = 0
    worker: int = 0


def current_consumer() -> Consumer:
    """This process's place among all readers (DataLoader worker info, torch.distributed or the
    ``RANK``/``WORLD_SIZE`` and ``WORKER``/``NUM_WORKERS`` environment variables)."""
    rank, world_size, worker, num_workers = pytorch_worker_info()
    return Consumer(rank * num_workers + worker, world_size * num_workers, rank, worker)


def in_dataloader_worker() -> bool:
    """True inside a torch DataLoader worker process."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return False
    return get_worker_info() is not None


def rng_for(*parts) -> np.random.Generator:
    """A numpy generator seeded from ints and strings (strings by crc32), stable across runs."""
    return np.random.default_rng([p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts])


def epoch_order(shards: list[Shard], seed: int, epoch: int, shuffle: bool) -> list[Shard]:
    if not shuffle:
        return list(shards)
    order = rng_for(seed, epoch, "shards").permutation(len(shards))
    return [shards[i] for i in order]


@dataclass(frozen=True)
class Plan:
    """What one consumer reads in one epoch: shards, and which samples of them it keeps."""

    shards: tuple[Shard, ...]
    keep_index: int = 0  # keep samples whose global ordinal % keep_count == keep_index
    keep_count: int = 1


def plan_epoch(shards: list[Shard], consumer: Consumer, seed: int, epoch: int, shuffle: bool) -> Plan:
    ordered = epoch_order(shards, seed, epoch, shuffle)
    if consumer.count <= 1:
        return Plan(tuple(ordered))
    if len(ordered) >= consumer.count:
        return Plan(tuple(ordered[consumer.index::consumer.count]))
    return Plan(tuple(ordered), consumer.index, consumer.count)


def resampled_shards(shards: list[Shard], consumer: Consumer, seed: int, epoch: int) -> Iterator[Shard]:
    """Shards drawn with replacement, forever (each consumer its own seeded stream)."""
    rng = rng_for(seed, epoch, consumer.rank, consumer.worker, "resampled")
    while True:
        yield shards[int(rng.integers(len(shards)))]



def keep_ordinals(samples: Iterable[dict], plan: Plan, offsets: dict[str, int]) -> Iterator[dict]:
    """Keep the samples whose global ordinal is ``plan.keep_index`` mod ``plan.keep_count``."""
    if plan.keep_count <= 1:
        yield from samples
        return
    position: dict[str, int] = {}
    for sample in samples:
        url = sample["__url__"]
        ordinal = offsets[url] + position.get(url, 0)
        position[url] = position.get(url, 0) + 1
        if ordinal % plan.keep_count == plan.keep_index:
            yield sample
