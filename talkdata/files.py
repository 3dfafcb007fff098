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
    """A parquet file (path or open binary file) as a pyarrow Table, read on the calling thread.

    No Arrow thread pool is started (checked in the tests): ``read_table`` starts one even with
    ``use_threads=False``, and a pool left at exit can abort the process ("terminate called without an
    active exception", apache/arrow#34314) or hang it (apache/arrow#50482) after its work is done."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(source, pre_buffer=False).read(columns=columns, use_threads=False)
