"""Fast path: ``.npy`` member bytes to an array without ``np.load``'s header parsing.

``np.load`` parses every header with ``ast``, which costs more than copying a small array; the
plain headers ``np.save`` writes for numeric C-order arrays are matched with one regular expression
here, and anything else goes to ``np.load``. ``tests/test_loader_internals.py`` checks it against
``np.lib.format.read_array`` on every ``.npy`` member of real shards.

Imports only numpy.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np


_NPY_HEADER = re.compile(rb"\{'descr': '([<>|][a-z][0-9]+)', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}")


def decode_npy(data: bytes) -> np.ndarray:
    """A ``.npy`` member as a (writable) array; ``np.load`` for anything but the plain headers
    ``np.save`` writes for numeric C-order arrays (it parses every header with ``ast``, which costs
    more than copying a small array)."""
    if data[:8] in (b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00"):
        width = 2 if data[6] == 1 else 4
        length = int.from_bytes(data[8 : 8 + width], "little")
        match = _NPY_HEADER.match(data, 8 + width, 8 + width + length)
        if match:
            dtype = np.dtype(match.group(1).decode())
            shape = tuple(int(n) for n in match.group(2).split(b",") if n.strip())
            count = math.prod(shape)
            offset = 8 + width + length
            if len(data) - offset == count * dtype.itemsize and dtype.kind in "fiub":
                return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
    return np.load(io.BytesIO(data), allow_pickle=False)

