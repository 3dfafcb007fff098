"""TalkingHead-1KH (NVIDIA; the face-vid2vid benchmark, Wang, Mallya & Liu, CVPR 2021).

About 1,000 hours of talking-head videos published on YouTube under CC BY 3.0 (the lists and
scripts are MIT): https://github.com/tcwang0509/TalkingHead-1KH. The corpus is a set of lists in
``data_list.zip``: ``{train,val,small}_video_ids.txt`` (YouTube ids) and ``{train,val,small}_video_tubes.txt``,
one head tube per line::

    --Y9imYnfBw_0000, 720, 1280, 0, 271, 504, 63, 792, 351
    VIDEOID_CHUNK,    H,   W,    S, E,   L,   T,  R,   B

``VIDEOID_CHUNK`` names the 1-minute chunk (``ffmpeg -c copy -segment_time 00:01:00 -f segment``) of
the video, ``S..E`` its frames (E inclusive), ``L, T, R, B`` the box in pixels of the reference
resolution ``H x W`` (720 x 1280 for train, 1080 x 1920 for val). train has 2,872 YouTube ids, val 28
ids / 38 tubes, small (the official unit test) 2 ids / 4 tubes. The official split is the list:
train and val (``small`` is not indexed).

``talkdata download talkinghead-1kh`` (:mod:`talkdata.acquire.hooks.talkinghead1kh`) fetches what
the lists need (yt-dlp, 1-minute chunks, tubes cut with audio) into ``{split}/raw_videos/``,
``{split}/1min_clips/`` and ``{split}/cropped_clips/{id}_{chunk}_S{S}_E{E}_L{L}_T{T}_R{R}_B{B}.mp4``.

What happened to every video and its tubes is recorded in ``{split}/talkdata_fetch/{id}.json``;
:func:`index` turns it into clip records: a video YouTube no longer has (``unavailable``), a failed fetch
(``fetch_failed``, tried again by the next download) and a tube whose frames do not exist in its chunk
(``tube_out_of_range``) become rejects of the build, with the message. In a split partly downloaded,
the tubes not fetched yet are ``missing_source`` rejects; a split never downloaded is left out.
Caveat (reference): the frame indices refer to the chunks the authors cut from their downloads; cut
points follow key frames, so a re-download in another format can shift them. The chunk and frame
counts are checked, not the content.

Keys: ``{youtube id}/{chunk}_S{S}_E{E}_L{L}_T{T}_R{R}_B{B}``; the corpus labels no identities, so
the YouTube video is the ``speaker``.

Face-box hint: the cut clip is the rescaled tube box grown by ``tube_margin`` per side (0 = the
official crop) and clipped to the frame; ``meta["face_box"]`` is the rescaled box in that clip's frame
(``[0, 0, 1, 1]`` with no margin, up to the even-size trim).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..config import BuildConfig
from ..errors import UserError
from .records import ClipRecord
from .text import read_text

SPLITS = ("train", "val")
LEDGER = "talkdata_fetch"  # {split}/talkdata_fetch/{video id}.json
HOMEPAGE = "https://github.com/tcwang0509/TalkingHead-1KH"

_NAME = re.compile(r"^([A-Za-z0-9_-]+)_(\d{4})$")


@dataclass(frozen=True)
class Tube:
    video_id: str
    chunk: int
    ref_height: int
    ref_width: int
    start: int  # first frame in the chunk
    end: int  # last frame in the chunk (inclusive)
    left: int
    top: int
    right: int
    bottom: int

    @property
    def chunk_stem(self) -> str:
        return f"{self.video_id}_{self.chunk:04d}"

    @property
    def clip(self) -> str:
        """The clip part of the key: the official output name without the video id."""
        return f"{self.chunk:04d}_S{self.start}_E{self.end}_L{self.left}_T{self.top}_R{self.right}_B{self.bottom}"

    @property
    def official_name(self) -> str:
        """``videos_crop.py``'s output name (without ``.mp4``)."""
        return f"{self.video_id}_{self.clip}"

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom


def parse_tube_line(line: str, origin: str = "tube list", lineno: int = 0) -> Tube:
    """One line ``VIDEOID_CHUNK, H, W, S, E, L, T, R, B``; a ``UserError`` naming ``origin:lineno`` otherwise."""
    where = f"{origin}:{lineno}" if lineno else origin
    parts = [p.strip() for p in line.split(",")]
    expected = "expected 'VIDEOID_CHUNK, H, W, S, E, L, T, R, B'"
    if len(parts) != 9:
        raise UserError(f"{where}: {len(parts)} fields in {line.strip()!r}, {expected}")
    match = _NAME.match(parts[0])
    if not match:
        raise UserError(f"{where}: {parts[0]!r} is not VIDEOID_CHUNK (a YouTube id, '_' and 4 digits); {expected}")
    try:
        ref_h, ref_w, start, end, left, top, right, bottom = (int(p) for p in parts[1:])
    except ValueError:
        raise UserError(f"{where}: non-integer field in {line.strip()!r}, {expected}") from None
    if ref_h <= 0 or ref_w <= 0 or start < 0 or end < start or right <= left or bottom <= top:
        raise UserError(f"{where}: inconsistent tube {line.strip()!r} (needs H, W > 0, 0 <= S <= E, L < R, T < B)")
    return Tube(match.group(1), int(match.group(2)), ref_h, ref_w, start, end, left, top, right, bottom)


