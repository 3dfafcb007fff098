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

:func:`download` (the hook of ``talkdata download talkinghead-1kh``) fetches what the lists need, the
way the official ``videos_download_and_crop.sh`` does but with audio:

1. yt-dlp, best mp4 video + best audio (:mod:`talkdata.sources.youtube`) -> ``{split}/raw_videos/{id}.mp4``;
2. 1-minute chunks by stream copy (:func:`talkdata.sources.tubes.split_chunks`) -> ``{split}/1min_clips/{id}_0000.mp4``;
3. every tube cut from its chunk, box rescaled from the reference resolution to the downloaded one
   (``t = int(T / H * h)`` ...), audio kept -> ``{split}/cropped_clips/{id}_{chunk}_S{S}_E{E}_L{L}_T{T}_R{R}_B{B}.mp4``.

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
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import av

from ..errors import UserError
from .base import ClipRecord
from .tubes import (TubeRangeError, box_in_region, chunk_name, crop_region, cut_tube, probe, rescale_box,
                    split_chunks)
from .youtube import DEFAULT_FORMAT, DEFAULT_URL, fetch_video, require_yt_dlp

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
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        tube = parse_tube_line(line, str(path), lineno)
        if tube not in seen:
            seen.add(tube)
            tubes.append(tube)
    return tubes


def read_ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


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


# --------------------------------------------------------------------------- ledger


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


def write_ledger(split_dir: Path, ledger: dict, video_id: str) -> None:
    """Record one video and its tubes (atomically: temporary file, then rename)."""
    folder = split_dir / LEDGER
    folder.mkdir(parents=True, exist_ok=True)
    data = {"video": ledger["videos"][video_id],
            "tubes": {name: t for name, t in ledger["tubes"].items() if t.get("video_id") == video_id}}
    temp = folder / f".{video_id}.json.tmp"
    temp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temp, folder / f"{video_id}.json")


# --------------------------------------------------------------------------- download


