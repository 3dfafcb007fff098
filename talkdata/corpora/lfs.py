"""git-lfs pointer files: what a clone made without ``git lfs`` holds in place of the media."""

from __future__ import annotations

from pathlib import Path


LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


def is_lfs_pointer(path: Path) -> bool:
    """True for a git-lfs pointer file (a clone made without ``git lfs``): small text naming the real object."""
    try:
        if path.stat().st_size > 1024:
            return False
        with path.open("rb") as handle:
            return handle.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX
    except OSError:
        return False

