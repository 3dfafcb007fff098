"""Reusing the previous index when the source tree has not changed.

Indexing parses every clip's corpus metadata (VoxCeleb2: a txt face track per clip); a million clips
take minutes to hours. Listing the tree and reading each file's size and modification time takes
seconds, so the index is stored (``RecordList.write``) under a fingerprint of:

- the listing: every file the walk reaches (the corpus's metadata files and every clip), with its
  size and modification time (``walk.walk``: the same folders the indexers enter);
- the source folder's path (records hold absolute paths), the recipe, the toolkit version and the stored
  form's format (``RecordList.FORMAT``: an index stored in an earlier format is parsed again, not read).

A file added, removed, renamed, rewritten or touched changes the fingerprint, and the tree is
indexed again. The stored index lives in the build's own folder (``OUT/.work/index``), never in the
source tree; only the latest one is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Iterable

from ..files import atomic_writer
from ..version import __version__
from .records import RecordList
from .walk import walk

SUFFIX = ".records.npz"


def tree_fingerprint(root: Path, recipe: dict, exclude: Iterable[Path] = ()) -> str:
    """sha256 of the tree's listing (relative path, size, mtime of every file the walk reaches, ``exclude``
    left out), the root, the recipe, the version and the stored form's format."""
    digest = hashlib.sha256(json.dumps({"root": str(Path(root).resolve()), "recipe": recipe, "toolkit": __version__,
                                        "format": RecordList.FORMAT}, sort_keys=True, default=str).encode())
    for folder, names in walk(root, exclude):
        prefix = os.path.relpath(folder, root).encode("utf-8", "surrogateescape") + b"/"
        lines = []
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in names:
                try:
                    info = os.stat(name, dir_fd=handle)
                    lines.append(b"%s%s\0%d\0%d\n" % (prefix, os.fsencode(name), info.st_size, info.st_mtime_ns))
                except OSError:  # a dangling link: listed without a size
                    lines.append(b"%s%s\0-\n" % (prefix, os.fsencode(name)))
        finally:
            os.close(handle)
        digest.update(b"".join(lines))
    return digest.hexdigest()


def load(folder: Path, fingerprint: str) -> RecordList | None:
    """The index stored under ``fingerprint``, or None (none stored, or unreadable); read straight from the file
    (the records' buffer is held once)."""
    try:
        return RecordList.read(Path(folder) / f"{fingerprint}{SUFFIX}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def save(folder: Path, fingerprint: str, records: RecordList) -> None:
    """Store the index under ``fingerprint`` (replacing a file there that ``load`` could not read); earlier stored
    indexes are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fingerprint}{SUFFIX}"
    with atomic_writer(path) as handle:  # written as it is made (no copy of the records in memory), then renamed
        records.write(handle)
    for other in [*folder.glob(f"*{SUFFIX}"), *folder.glob(f"*{SUFFIX}.tmp")]:  # with an interrupted save's
        if other != path:
            other.unlink(missing_ok=True)
