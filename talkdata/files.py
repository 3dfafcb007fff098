"""File rules every stage shares: write a file whole or not at all, and hash a file's content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` through ``PATH.tmp`` and a rename, so readers (and a resumed build)
    never see half a file. ``sync=False`` skips the fsync, for small per-clip files on hot paths
    whose loss after a power cut only means the clip is processed again."""
    path = Path(path)
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temp, path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_parquet(source, columns: list[str] | None = None):
    """A parquet file (path or open binary file) as a pyarrow Table, decoded on the calling thread.

    ``use_threads=False`` and ``pre_buffer=False`` keep the read off Arrow's CPU pool: a read from a
    Python file object with that pool can hang the interpreter at exit (apache/arrow#50482). Arrow
    may still start an I/O thread; the abort that can cause at exit is handled by the console entry
    (``talkdata.cli.run``)."""
    import pyarrow.parquet as pq

    return pq.read_table(source, columns=columns, use_threads=False, pre_buffer=False)
