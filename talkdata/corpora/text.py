"""A corpus's metadata file as text: UTF-8 (a byte order mark is dropped), or one error line that names
the file and the first byte that is not UTF-8 (a damaged or re-encoded copy)."""

from __future__ import annotations

from pathlib import Path

from ..files import read_utf8


def read_text(path: Path) -> str:
    return read_utf8(path, "restore the corpus's own file (download or extract it again)")
