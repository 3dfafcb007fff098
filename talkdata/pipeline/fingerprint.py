"""The manifest's source fingerprint, collected while measuring, without an object per clip.

``source.fingerprint`` in the manifest is the sha256 of the JSON list of every packed clip's
``[source path, source sha256]``, sorted. ``SourceFingerprint`` keeps the pairs in one buffer
(their UTF-8 bytes, about 100 bytes per clip), sorts them as byte strings (the order of the pairs:
UTF-8 keeps code point order, and a path never holds a NUL) and hashes the list piece by piece.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable

import numpy as np


class SourceFingerprint:
    def __init__(self) -> None:
        self._data = bytearray()
        self._offsets = array("q", [0])

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for path, sha256 in pairs:
            self._data += path.encode("utf-8") + b"\0" + sha256.encode("utf-8")
            self._offsets.append(len(self._data))

    def _entry(self, n: int) -> bytes:
        return bytes(self._data[self._offsets[n]:self._offsets[n + 1]])

    def sha256(self) -> str:
        """sha256 of ``json.dumps(sorted(pairs))`` (each pair as a JSON list)."""
        count = len(self._offsets) - 1
        width = max((self._offsets[n + 1] - self._offsets[n] for n in range(count)), default=1)
        entries = np.zeros(count, dtype=f"S{width}")
        for n in range(count):
            entries[n] = self._entry(n)
        digest = hashlib.sha256(b"[")
        for position, n in enumerate(np.argsort(entries, kind="stable")):
            path, sha256 = self._entry(int(n)).decode("utf-8").split("\0")
            digest.update(((", " if position else "") + json.dumps([path, sha256])).encode())
        digest.update(b"]")
        return digest.hexdigest()
