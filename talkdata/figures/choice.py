"""Which samples a figure shows: the first N keys in a seeded pseudo-random order.

The order is ``sha256(f"{seed}:{key}")`` (ties by key): it depends only on the keys and the seed
(not on time, worker count or file order), so the first N can be kept while samples stream by,
shard by shard, and merged (:class:`Smallest`), and adding samples to a dataset changes the choice
only where a new key sorts first.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from typing import Any


def rank(key: str, seed: int) -> tuple[str, str]:
    """The sort key of ``key`` in the seeded order."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest(), key


def hash_order(keys: Iterable[str], seed: int) -> list[str]:
    """``keys`` in the seeded pseudo-random order."""
    return sorted(keys, key=lambda k: rank(k, seed))


class Smallest:
    """The ``size`` items of smallest rank seen so far (``{key: item}``): bounded, and mergeable in
    any order to the same result."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.items: dict[str, Any] = {}
        self._ranks: list[tuple[str, str]] = []  # of the kept keys, ascending

    def wants(self, key: str) -> bool:
        """Whether ``key`` would be kept now (ask before building an expensive item)."""
        return len(self._ranks) < self.size or rank(key, self.seed) < self._ranks[-1]

    def add(self, key: str, item: Any) -> None:
        if key in self.items or not self.wants(key):
            return
        bisect.insort(self._ranks, rank(key, self.seed))
        self.items[key] = item
        if len(self._ranks) > self.size:
            del self.items[self._ranks.pop()[1]]

    def merge(self, other: Smallest) -> None:
        for key, item in other.items.items():
            self.add(key, item)

    def in_key_order(self) -> list[tuple[str, Any]]:
        return sorted(self.items.items(), key=lambda pair: pair[0])
