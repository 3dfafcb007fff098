"""Any folder of the user's own videos.

Every video file under the source folder is a clip; its parent folder's name is the speaker (files
directly in the source folder take the folder's own name). Keys keep only ``[A-Za-z0-9_-]``; names
with other characters (spaces, non-ASCII) get a short hash so that keys stay unique.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from ..config import BuildConfig
from ..errors import UserError
from .records import ClipRecord, find_videos


def index(root: Path, config: BuildConfig, exclude: Iterable[Path] = ()) -> Iterator[ClipRecord]:
    videos = find_videos(root, exclude)
    if not videos:
        raise UserError(f"no video files under {root} (looked for .mp4, .mov, .mkv, .avi, .webm, .flv, .mpg, ...)")
    stems: dict[tuple[Path, str], int] = {}
    for path in videos:
        stems[(path.parent, path.stem)] = stems.get((path.parent, path.stem), 0) + 1
    for path in videos:
        speaker = path.parent.name if path.parent != root else root.name
        # two files that differ only by extension (talk.mp4, talk.mov) keep the extension in the key
        clip = path.stem if stems[(path.parent, path.stem)] == 1 else f"{path.stem}_{path.suffix[1:]}"
        yield ClipRecord(dataset="videos", speaker=speaker, clip=clip, path=str(path),
                         relpath=str(path.relative_to(root)), meta={})
