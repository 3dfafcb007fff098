"""Clip records: what the index stage produces for every clip of a corpus."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .walk import files_under

VIDEO_EXTENSIONS = {".mp4", ".mpg", ".mpeg", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".3gp", ".ts"}

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key_part(text: str) -> str:
    """A key component made of ``[A-Za-z0-9_-]`` (WebDataset splits keys at the first dot).

    Names that had to change get a short hash of the original appended, so that two different
    names never map to the same key.
    """
    cleaned = _KEY_UNSAFE.sub("_", text)
    if cleaned != text or not cleaned:
        cleaned = f"{cleaned}_{hashlib.sha1(text.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"
    return cleaned


def representable(text: str) -> str:
    """``text`` as valid UTF-8: the bytes of a file name that is not UTF-8 become ``\\xNN`` escapes.

    ``os`` hands such names over with surrogate escapes, which open the file but cannot be written
    as UTF-8 (json, parquet); ``b"caf\\xe9.mp4"`` (Latin-1) becomes ``"caf\\\\xe9.mp4"``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


@dataclass(slots=True)  # no per-record __dict__: a million records are held by the driver
class ClipRecord:
    dataset: str
    speaker: str
    clip: str
    path: str  # absolute path of the media file on this machine (never written into outputs)
    relpath: str  # path relative to the source root (written into the sample metadata)
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    skip: str = ""  # reason code when the corpus documents this file as bad (recorded as a reject)
    skip_message: str = ""

    def __post_init__(self) -> None:
        # what goes into the sample metadata must be valid UTF-8; ``path`` keeps the bytes that open the file
        self.speaker, self.clip, self.relpath = (representable(t) for t in (self.speaker, self.clip, self.relpath))

    @property
    def key(self) -> str:
        return f"{safe_key_part(self.speaker)}/{safe_key_part(self.clip)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipRecord":
        return cls(**data)

    def fingerprint(self) -> str:
        """Identity of the source file for caching: relative path, size and modification time."""
        stat = Path(self.path).stat() if Path(self.path).exists() else None
        text = f"{self.relpath}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}"
        return hashlib.sha256(text.encode()).hexdigest()


def find_videos(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every video file under ``root`` (by extension), sorted (see :func:`talkdata.corpora.walk.walk`)."""
    return files_under(root, VIDEO_EXTENSIONS, exclude)
