"""TalkingHead-1KH download: the YouTube videos of the tube lists, cut into tubes (``talkdata download talkinghead-1kh``).

The way the official ``videos_download_and_crop.sh`` does it, but with audio:

1. yt-dlp, best mp4 video + best audio (:mod:`talkdata.acquire.youtube`) -> ``{split}/raw_videos/{id}.mp4``;
2. 1-minute chunks by stream copy (:func:`talkdata.acquire.tubes.split_chunks`) -> ``{split}/1min_clips/{id}_0000.mp4``;
3. every tube cut from its chunk, box rescaled from the reference resolution to the downloaded one
   (``t = int(T / H * h)`` ...), audio kept -> ``{split}/cropped_clips/{id}_{chunk}_S{S}_E{E}_L{L}_T{T}_R{R}_B{B}.mp4``.

What happened to every video and its tubes is recorded in the ledger ``{split}/talkdata_fetch/{id}.json``,
which :func:`talkdata.corpora.talkinghead1kh.index` reads.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av

from ...corpora.talkinghead1kh import LEDGER, SPLITS, Tube, find_tube_lists, read_ledger, read_tubes
from ...errors import UserError
from ...files import write_atomic
from ...progress import bar
from ..plan import mirror_login, mirror_url
from ..tubes import (TubeRangeError, box_in_region, chunk_name, crop_region, cut_tube, probe, rescale_box,
                     split_chunks)
from ..youtube import DEFAULT_FORMAT, DEFAULT_URL, fetch_video, require_yt_dlp

logger = logging.getLogger(__name__)


def write_ledger(split_dir: Path, ledger: dict, video_id: str) -> None:
    """Record one video and its tubes (atomically: temporary file, then rename)."""
    folder = split_dir / LEDGER
    folder.mkdir(parents=True, exist_ok=True)
    data = {"video": ledger["videos"][video_id],
            "tubes": {name: t for name, t in ledger["tubes"].items() if t.get("video_id") == video_id}}
    write_atomic(folder / f"{video_id}.json", json.dumps(data, indent=1, sort_keys=True).encode())


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
    if mirror_login(mirror):
        raise UserError("--mirror with a user name and password is not supported for YouTube downloads (yt-dlp)")
    if mirror:
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


def download(recipe, root: str | Path, only: list[str] | None = None, mirror: str | None = None, *,
             limit: int | None = None, retry_unavailable: bool = False) -> DownloadReport:
    """Fetch the tube lists' videos with yt-dlp (video + audio), cut the 1-minute chunks and the tubes.

    The hook of ``talkdata download talkinghead-1kh`` (see :mod:`talkdata.acquire.hooks`). ``recipe`` is
    the recipe (its ``[youtube]`` table: url template, yt-dlp format, chunk_seconds, tube_margin),
    ``root`` the folder holding ``data_list/``; ``only`` restricts to splits (train, val); ``mirror``
    replaces the URL template's host. ``limit`` fetches at most that many videos per split (list
    order). What happened to every video and tube goes to ``{split}/talkdata_fetch/{id}.json``; a
    second run does only what is missing (nothing for a video whose tubes are all cut, even when its
    raw video and chunks were deleted), and does not ask again for videos recorded as unavailable
    unless ``retry_unavailable``.
    """
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
        for video_id in bar(iterable=todo, desc=f"fetch {split}", unit="video"):
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
    logger.info(report.summary())
    return report
