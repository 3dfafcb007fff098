"""File rules every stage shares: write a file whole or not at all, hash a file's content, read a text file."""

from __future__ import annotations

import codecs
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import UserError


@contextmanager
def atomic_writer(path: str | os.PathLike[str], *, sync: bool = True) -> Iterator[BinaryIO]:
    """An open binary file whose content becomes ``path`` whole or not at all: written as ``PATH.tmp``
    and renamed into place when the block ends without an error (for content written as a stream, not
    held in memory). ``sync=False`` skips the fsync, for small per-clip files on hot paths whose loss
    after a power cut only means the clip is processed again."""
    path = Path(path)
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        yield handle
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temp, path)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` through ``PATH.tmp`` and a rename, so readers (and a resumed build)
    never see half a file (:func:`atomic_writer`)."""
    with atomic_writer(path, sync=sync) as handle:
        handle.write(data)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_utf8(path: Path, remedy: str) -> str:
    """A text file as UTF-8 (a byte order mark is dropped), or one ``UserError`` line that names the file,
    the first byte that is not UTF-8 and its offset in the file, then ``remedy`` (what the user can do)."""
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start  # in the file, the mark included
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); {remedy}") from None


def read_parquet(source, columns: list[str] | None = None):
    """A parquet file (path or open binary file) as a pyarrow Table, read on the calling thread.

    No Arrow thread pool is started (checked in the tests): ``read_table`` starts one even with
    ``use_threads=False``, and a pool left at exit can abort the process ("terminate called without an
    active exception", apache/arrow#34314) or hang it (apache/arrow#50482) after its work is done."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(source, pre_buffer=False).read(columns=columns, use_threads=False)
