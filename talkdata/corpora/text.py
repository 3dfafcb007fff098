"""A corpus's metadata file as text: UTF-8 (a byte order mark is dropped), or one error line that names
the file and the first byte that is not UTF-8 (a damaged or re-encoded copy)."""

from __future__ import annotations

import codecs
from pathlib import Path

from ..errors import UserError


def read_text(path: Path) -> str:
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start  # in the file, the mark included
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); restore the "
                        "corpus's own file (download or extract it again)") from None