def read_tubes(path: Path) -> list[Tube]:
    """Every tube of a list, in file order; exact duplicate lines are kept once."""
    tubes, seen = [], set()
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        tube = parse_tube_line(line, str(path), lineno)
        if tube not in seen:
            seen.add(tube)
            tubes.append(tube)
    return tubes


def read_ids(path: Path) -> list[str]:
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def find_tube_lists(root: Path) -> dict[str, Path]:
    """``{split}_video_tubes.txt`` of train and val, in ``root/data_list/`` or ``root/``."""
    found = {}
    for split in SPLITS:
        for folder in (root / "data_list", root):
            path = folder / f"{split}_video_tubes.txt"
            if path.is_file():
                found[split] = path
                break
    if not found:
        raise UserError(f"no TalkingHead-1KH tube lists in {root}: expected data_list/train_video_tubes.txt and/or "
                        f"data_list/val_video_tubes.txt (unzip data_list.zip of {HOMEPAGE} into that folder)")
    return found


# --------------------------------------------------------------------------- ledger (written by the download hook)


def read_ledger(split_dir: Path) -> dict:
    """What the downloads of a split recorded: ``{"videos": {id: entry}, "tubes": {official name: entry}}``.

    One file per video, ``{split}/talkdata_fetch/{id}.json`` (so that recording one video never rewrites
    the records of the thousands of others).
    """
    ledger: dict = {"videos": {}, "tubes": {}}
    folder = split_dir / LEDGER
    if not folder.is_dir():
        return ledger
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path} is not valid JSON: delete it and download again") from None
        ledger["videos"][path.stem] = data.get("video", {})
        ledger["tubes"].update(data.get("tubes", {}))
    return ledger


# --------------------------------------------------------------------------- index


def tube_meta(tube: Tube, video: dict, cut: dict) -> dict:
    """The sample metadata of one tube (see ``schemas/sample.schema.json``)."""
    return {
        "youtube_id": tube.video_id,
        "chunk_index": tube.chunk,
        "tube_start_frame": tube.start,
        "tube_end_frame": tube.end,
        "tube_box": list(tube.box),
        "reference_size": [tube.ref_width, tube.ref_height],
        "youtube_size": [video["width"], video["height"]] if "width" in video else None,
        "youtube_fps": video.get("fps"),
        "crop_box": cut.get("crop_box"),
        "tube_size": cut.get("crop_size"),
        "tube_margin": cut.get("margin"),
        "has_audio": cut.get("has_audio"),
        "face_box": cut.get("face_box"),
    }


def index(root: Path, config: BuildConfig, exclude: Iterable[Path] = ()) -> Iterator[ClipRecord]:
    """``exclude`` is accepted for the common contract: this layout has fixed folders, never walked."""
    lists = find_tube_lists(root)
    fetched_any = False
    for split, list_path in sorted(lists.items()):
        ledger = read_ledger(root / split)
        if not ledger["videos"]:
            continue  # a split never downloaded (talkdata download --only) is not part of the build
        fetched_any = True
        for tube in read_tubes(list_path):
            video = ledger["videos"].get(tube.video_id, {})
            cut = ledger["tubes"].get(tube.official_name, {})
            path = root / split / "cropped_clips" / f"{tube.official_name}.mp4"
            record = ClipRecord(dataset="talkinghead-1kh", speaker=tube.video_id, clip=tube.clip, path=str(path),
                                relpath=str(path.relative_to(root)), split=split, meta=tube_meta(tube, video, cut))
            if cut.get("status") == "ok" and path.is_file():
                pass
            elif video.get("status") in ("unavailable", "fetch_failed"):
                record.skip = video["status"]
                record.skip_message = f"YouTube video {tube.video_id}: {video.get('message', '')}"
            elif cut.get("status") and cut["status"] != "ok":
                record.skip, record.skip_message = cut["status"], cut.get("message", "")
            else:
                record.skip = "missing_source"
                record.skip_message = "not downloaded yet: run talkdata download talkinghead-1kh"
            yield record
    if not fetched_any:
        raise UserError(f"no TalkingHead-1KH video has been fetched into {root} yet: run talkdata download "
                        "talkinghead-1kh first (or talkdata build talkinghead-1kh without --source)")
