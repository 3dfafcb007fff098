"""Walking a source folder: every file under it, folder links followed once, unreadable folders reported.

- Folder symlinks are followed (a speaker folder that is a link to another disk is part of the
  corpus); a folder reached twice (a link loop, or two links to one folder) is walked once.
- A folder that cannot be listed stops the walk with one :class:`~talkdata.errors.UserError` naming
  it (and the others), instead of being skipped silently.
- ``exclude``: folders never entered, such as the build's own output folder when it lies inside the
  source (its cached ``video.mp4`` files are not clips of the corpus).
- Bookkeeping folders of talkdata (``.talkdata``: download markers; ``.talkdata-extracting``: an
  archive being unpacked) and macOS resource folders (``__MACOSX``) are never entered.

Names come as ``os.walk`` gives them: a name that is not valid UTF-8 keeps its bytes as surrogate
escapes (``os.fsdecode``), so the path still opens; :func:`talkdata.corpora.records.representable`
turns it into text for metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import UserError

SKIPPED_FOLDERS = ("__MACOSX", ".talkdata")


def _skipped(name: str) -> bool:
    return name in SKIPPED_FOLDERS or name.startswith(".talkdata-")


def walk(root: Path, exclude: Iterable[Path] = (), skip_hidden: bool = False) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, sorted file names)`` for every folder under ``root``, each folder once.

    The real folders come first (depth first, sorted), then the folders reached only through links,
    so a folder that is also reachable through a link keeps its own path. ``skip_hidden`` also leaves
    out folders whose name starts with a dot.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    seen: set[tuple[int, int]] = set()
    unreadable: list[str] = []
    pending = [Path(root)]

    def failed(err: OSError) -> None:
        unreadable.append(f"{err.filename} ({err.strerror or err})")

    while pending:
        for folder, dirs, files in os.walk(pending.pop(0), onerror=failed):
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:  # a link back to a folder already walked
                dirs[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            keep = []
            for name in sorted(dirs):
                path = os.path.join(folder, name)
                if _skipped(name) or (skip_hidden and name.startswith(".")) or (
                        excluded and os.path.realpath(path) in excluded):
                    continue
                if os.path.islink(path):
                    pending.append(Path(path))
                else:
                    keep.append(name)
            dirs[:] = keep
            yield Path(folder), sorted(files)
    if unreadable:
        shown = "; ".join(unreadable[:5]) + (f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise UserError(f"cannot read {len(unreadable)} folder(s) under {root}: {shown}; fix their permissions or move "
                        "them out of the source folder")


def files_under(root: Path, suffixes: Iterable[str], exclude: Iterable[Path] = ()) -> list[Path]:
    """Every file under ``root`` whose lower-case suffix is in ``suffixes``, sorted; macOS ``._`` files left out."""
    wanted = {s.lower() for s in suffixes}
    found = []
    for folder, names in walk(root, exclude):
        for name in names:
            if os.path.splitext(name)[1].lower() in wanted and not name.startswith("._"):
                path = folder / name
                if path.is_file():
                    found.append(path)
    return sorted(found)
