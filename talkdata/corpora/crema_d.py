"""CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., IEEE TAC 2014).

91 actors (1001-1091) speak 12 sentences in 6 emotions (anger, disgust, fear, happy, neutral,
sad) at up to 4 intensities; 7,442 clips. Video is FLV (VP6, 480 x 360, 29.97 fps) with MP3 audio,
in ``VideoFlash/AAAA_SSS_EEE_LL.flv`` of the repository (git-lfs). ``VideoDemographics.csv`` gives
age, sex, race and ethnicity per actor. The sentence texts are fixed by the corpus documentation.

Errata: files the corpus README documents as broken are kept in the index with a ``known_bad``
reason and reported as rejects without being processed.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Iterable, Iterator

from ..config import BuildConfig
from ..errors import UserError
from .lfs import is_lfs_pointer
from .records import ClipRecord
from .text import read_text

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}

#: documented in the CREMA-D README
KNOWN_BAD = {
    "1076_MTI_NEU_XX": "very short or no audio (CREMA-D README)",
    "1076_MTI_SAD_XX": "very short or no audio (CREMA-D README)",
    "1064_TIE_SAD_XX": "no duration (CREMA-D README)",
    "1064_IEO_DIS_MD": "a one-minute file holding all the emotions (CREMA-D README)",
}

_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


#: the columns of VideoDemographics.csv talkdata reads
DEMOGRAPHICS_COLUMNS = ("ActorID", "Age", "Sex", "Race", "Ethnicity")


def read_demographics(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [name for name in DEMOGRAPHICS_COLUMNS if name not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} (its header: {','.join(reader.fieldnames or [])!r}); "
                        f"expected the CREMA-D file with columns {', '.join(DEMOGRAPHICS_COLUMNS)}")
    return {
        row["ActorID"].strip(): {
            "age": int(row["Age"]) if row["Age"].strip().isdigit() else None,
            "sex": row["Sex"].strip(),
            "race": row["Race"].strip(),
            "ethnicity": row["Ethnicity"].strip(),
        }
        for row in reader
    }


def index(root: Path, config: BuildConfig, exclude: Iterable[Path] = ()) -> Iterator[ClipRecord]:
    """``exclude`` is accepted for the common contract: this layout has fixed folders, never walked."""
    folder = root / "VideoFlash"
    if not folder.is_dir():
        raise UserError(f"no VideoFlash/ folder under {root}: expected the CREMA-D repository layout (VideoFlash/*.flv)")
    demographics = read_demographics(root / "VideoDemographics.csv")
    found = 0
    for path in sorted(folder.glob("*.flv")):
        match = _NAME.match(path.stem)
        if not match:
            continue
        actor, sentence, emotion, level = match.groups()
        meta = {
            "actor": actor,
            "sentence_code": sentence,
            "transcript": SENTENCES.get(sentence),
            "emotion": EMOTIONS.get(emotion, emotion),
            "intensity": INTENSITIES.get(level, level),
            "demographics": demographics.get(actor),
        }
        record = ClipRecord(dataset="crema-d", speaker=actor, clip=path.stem, path=str(path),
                            relpath=str(path.relative_to(root)), meta=meta)
        if path.stem in KNOWN_BAD:
            record.skip, record.skip_message = "known_bad", KNOWN_BAD[path.stem]
        found += 1
        yield record
    if not found:
        raise UserError(f"no CREMA-D clips (AAAA_SSS_EEE_LL.flv) in {folder}")


def check_source(root: Path) -> None:
    """Stop with a clear message when ``VideoFlash/`` holds git-lfs pointer files instead of video.

    A clone made without git-lfs (or GitHub's zip download) has small text stubs in place of the
    media; the build would otherwise reject every clip as unreadable.
    """
    folder = root / "VideoFlash"
    if not folder.is_dir():
        return
    clips = sorted(folder.glob("*.flv"))
    pointers = [p for p in clips if is_lfs_pointer(p)]
    if pointers:
        raise UserError(
            f"{len(pointers)} of the {len(clips)} files in {folder} are git-lfs pointer files, not video "
            f"(e.g. {pointers[0].name}): run 'git lfs pull' in {root}, or let talkdata fetch the media: "
            "talkdata download crema-d (then build without --source)")
