"""VoxCeleb2 (VGG, University of Oxford): celebrity interview clips cut from YouTube.

6,112 speakers, 1,128,246 clips from 150,480 YouTube videos, about 2,442 h. Every clip is a
224 x 224 face-track crop at 25 fps (H.264) with 16 kHz mono AAC audio, at least 3 s long. The
official split is speaker-disjoint: ``dev`` (5,994 speakers) and ``test`` (118 speakers with
data), given by the ``Set`` column of ``vox2_meta.csv``. Access: request a key at
https://cn01.mmai.io/keyreq/voxceleb (KAIST mirror https://mm.kaist.ac.kr/datasets/voxceleb/);
``vox2_meta.csv`` is at https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/vox2_meta.csv and the
per-clip face-track txt files in ``vox2_dev_txt.zip`` / ``vox2_test_txt.zip``. License: CC BY 4.0 for
the metadata; the videos stay their owners' copyright.

Layout (archive roots differ, so clips are found by their last three path parts)::

    dev/mp4/id00012/21Uxsk56VDQ/00001.mp4     speaker / YouTube id / clip index
    mp4/id00017/01dfn2spqyE/00001.mp4         (vox2_test_mp4.zip)
    txt/id00012/21Uxsk56VDQ/00001.txt         face track of the clip
    vox2_meta.csv                             VoxCeleb2 ID, VGGFace2 ID, Gender, Set

Per-clip txt: a header (``Identity``, ``Reference`` = YouTube id, ``Offset`` = SyncNet audio-video
offset in frames, ``FV Conf`` = face-verification confidence, ``ASD Conf`` = active-speaker
confidence), a blank line, then ``FRAME X Y W H`` rows: the frame index in the original YouTube
video at 25 fps and the face box as fractions of the original video's width and height.

Errata handled here: ``vox2_meta.csv`` starts with a UTF-8 BOM and every value has a trailing
space (``id00012 ,n000012 ,m ,dev ``); txt fields are tab separated with padding spaces and a
trailing `` : `` after the names.

Face-box hint (``meta["face_box"]``, fractions of the clip's own 224 x 224 frame): the txt boxes are
in the original YouTube frame, and the mp4 is already the crop that follows that track, so in the
clip's frame the face sits at the same place in every clip. How much margin the VoxCeleb2 pipeline
put around the track box before cropping is not documented (the reference gives no crop rule), so
the box cannot be computed from the txt; it was measured instead: dlib's HOG detector
(``face.detector="hog"`` as it was then: the whole frame with 25 % padding) run on every frame of the two real
VoxCeleb2-style clips of ``tests/data/voxceleb2_like`` (00002.mp4: face found in 94 of 126 frames,
median box 0.103, 0.094, 0.719, 0.656; 00473.mp4: 158 of 158, median 0.228, 0.103, 0.781, 0.656).
:data:`FACE_BOX` is the mean of the two medians, in the HOG detector's box convention, the
same for every clip.

Scale: the index holds only what processing needs. The per-frame txt boxes (original-frame
fractions, about 200 rows per clip: 8 KB per record, 16.7 KB of json per sample) are not the hint and
are not copied into the records, index rows or sample json; the sample's ``txt`` field names the file,
and :func:`parse_txt` reads its boxes. The index reads only each txt's header and its first and last
rows (:func:`txt_summary`).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from ..config import BuildConfig
from ..errors import UserError
from .records import ClipRecord
from .text import read_text
from .walk import walk

META_FILE = "vox2_meta.csv"
META_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/vox2_meta.csv"
TXT_FPS = 25  # FRAME indices of the txt files count frames of the original YouTube video at 25 fps

#: face box (x0, y0, x1, y1) as fractions of the 224 x 224 clip frame; measured, see the module docstring
FACE_BOX = [0.165, 0.098, 0.75, 0.656]

#: official Set column -> talkdata split (VoxCeleb2 has no validation set)
SPLIT_OF_SET = {"dev": "train", "test": "test"}

READERS = 8  # threads reading txt files while the index parses
READ_BATCH = 512  # txt files in flight at most (bounded memory: a constant reached at a few hundred clips)

_SPEAKER = re.compile(r"^id\d{5}$")
_CLIP = re.compile(r"^\d{5}$")


def read_meta(path: Path) -> dict[str, dict]:
    """``vox2_meta.csv`` by speaker id: VGGFace2 id, gender (``m``/``f``) and official set (``dev``/``test``).

    Handles the BOM and the trailing spaces of every header and value.
    """
    rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    if not rows:
        raise UserError(f"{path} is empty: expected the header 'VoxCeleb2 ID,VGGFace2 ID,Gender,Set'")
    header = [name.strip() for name in rows[0]]
    try:
        columns = [header.index(name) for name in ("VoxCeleb2 ID", "VGGFace2 ID", "Gender", "Set")]
    except ValueError:
        raise UserError(f"{path}: header is {','.join(header)!r}, "
                        "expected 'VoxCeleb2 ID,VGGFace2 ID,Gender,Set'") from None
    meta = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise UserError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        speaker, vggface2, gender, official_set = (row[i].strip() for i in columns)
        meta[speaker] = {"vggface2_id": vggface2, "gender": gender, "set": official_set}
    return meta


def _number(text: str) -> float | int | None:
    match = re.match(r"^[-+]?\d+(\.\d+)?", text.strip())
    if not match:
        return None
    return float(match.group(0)) if match.group(1) else int(match.group(0))


def parse_txt(path: Path) -> dict:
    """One face-track txt: header values and the per-frame boxes.

    Returns ``identity``, ``reference`` (YouTube id), ``offset`` (int, frames), ``fv_conf``,
    ``asd_conf`` (floats; None when absent) and ``boxes``: ``[frame, x, y, w, h]`` rows with the frame
    index in the original video at 25 fps and the box as fractions of its width and height.
    """
    header: dict[str, str] = {}
    boxes: list[list] = []
    in_table = False
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        if not in_table:
            if line.upper().startswith("FRAME"):
                in_table = True
                continue
            name, sep, value = line.partition(":")
            if sep:
                header[name.strip().lower()] = value.strip()
            continue
        cells = line.split()
        if len(cells) < 5:
            continue
        try:
            boxes.append([int(cells[0]), *(float(c) for c in cells[1:5])])
        except ValueError:
            continue
    return {**_header_values(header), "boxes": boxes}


def _header_values(header: dict[str, str]) -> dict:
    """The typed header fields of a face-track txt (None where absent or not a number)."""
    offset = _number(header.get("offset", ""))
    return {
        "identity": header.get("identity") or None,
        "reference": header.get("reference") or None,
        "offset": int(offset) if offset is not None else None,
        "fv_conf": float(v) if (v := _number(header.get("fv conf", ""))) is not None else None,
        "asd_conf": float(v) if (v := _number(header.get("asd conf", ""))) is not None else None,
    }


def _row_frame(line: bytes) -> int | None:
    """The FRAME of one table row when it is a whole row (5 numeric cells) as :func:`parse_txt` reads it."""
    cells = line.split()
    if len(cells) < 5:
        return None
    try:
        frame = int(cells[0])
        for cell in cells[1:5]:
            float(cell)
    except ValueError:
        return None
    return frame


def txt_summary(path: Path) -> dict:
    """What the index keeps of one face-track txt: :func:`parse_txt`'s header values and the first and
    last FRAME (``start_frame``, ``end_frame``; None without rows), without parsing every row."""
    lines = path.read_bytes().splitlines()
    header: dict[str, str] = {}
    table = len(lines)
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.upper().startswith(b"FRAME"):
            table = i + 1
            break
        name, sep, value = line.decode("utf-8", errors="replace").partition(":")
        if sep:
            header[name.strip().lower()] = value.strip()
    rows = lines[table:]
    start = next((f for f in (_row_frame(r) for r in rows) if f is not None), None)
    end = next((f for f in (_row_frame(r) for r in reversed(rows)) if f is not None), None)
    return {**_header_values(header), "start_frame": start, "end_frame": end}


def find_meta(root: Path) -> Path:
    """``vox2_meta.csv`` in the source folder or one of its direct subfolders."""
    candidates = [root / META_FILE] + sorted(p / META_FILE for p in root.iterdir() if p.is_dir())
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"{META_FILE} not found in {root} (or a folder directly under it): it holds VoxCeleb2's gender "
                    f"and official dev/test split; download it from {META_URL} into the source folder")


def _walk(root: Path, exclude: Iterable[Path] = ()) -> tuple[dict[tuple[str, str], list[tuple[str, str, str]]], int]:
    """The folders holding clips or txt files, by (speaker, YouTube id) (found by their last three path parts),
    and the number of clips.

    Per folder, in walk order: its path, its clip file names and its txt file names, each joined by
    newlines (a few bytes per clip, no path object per file). Two copies of one clip stop the walk
    with one line naming both.
    """
    folders: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    clips = 0
    for here, files in walk(root, exclude, skip_hidden=True):
        if not _SPEAKER.match(here.parent.name):
            continue
        mp4s, txts = [], []
        for name in files:
            stem, ext = os.path.splitext(name)
            if not _CLIP.match(stem) or name.startswith("._"):
                continue
            if ext.lower() == ".mp4":
                mp4s.append(name)
            elif ext.lower() == ".txt":
                txts.append(name)
        if not mp4s and not txts:
            continue
        earlier = folders.setdefault((here.parent.name, here.name), [])
        if mp4s:
            _refuse_copies(root, here, mp4s, earlier)
        clips += len(mp4s)
        earlier.append((str(here), "\n".join(mp4s), "\n".join(txts)))
    return folders, clips


def _names(joined: str) -> list[str]:
    return joined.split("\n") if joined else []


def _refuse_copies(root: Path, here: Path, mp4s: list[str], earlier: list[tuple[str, str, str]]) -> None:
    """One line when a clip of ``here`` (speaker / YouTube id / clip index) is also in an earlier folder."""
    seen = {os.path.splitext(name)[0]: Path(folder) / name for folder, joined, _ in earlier for name in _names(joined)}
    for name in mp4s:
        stem = os.path.splitext(name)[0]
        if stem in seen:
            ident = (here.parent.name, here.name, stem)
            raise UserError(f"two copies of the VoxCeleb2 clip {'/'.join(ident)}: "
                            f"{seen[stem].relative_to(root)} and {(here / name).relative_to(root)}")
        seen[stem] = here / name  # two names of one clip in one folder (00001.mp4, 00001.MP4)


def _clips(folders: dict[tuple[str, str], list[tuple[str, str, str]]]) -> Iterator[tuple[tuple[str, str, str], Path,
                                                                                          Path | None]]:
    """``((speaker, YouTube id, clip index), clip path, txt path or None)`` in that order; the txt of a clip is
    the first one the walk found."""
    for (speaker, youtube_id), held in sorted(folders.items()):
        videos: dict[str, Path] = {}
        texts: dict[str, Path] = {}
        for folder, mp4s, txts in held:
            for name in _names(mp4s):
                videos[os.path.splitext(name)[0]] = Path(folder) / name
            for name in _names(txts):
                texts.setdefault(os.path.splitext(name)[0], Path(folder) / name)
        for clip in sorted(videos):
            yield (speaker, youtube_id, clip), videos[clip], texts.get(clip)


def clip_meta(speaker: str, youtube_id: str, clip: str, meta_row: dict | None, txt: dict | None,
              txt_relpath: str | None) -> dict:
    """The sample metadata of one clip (see ``schemas/sample.schema.json``); ``txt`` is a :func:`txt_summary`."""
    return {
        "youtube_id": youtube_id,
        "clip_index": int(clip),
        "gender": meta_row["gender"] if meta_row else None,
        "vggface2_id": meta_row["vggface2_id"] if meta_row else None,
        "vox2_set": meta_row["set"] if meta_row else None,
        "txt": txt_relpath,
        "av_offset": txt["offset"] if txt else None,
        "fv_conf": txt["fv_conf"] if txt else None,
        "asd_conf": txt["asd_conf"] if txt else None,
        "youtube_start_frame": txt["start_frame"] if txt else None,
        "youtube_end_frame": txt["end_frame"] if txt else None,
        "track_fps": TXT_FPS,
        "face_box": list(FACE_BOX),
    }


def _with_summaries(clips: Iterable[tuple]) -> Iterator[tuple]:
    """``(ident, clip path, txt path, txt summary)`` in clip order; the txt files are read by :data:`READERS`
    threads (the reads wait on the disk without the GIL: a cold cache or a network file system), a batch at a time."""
    clips = iter(clips)
    with ThreadPoolExecutor(READERS) as pool:
        while batch := list(itertools.islice(clips, READ_BATCH)):
            summaries = pool.map(lambda p: txt_summary(p) if p is not None else None, [txt for _, _, txt in batch])
            for (ident, path, txt_path), summary in zip(batch, summaries):
                yield ident, path, txt_path, summary


def index(root: Path, config: BuildConfig, exclude: Iterable[Path] = ()) -> Iterator[ClipRecord]:
    """The clips' records in (speaker, YouTube id, clip index) order, one at a time (the walk keeps the folders,
    not the files)."""
    meta = read_meta(find_meta(root))
    folders, clips = _walk(root, exclude)
    if not clips:
        raise UserError(f"no VoxCeleb2 clips under {root}: expected idNNNNN/YOUTUBEID/NNNNN.mp4 "
                        "(e.g. dev/mp4/id00012/21Uxsk56VDQ/00001.mp4 from the extracted archives)")
    for (speaker, youtube_id, clip), path, txt_path, txt in _with_summaries(_clips(folders)):
        row = meta.get(speaker)
        record = ClipRecord(
            dataset="voxceleb2", speaker=speaker, clip=f"{youtube_id}_{clip}", path=str(path),
            relpath=str(path.relative_to(root)),
            meta=clip_meta(speaker, youtube_id, clip, row, txt, str(txt_path.relative_to(root)) if txt_path else None),
        )
        # speakers missing from vox2_meta.csv keep no split and get the configured default protocol
        record.split = SPLIT_OF_SET.get(row["set"], "") if row else ""
        yield record
