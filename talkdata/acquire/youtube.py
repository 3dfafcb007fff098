"""Fetching YouTube videos with yt-dlp (optional: ``pip install 'talkdata[youtube]'``).

One call fetches one video id into one mp4 holding the best video and the best audio that the
format selection picks (TalkingHead-1KH's official downloader took a video-only stream, so its clips
have no audio). yt-dlp extracts the formats and downloads each selected one with its own
downloaders; the separate video and audio files are then muxed into one mp4 with PyAV by stream
copy, so no ffmpeg binary is needed. Partial downloads live in ``.partial-{id}/`` next to the
target and resume on the next call.

Failures are classified: ``unavailable`` when the video is gone for good (HTTP 404/410, removed,
private, terminated account, geo-blocked), ``fetch_failed`` for everything else (network errors,
rate limits, bot checks), which a later run tries again.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av

from ..errors import UserError

DEFAULT_URL = "https://www.youtube.com/watch?v={id}"
#: best mp4 video + best audio (m4a first, so that the audio is AAC); single-file formats as fallbacks
DEFAULT_FORMAT = "bestvideo[ext=mp4]+bestaudio[ext=m4a]/bestvideo[ext=mp4]+bestaudio/best[ext=mp4]/best"

#: messages YouTube gives for videos that are gone for good
_GONE = re.compile(
    r"video unavailable|this video is unavailable|private video|video has been removed|no longer available"
    r"|account associated with this video has been terminated|not available (from|in) your (location|country)",
    re.IGNORECASE,
)
#: messages of failures that another run (later, or with cookies) can get past
_TRANSIENT = re.compile(r"not a bot|rate-limit|try again later|captcha|confirm your age", re.IGNORECASE)

logger = logging.getLogger(__name__)


def require_yt_dlp():
    try:
        import yt_dlp
    except ImportError:
        raise UserError("yt-dlp is not installed: pip install 'talkdata[youtube]' "
                        "(TalkingHead-1KH videos are fetched from YouTube with it)") from None
    return yt_dlp


@dataclass
class VideoFetch:
    video_id: str
    status: str  # ok | unavailable | fetch_failed
    message: str = ""
    formats: list[str] = field(default_factory=list)


class _YtDlpLog:
    """yt-dlp's messages as debug messages (``--verbose``): its failures reach the user classified, in the
    ledger and the summary, not as yt-dlp's own lines."""

    def debug(self, message: str) -> None:
        logger.debug(f"yt-dlp: {message}")

    info = warning = error = debug


def video_url(template: str, video_id: str) -> str:
    return template.replace("{id}", video_id)


def _causes(error: BaseException):
    seen = set()
    todo = [error]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        exc_info = getattr(item, "exc_info", None)
        todo += [getattr(item, "cause", None), item.__cause__, item.__context__,
                 exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None]


def classify(error: BaseException) -> str:
    """``unavailable`` (gone for good) or ``fetch_failed`` (may work later)."""
    causes = list(_causes(error))
    for cause in causes:
        if getattr(cause, "status", None) in (404, 410) or type(cause).__name__ == "GeoRestrictedError":
            return "unavailable"
    text = " ".join(str(c) for c in causes)
    if _TRANSIENT.search(text):
        return "fetch_failed"
    return "unavailable" if _GONE.search(text) else "fetch_failed"


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[7:] if text.startswith("ERROR: ") else text)[:300]


def merge_streams(files: list[Path], target: Path) -> None:
    """Mux the first video stream and the first audio stream found in ``files`` into ``target`` (mp4).

    Stream copy, packets interleaved by time; written under a temporary name and renamed.
    """
    temp = target.parent / f".{target.name}.tmp.mp4"
    inputs = [av.open(str(p)) for p in files]
    try:
        video_in = next((c for c in inputs if c.streams.video), None)
        if video_in is None:
            raise ValueError("the download has no video stream")
        # the audio of a separate audio download wins over audio muxed into the video file
        audio_in = next((c for c in inputs if c.streams.audio and c is not video_in), None) or (
            video_in if video_in.streams.audio else None)
        chosen: dict[int, list] = {}
        for container, stream in [(video_in, video_in.streams.video[0])] + (
                [(audio_in, audio_in.streams.audio[0])] if audio_in is not None else []):
            chosen.setdefault(inputs.index(container), []).append(stream)
        with av.open(str(temp), "w", format="mp4") as output:
            mapped = {(i, s.index): output.add_stream_from_template(s)
                      for i, streams in chosen.items() for s in streams}

            def packets(i: int, streams: list):
                for packet in inputs[i].demux(streams):
                    if packet.dts is None and packet.pts is None:
                        continue
                    ts = packet.dts if packet.dts is not None else packet.pts
                    yield float(ts * packet.stream.time_base), i, packet

            for _, i, packet in heapq.merge(*(packets(i, s) for i, s in chosen.items()), key=lambda item: item[:2]):
                packet.stream = mapped[(i, packet.stream.index)]
                output.mux(packet)
        os.replace(temp, target)
    finally:
        for container in inputs:
            container.close()
        temp.unlink(missing_ok=True)


def fetch_video(video_id: str, target: Path, url_template: str = DEFAULT_URL, format_spec: str = DEFAULT_FORMAT,
                retries: int = 3, socket_timeout: float = 30.0) -> VideoFetch:
    """Download ``video_id`` into ``target`` (an mp4 with video and, when there is one, audio)."""
    yt_dlp = require_yt_dlp()
    target = Path(target)
    if target.is_file():
        return VideoFetch(video_id, "ok")  # already downloaded
    work = target.parent / f".partial-{video_id}"
    work.mkdir(parents=True, exist_ok=True)
    params = {
        "format": format_spec, "quiet": True, "no_warnings": True, "noprogress": True, "logger": _YtDlpLog(),
        "noplaylist": True, "retries": retries, "fragment_retries": retries, "socket_timeout": socket_timeout,
        "continuedl": True, "cachedir": False,
    }
    files: list[Path] = []
    chosen: list[str] = []
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(video_url(url_template, video_id), download=False)
            for fmt in info.get("requested_formats") or [info]:
                part = dict(info)
                part.pop("requested_formats", None)
                part.update(fmt)
                format_id = re.sub(r"[^A-Za-z0-9_-]", "_", str(fmt.get("format_id") or "0"))
                name = work / f"{video_id}.f{format_id}.{fmt.get('ext') or 'mp4'}"
                ok, _ = ydl.dl(str(name), part)
                if not ok or not name.is_file():
                    raise yt_dlp.utils.DownloadError(f"format {format_id} did not download completely")
                files.append(name)
                chosen.append(str(fmt.get("format_id")))
    except (yt_dlp.utils.YoutubeDLError, OSError) as err:
        if not any(work.iterdir()):
            work.rmdir()
        return VideoFetch(video_id, classify(err), one_line(err))
    try:
        merge_streams(files, target)
    except (av.error.FFmpegError, ValueError) as err:
        return VideoFetch(video_id, "fetch_failed", f"cannot mux the downloaded streams: {err}", chosen)
    shutil.rmtree(work, ignore_errors=True)
    return VideoFetch(video_id, "ok", "", chosen)
