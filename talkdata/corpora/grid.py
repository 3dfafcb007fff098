"""GRID audio-visual sentence corpus (Cooke, Barker, Cunningham & Shao, JASA 2006).

34 speakers x 1000 sentences of the form "command colour preposition letter digit adverb", 25 fps
video (360 x 288 MPEG-1 in the normal-quality files) with the speech track inside the ``.mpg``. The
Zenodo record (10.5281/zenodo.3625687) unpacks to ``s1/bbaf2n.mpg`` and ``alignments/s1/bbaf2n.align``;
the Sheffield site's tars to ``s1/*.mpg`` and ``align/*.align``. Both layouts are read.

Errata handled here:
- alignment folders are paired with video folders by the overlap of their utterance ids, not by
  folder name (several Zenodo alignment folders belong to another speaker);
- ``.align`` times are in 1/25000 s (lhotse's recipe divides by 1000, 25x too long); lines end in
  CRLF; ``sil`` and ``sp`` tokens are not words;
- ``__MACOSX`` resource folders inside the zips are skipped.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from ..config import BuildConfig
from ..errors import UserError
from .records import ClipRecord, find_videos, representable
from .walk import files_under

ALIGN_UNITS_PER_SECOND = 25000.0

logger = logging.getLogger(__name__)

WORDS = [
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    None,  # letter: spoken as itself
    {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
     "7": "seven", "8": "eight", "9": "nine"},
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
]

_SPEAKER = re.compile(r"^s\d+$")


def transcript_from_id(utterance: str) -> str | None:
    """``bbaf2n`` -> ``bin blue at f two now``; None when the id is not a GRID sentence id."""
    if len(utterance) != 6:
        return None
    words = []
    for char, table in zip(utterance, WORDS):
        if table is None:
            if not ("a" <= char <= "z") or char == "w":
                return None
            words.append(char)
        elif char in table:
            words.append(table[char])
        else:
            return None
    return " ".join(words)


def parse_align(path: Path) -> list[dict]:
    """Words with start/end in seconds; ``sil``/``sp`` dropped. ValueError naming the file and line when a
    line is not ``start end word`` (two whole numbers of 1/25000 s, then a token) or no line is."""
    words = []
    lines = 0
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        lines += 1
        if len(parts) != 3 or not (parts[0].isdecimal() and parts[1].isdecimal()):
            raise ValueError(f"{path} line {number} is not 'start end word': {' '.join(line.split())[:60]!r}")
        start, end, word = parts
        if word in ("sil", "sp"):
            continue
        words.append({"word": word, "start": int(start) / ALIGN_UNITS_PER_SECOND, "end": int(end) / ALIGN_UNITS_PER_SECOND})
    if not lines:
        raise ValueError(f"{path} holds no 'start end word' line")
    return words


def alignment_words(path: Path) -> list[dict] | None:
    """:func:`parse_align`, or None (said once, as a warning) when the file is malformed: the words are
    optional metadata (the transcript comes from the clip id), so the clip is kept without them."""
    try:
        return parse_align(path)
    except ValueError as err:
        logger.warning(f"GRID alignment {err}; the clip keeps its transcript, without word timings (words: null)")
        return None


def _speaker_of(path: Path, root: Path) -> str:
    """The nearest folder named like ``s12``; else the parent folder's name."""
    for parent in path.relative_to(root).parents:
        if _SPEAKER.match(parent.name):
            return parent.name
    return path.parent.name or root.name


def pair_alignments(videos_by_speaker: dict[str, set[str]], align_dirs: dict[Path, set[str]]) -> dict[str, Path]:
    """Alignment folder of each speaker, chosen by the largest overlap of utterance ids."""
    pairing = {}
    for speaker, ids in sorted(videos_by_speaker.items()):
        best, best_overlap = None, 0
        for folder, align_ids in sorted(align_dirs.items()):
            overlap = len(ids & align_ids)
            if overlap > best_overlap or (overlap == best_overlap and overlap and folder.name == speaker):
                best, best_overlap = folder, overlap
        if best is not None:
            pairing[speaker] = best
    return pairing


def index(root: Path, config: BuildConfig, exclude: Iterable[Path] = ()) -> Iterator[ClipRecord]:
    videos = [p for p in find_videos(root, exclude) if p.suffix.lower() in (".mpg", ".mpeg", ".mp4")]
    if not videos:
        raise UserError(f"no GRID videos (*.mpg) under {root}: expected s1/bbaf2n.mpg ... (Zenodo or Sheffield layout)")
    by_speaker: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in videos:
        speaker = _speaker_of(path, root)
        other = by_speaker[speaker].get(path.stem)
        if other is not None:
            raise UserError(f"two GRID clips with the id {speaker}/{path.stem}: {other.relative_to(root)} and "
                            f"{path.relative_to(root)}; keep one (a clip id must be unique within a speaker)")
        by_speaker[speaker][path.stem] = path
    align_dirs: dict[Path, set[str]] = defaultdict(set)
    for path in files_under(root, {".align"}, exclude):
        align_dirs[path.parent].add(path.stem)
    pairing = pair_alignments({s: set(v) for s, v in by_speaker.items()}, align_dirs)
    for speaker in sorted(by_speaker):
        folder = pairing.get(speaker)
        for utterance, path in sorted(by_speaker[speaker].items()):
            align = folder / f"{utterance}.align" if folder else None
            words = alignment_words(align) if align is not None and align.is_file() else None
            meta = {
                "transcript": transcript_from_id(utterance),
                "words": words,
                "alignment": representable(str(align.relative_to(root))) if words is not None else None,
            }
            yield ClipRecord(
                dataset="grid", speaker=speaker, clip=utterance, path=str(path),
                relpath=str(path.relative_to(root)), meta=meta,
            )
