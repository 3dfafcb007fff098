"""The manifest's source fingerprint, collected while measuring, without an object per clip.

``source.fingerprint`` in the manifest is the sha256 of the JSON list of every packed clip's
``[source path, source sha256]``, sorted. ``SourceFingerprint`` keeps the paths in one buffer (their
UTF-8 bytes) and the sha256s as 32 raw bytes each (about 70 bytes per clip in all), sorts the paths
as fixed-width byte strings (UTF-8 keeps code point order, and a path never holds a NUL, so this is
the order of the pairs; pairs with one path are put in the order of their sha256) and hashes the
list piece by piece.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from collections.abc import Iterable

import numpy as np

_HEX = re.compile(r"[0-9a-f]{64}")


class SourceFingerprint:
    def __init__(self) -> None:
        self._paths = bytearray()
        self._offsets = array("q", [0])
        self._shas = bytearray()  # 32 raw bytes per pair
        self._text: dict[int, str] = {}  # a sha256 that is not 64 lower-case hex digits, by pair (kept as given)

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for path, sha256 in pairs:
            self._paths += path.encode("utf-8")
            self._offsets.append(len(self._paths))
            if _HEX.fullmatch(sha256):
                self._shas += bytes.fromhex(sha256)
            else:
                self._text[len(self._offsets) - 2] = sha256
                self._shas += bytes(32)

    def _path(self, n: int) -> bytes:
        return bytes(self._paths[self._offsets[n]:self._offsets[n + 1]])

    def _sha(self, n: int) -> str:
        return self._text[n] if n in self._text else self._shas[32 * n:32 * n + 32].hex()

    def sha256(self) -> str:
        """sha256 of ``json.dumps(sorted(pairs))`` (each pair as a JSON list)."""
        count = len(self._offsets) - 1
        width = max((self._offsets[n + 1] - self._offsets[n] for n in range(count)), default=1)
        paths = np.zeros(count, dtype=f"S{max(width, 1)}")
        for n in range(count):
            paths[n] = self._path(n)
        order = np.argsort(paths, kind="stable")
        same = np.flatnonzero(paths[order[1:]] == paths[order[:-1]]) if count > 1 else []
        del paths
        position = 0
        while position < len(same):  # runs of one path: in the order of their sha256
            start = end = int(same[position])
            while position < len(same) and int(same[position]) == end:
                end += 1
                position += 1
            order[start:end + 1] = sorted(order[start:end + 1], key=lambda n: self._sha(int(n)))
        digest = hashlib.sha256(b"[")
        for at, n in enumerate(order):
            pair = [self._path(int(n)).decode("utf-8"), self._sha(int(n))]
            digest.update(((", " if at else "") + json.dumps(pair)).encode())
        digest.update(b"]")
        return digest.hexdigest()