@dataclass
class DownloadReport:
    videos: dict[str, int]  # status -> count
    tubes: dict[str, int]  # status -> count

    def summary(self) -> str:
        def counts(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"
        return f"videos: {counts(self.videos)}\ntubes: {counts(self.tubes)}"


def youtube_settings(recipe=None, mirror: str | None = None) -> dict:
    """URL template, format, chunk length and tube margin: defaults, then the recipe's ``[youtube]`` table.

    ``mirror`` (``talkdata download --mirror URL``) replaces the scheme and host of the URL template.
    """
    data = getattr(recipe, "data", recipe) or {}
    settings = {"url": DEFAULT_URL, "format": DEFAULT_FORMAT, "chunk_seconds": 60.0, "tube_margin": 0.0}
    settings.update(data.get("youtube", {}))
    if mirror:
        from .fetch import mirror_url

        settings["url"] = mirror_url(settings["url"], mirror).replace("%7Bid%7D", "{id}")
    if "{id}" not in settings["url"]:
        raise UserError(f"youtube url template {settings['url']!r} has no {{id}} placeholder")
    return settings


def _tube_done(split_dir: Path, tube: Tube, ledger: dict, settings: dict) -> bool:
    """Cut with the current margin (or found out of range): nothing left to do for this tube."""
    done = ledger["tubes"].get(tube.official_name)
    if not done or done.get("margin") != settings["tube_margin"]:
        return False
    if done["status"] == "tube_out_of_range":
        return True
    return done["status"] == "ok" and (split_dir / "cropped_clips" / f"{tube.official_name}.mp4").is_file()


def _cut_tubes(root: Path, split_dir: Path, video_id: str, tubes: list[Tube], ledger: dict, settings: dict) -> None:
    raw = split_dir / "raw_videos" / f"{video_id}.mp4"
    entry = ledger["videos"][video_id]
    info = probe(raw)
    entry.update(width=info.width, height=info.height, fps=round(info.fps, 6), has_audio=info.has_audio)
    chunk_dir = split_dir / "1min_clips"
    chunk_frames = entry.get("chunk_frames")
    if (not chunk_frames or entry.get("chunk_seconds") != settings["chunk_seconds"]
            or not all((chunk_dir / chunk_name(video_id, i)).is_file() for i in range(len(chunk_frames)))):
        chunks = split_chunks(raw, chunk_dir, video_id, float(settings["chunk_seconds"]))
        entry.update(chunk_frames=[c.frames for c in chunks], chunk_seconds=settings["chunk_seconds"])
        chunk_frames = entry["chunk_frames"]
    size = (info.width, info.height)
    for tube in tubes:
        out = split_dir / "cropped_clips" / f"{tube.official_name}.mp4"
        if _tube_done(split_dir, tube, ledger, settings):
            continue
        box = rescale_box(tube.box, (tube.ref_height, tube.ref_width), size)
        region = crop_region(box, size, float(settings["tube_margin"]))
        record = {"video_id": video_id, "margin": settings["tube_margin"], "box": box, "crop_box": region}
        try:
            if tube.chunk >= len(chunk_frames):
                raise TubeRangeError(f"chunk {tube.chunk:04d} does not exist: the download splits into "
                                     f"{len(chunk_frames)} chunks of {settings['chunk_seconds']:g} s")
            if tube.end >= chunk_frames[tube.chunk]:
                raise TubeRangeError(f"the tube needs frames {tube.start}..{tube.end} but chunk {tube.chunk:04d} has "
                                     f"{chunk_frames[tube.chunk]} frames")
            cut = cut_tube(chunk_dir / chunk_name(video_id, tube.chunk), out, tube.start, tube.end, region)
        except TubeRangeError as err:
            record.update(status="tube_out_of_range", message=str(err))
        except av.error.FFmpegError as err:
            record.update(status="decode_error", message=f"cutting {out.name}: {err}")
        else:
            record.update(status="ok", message="", file=str(out.relative_to(root)), frames=cut.frames,
                          fps=round(cut.fps, 6), has_audio=cut.has_audio, crop_size=[cut.width, cut.height],
                          face_box=box_in_region(box, region))
        ledger["tubes"][tube.official_name] = record


def download(recipe, root: str | Path, only: list[str] | None = None, mirror: str | None = None,
             progress: bool = True, *, limit: int | None = None, retry_unavailable: bool = False) -> DownloadReport:
    """Fetch the tube lists' videos with yt-dlp (video + audio), cut the 1-minute chunks and the tubes.

    The hook of ``talkdata download talkinghead-1kh`` (see :mod:`talkdata.sources.fetch`). ``recipe`` is
    the recipe (its ``[youtube]`` table: url template, yt-dlp format, chunk_seconds, tube_margin),
    ``root`` the folder holding ``data_list/``; ``only`` restricts to splits (train, val); ``mirror``
    replaces the URL template's host. ``limit`` fetches at most that many videos per split (list
    order). What happened to every video and tube goes to ``{split}/talkdata_fetch/{id}.json``; a
    second run does only what is missing (nothing for a video whose tubes are all cut, even when its
    raw video and chunks were deleted), and does not ask again for videos recorded as unavailable
    unless ``retry_unavailable``.
    """
    from tqdm import tqdm

    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"source folder not found: {root}")
    lists = find_tube_lists(root)
    if only is not None:
        unknown = sorted(set(only) - set(SPLITS))
        if unknown:
            raise UserError(f"talkinghead-1kh --only takes split names ({', '.join(SPLITS)}), not {', '.join(unknown)}")
    settings = youtube_settings(recipe, mirror)
    require_yt_dlp()
    videos: dict[str, int] = {}
    tube_counts: dict[str, int] = {}
    for split, list_path in sorted(lists.items()):
        if only is not None and split not in only:
            continue
        split_dir = root / split
        ledger = read_ledger(split_dir)
        by_video: dict[str, list[Tube]] = {}
        for tube in read_tubes(list_path):
            by_video.setdefault(tube.video_id, []).append(tube)
        todo = list(by_video)[:limit] if limit is not None else list(by_video)
        for video_id in tqdm(todo, desc=f"fetch {split}", unit="video", disable=not progress):
            entry = ledger["videos"].setdefault(video_id, {})
            if entry.get("status") == "unavailable" and not retry_unavailable:
                videos["unavailable"] = videos.get("unavailable", 0) + 1
                continue
            tubes_done = all(_tube_done(split_dir, t, ledger, settings) for t in by_video[video_id])
            if entry.get("status") == "ok" and tubes_done:
                videos["ok"] = videos.get("ok", 0) + 1  # every tube is cut: the raw video and chunks may be gone
                continue
            raw = split_dir / "raw_videos" / f"{video_id}.mp4"
            fetched = fetch_video(video_id, raw, settings["url"], settings["format"])
            entry.update(status=fetched.status, message=fetched.message)
            if fetched.formats:
                entry["formats"] = fetched.formats
            if fetched.status == "ok":
                try:
                    _cut_tubes(root, split_dir, video_id, by_video[video_id], ledger, settings)
                except (av.error.FFmpegError, ValueError) as err:
                    entry.update(status="fetch_failed", message=f"cannot read the download {raw.name}: {err}")
                    raw.unlink(missing_ok=True)
            videos[entry["status"]] = videos.get(entry["status"], 0) + 1
            write_ledger(split_dir, ledger, video_id)
        for video_id in todo:
            for tube in by_video[video_id]:
                cut = ledger["tubes"].get(tube.official_name, {})
                status = cut.get("status") or ledger["videos"][video_id]["status"]
                tube_counts[status] = tube_counts.get(status, 0) + 1
    report = DownloadReport(videos, tube_counts)
    if progress:
        tqdm.write(report.summary(), file=sys.stderr)
    return report


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


def index(root: Path, config: dict) -> list[ClipRecord]:
    lists = find_tube_lists(root)
    records = []
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
            records.append(record)
    if not fetched_any:
        raise UserError(f"no TalkingHead-1KH video has been fetched into {root} yet: run talkdata download "
                        "talkinghead-1kh first (or talkdata build talkinghead-1kh without --source)")
    return records
