"""Clip records: what the index stage produces for every clip of a corpus."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = {".mp4", ".mpg", ".mpeg", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".3gp", ".ts"}

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key_part(text: str) -> str:
    """A key component made of ``[A-Za-z0-9_-]`` (WebDataset splits keys at the first dot).

    Names that had to change get a short hash of the original appended, so that two different
    names never map to the same key.
    """
    cleaned = _KEY_UNSAFE.sub("_", text)
    if cleaned != text or not cleaned:
        cleaned = f"{cleaned}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return cleaned


@dataclass
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


def find_videos(root: Path) -> list[Path]:
    """Every video file under ``root`` (by extension), sorted, skipping macOS resource folders."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
        and "__MACOSX" not in p.parts and not p.name.startswith("._")
    )
