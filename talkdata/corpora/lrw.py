"""LRW: Lip Reading in the Wild (VGG, University of Oxford, with BBC R&D).

500 words, each spoken in up to 1,000 training clips (488,766 in all), 50 validation and 50 test
clips, cut from BBC broadcasts (more than 1,000 speakers, not labelled). Every clip is a 256 x 256
H.264 mp4 of 29 frames (1.16 s) at 25 fps with the word in the middle and AAC audio; a txt next to
it gives the word and its duration. The official split is the folder: train and val come from
broadcasts of 01/2010-12/2015, test from 01/2016-09/2016. Access: sign the BBC R&D data-sharing
agreement (https://www.bbc.co.uk/rd/projects/lip-reading-datasets) for a username and password,
download ``lrw-v1-parta{a..g}``, ``cat lrw-v1* > lrw-v1.tar`` and extract. Non-commercial
academic research only; no redistribution (the tests use synthetic clips in this layout).

Layout::

    lipread_mp4/ABOUT/train/ABOUT_00001.mp4
    lipread_mp4/ABOUT/train/ABOUT_00001.txt     "Text:  ABOUT" ... "Duration: 0.270000 seconds"
    lipread_mp4/ABOUT/val/ABOUT_00001.mp4
    lipread_mp4/ABOUT/test/ABOUT_00050.mp4

Clips are found by listing the folders, never by assuming contiguous numbers (third-party clip
lists skip some). The txt is parsed by searching for the ``Duration`` line (loaders that read a fixed
line index break on other txt versions).

Word boundary: "the word occurs in the middle of the video; the word duration is given in the
metadata, from which you can determine the start and end frames" (official page). The frames are
computed as the widely used LRW loader (mpc001) does: ``mid = (29 - 1) // 2``,
``half = int(duration / 2 * 25)``, frames ``[max(0, mid - half - 1), min(29, mid + half + 1))``
(end exclusive), in LRW's own 25 fps frames (= output frames at the default ``video.fps = 25``).

Keys: LRW labels no speakers, so the word is the key's first part and the ``speaker`` field
(speaker-level statistics over LRW therefore group by word); the clip part is
``{split}_{WORD}_{NNNNN}`` because the numbers restart in every split folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from ..config import BuildConfig
from ..errors import UserError
from ..shards import SPLITS
from .records import ClipRecord
from .walk import walk

CLIP_FRAMES = 29  # every LRW clip (official page)
FPS = 25

_DURATION = re.compile(r"Duration\s*:?\s*([0-9]*\.?[0-9]+)", re.IGNORECASE)
_TEXT = re.compile(r"^\s*Text\s*:\s*(\S+)", re.IGNORECASE)
_CLIP = re.compile(r"^(.+)_(\d+)$")


def parse_txt(path: Path) -> dict:
    """``word`` (from the ``Text:`` line) and ``duration`` in seconds (from the ``Duration`` line); None when absent."""
    word, duration = None, None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if word is None and (match := _TEXT.match(line)):
            word = match.group(1)
        if duration is None and "duration" in line.lower() and (match := _DURATION.search(line)):
            duration = float(match.group(1))
    return {"word": word, "duration": duration}


def word_frames(duration: float, n_frames: int = CLIP_FRAMES, fps: float = FPS) -> tuple[int, int]:
    """``(start, end)`` frames of a word of ``duration`` seconds centred in the clip; end exclusive."""
    mid = (n_frames - 1) // 2
    half = int(duration / 2 * fps)
    return max(0, mid - half - 1), min(n_frames, mid + half + 1)


def find_words_root(root: Path) -> Path:
    """The folder holding the word folders: ``root/lipread_mp4`` or ``root`` itself."""
    for candidate in (root / "lipread_mp4", root):
        if candidate.is_dir() and any((d / s).is_dir() for d in candidate.iterdir() if d.is_dir() for s in SPLITS):
            return candidate
    raise UserError(f"no LRW word folders under {root}: expected lipread_mp4/WORD/{{train,val,test}}/WORD_00001.mp4 "
                    "(+ WORD_00001.txt), the layout of the extracted lrw-v1.tar")


def index(root: Path, config: BuildConfig, exclude: Iterable[Path] = ()) -> Iterator[ClipRecord]:
    words_root = find_words_root(root)
    clips = []
    for folder, names in walk(words_root, exclude, skip_hidden=True):  # word folders may be links; none unreadable
        parts = folder.relative_to(words_root).parts
        if len(parts) != 2 or parts[1] not in SPLITS:
            continue
        clips.extend((parts[0], SPLITS.index(parts[1]), folder / n) for n in names
                     if n.endswith(".mp4") and not n.startswith("._"))
    for word, split_index, path in sorted(clips):
        split = SPLITS[split_index]
        match = _CLIP.match(path.stem)
        txt_path = path.with_suffix(".txt")
        txt = parse_txt(txt_path) if txt_path.is_file() else {"word": None, "duration": None}
        duration = txt["duration"]
        start, end = word_frames(duration) if duration is not None else (None, None)
        meta = {
            "word": word,
            "clip_index": int(match.group(2)) if match else None,
            "txt": str(txt_path.relative_to(root)) if txt_path.is_file() else None,
            "word_duration": duration,
            "word_start_frame": start,
            "word_end_frame": end,
            "lrw_fps": FPS,
        }
        if txt["word"] is not None and txt["word"] != word:
            meta["txt_word"] = txt["word"]  # the txt names another word than its folder
        yield ClipRecord(
            dataset="lrw", speaker=word, clip=f"{split}_{path.stem}", path=str(path),
            relpath=str(path.relative_to(root)), split=split, meta=meta,
        )
    if not clips:
        raise UserError(f"no LRW clips in {words_root}: expected WORD/{{train,val,test}}/WORD_00001.mp4 files")
