"""Decode video frames at a constant output frame rate and audio aligned to frame 0 (PyAV).

Frame selection is by presentation timestamp, never by counting frames: output frame ``t`` is the
source frame on screen at ``t / fps`` seconds after the first video frame (the last source frame
whose timestamp is <= that time). A 29.97 fps source therefore comes out at 25 fps without drift,
a variable-frame-rate source comes out at a constant rate, and frames with timestamps going
backwards (corrupt streams) are dropped and counted instead of being duplicated silently. The clip
lasts until the last source frame's display time ends, so ``T = ceil(duration * fps)``.

Audio is decoded and resampled to ``sample_rate``, then mixed to mono by averaging the channels;
sample 0 is the instant of the first
video frame (streams often start at different times: CREMA-D's video starts 27 ms after its audio).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

from ..errors import ClipError

#: timestamps closer than this (seconds) count as equal when choosing frames
TIME_EPSILON = 1e-4

#: the largest frame decoded, in pixels: 8K UHD (7680 x 4320). A 16000 x 16000 MJPEG took a 2 GB
#: peak to decode two frames; larger clips are rejected as ``too_large`` before any frame is decoded
MAX_PIXELS = 7680 * 4320


def av_message(err: BaseException) -> str:
    """The decoder's reason without the file's path (rejects are versioned: no absolute paths)."""
    return getattr(err, "strerror", None) or type(err).__name__


@contextmanager
def open_media(path: str | Path):
    """Open a media file, turning every way that can fail into a ``ClipError``."""
    path = Path(path)
    if not path.is_file():
        raise ClipError("missing_source", f"file not found: {path}", stage="decode")
    if path.stat().st_size == 0:
        raise ClipError("unreadable", f"empty file (0 bytes): {path.name}", stage="decode")
    try:
        # an absolute path: ffmpeg reads a relative "cam:1/clip.mp4" as the protocol "cam"
        container = av.open(str(path.absolute()), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise ClipError("unreadable", f"cannot open {path.name} as media: {av_message(err)}", stage="decode") from None
    try:
        yield container
    finally:
        container.close()


@dataclass
class VideoStats:
    """What the decoder saw, filled in while frames are produced."""

    width: int = 0
    height: int = 0
    rotation: int = 0
    start_time: float = 0.0  # seconds, timestamp of the first video frame
    source_fps: float = 0.0
    source_frames: int = 0
    dropped_frames: int = 0  # timestamps not increasing
    duration: float = 0.0  # seconds from the first frame to the end of the last one
    output_frames: int = 0
    frame_times: list = field(default_factory=list, repr=False)


def _nominal_frame_duration(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return 1.0 / float(rate) if rate else 0.04


def _rotation(frame) -> int:
    """The display matrix's rotation in degrees, 0-359, counter-clockwise as ffmpeg and PyAV give it
    (270: the picture is shown turned 90 degrees clockwise; phone videos). Recorded as ``rotation``."""
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(angle)) % 360


#: called for every decoded video and audio frame; the isolated worker process sets it to send
#: heartbeats to its supervisor (see ``talkdata.pipeline.isolation``)
progress_hook: Callable[[], None] | None = None


def report_progress() -> None:
    if progress_hook is not None:
        progress_hook()


_FROM_I420 = {"rgb24": cv2.COLOR_YUV2RGB_I420, "bgr24": cv2.COLOR_YUV2BGR_I420}


def _to_array(frame, fmt: str, rotation: int) -> np.ndarray:
    if fmt in _FROM_I420 and frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        # OpenCV's I420 conversion (BT.601, limited range, as swscale's default) is ~10x faster than
        # PyAV's per-frame swscale call, which dominated decoding at these frame sizes
        image = cv2.cvtColor(frame.to_ndarray(), _FROM_I420[fmt])
    else:
        image = frame.to_ndarray(format=fmt)
    # PyAV reports the display matrix angle counter-clockwise; undo it to get the upright picture
    turns = (rotation // 90) % 4
    if turns:
        image = np.rot90(image, k=turns)
    # PyAV returns views with padded rows; dlib misreads strided arrays, so always copy to contiguous
    return np.ascontiguousarray(image)


class Picture:
    """One decoded frame kept in its decoded form: the yuv420p planes (converted to RGB whole or only
    by region, on demand), or RGB pixels for sources that are not yuv420p with even sides or that
    are rotated. ``rgb_region`` of a yuv420p picture equals the same slice of ``rgb()`` exactly:
    OpenCV's I420 conversion reads one chroma sample per 2 x 2 block, and regions start on even
    coordinates, so an HD frame need not be converted whole to read the face in it."""

    def __init__(self, rgb: np.ndarray | None = None, planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
        if (rgb is None) == (planes is None):
            raise ValueError("a picture holds either RGB pixels or yuv420p planes")
        self._rgb = rgb
        self._planes = planes
        self.shape = (rgb if rgb is not None else planes[0]).shape[:2]  # (height, width)

    @property
    def nbytes(self) -> int:
        held = [self._rgb] if self._rgb is not None else []
        return sum(a.nbytes for a in held + list(self._planes or ()))

    def rgb(self) -> np.ndarray:
        """The whole frame as contiguous RGB (converted once, then cached)."""
        if self._rgb is None:
            h, w = self.shape
            self._rgb = self.rgb_region(0, 0, w, h)
        return self._rgb

    def _even(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        h, w = self.shape
        x0, y0 = min(max(x0, 0), w) & ~1, min(max(y0, 0), h) & ~1
        return x0, y0, max(min(x1 + (x1 & 1), w), x0), max(min(y1 + (y1 & 1), h), y0)

    def rgb_region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """``rgb()[y0:y1, x0:x1]`` (clamped to the frame), converting only that region."""
        h, w = self.shape
        x0, y0, x1, y1 = min(max(x0, 0), w), min(max(y0, 0), h), min(max(x1, x0), w), min(max(y1, y0), h)
        if self._rgb is not None:
            return self._rgb[y0:y1, x0:x1]
        ex0, ey0, ex1, ey1 = self._even(x0, y0, x1, y1)
        rw, rh = ex1 - ex0, ey1 - ey0
        if rw == 0 or rh == 0:
            return np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        y, u, v = self._planes
        i420 = np.empty((rh * 3 // 2, rw), np.uint8)
        flat = i420.reshape(-1)
        flat[: rw * rh].reshape(rh, rw)[:] = y[ey0:ey1, ex0:ex1]
        quarter = (rw // 2) * (rh // 2)
        flat[rw * rh : rw * rh + quarter].reshape(rh // 2, rw // 2)[:] = u[ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2]
        flat[rw * rh + quarter :].reshape(rh // 2, rw // 2)[:] = v[ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2]
        rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
        if (ex0, ey0, ex1, ey1) != (x0, y0, x1, y1):
            rgb = np.ascontiguousarray(rgb[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0])
        return rgb

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> tuple["Picture", tuple[int, int]]:
        """A copy of the region (as yuv420p planes when decoded so, widened to even coordinates) and
        its origin ``(x, y)``."""
        if self._planes is None:
            h, w = self.shape
            x0, y0, x1, y1 = min(max(x0, 0), w), min(max(y0, 0), h), min(max(x1, x0), w), min(max(y1, y0), h)
            return Picture(rgb=np.ascontiguousarray(self._rgb[y0:y1, x0:x1])), (x0, y0)
        x0, y0, x1, y1 = self._even(x0, y0, x1, y1)
        y, u, v = self._planes
        return Picture(planes=(np.ascontiguousarray(y[y0:y1, x0:x1]),
                               np.ascontiguousarray(u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]),
                               np.ascontiguousarray(v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]))), (x0, y0)


def _to_picture(frame, rotation: int) -> Picture:
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0 and not (rotation // 90) % 4:
        w, h = frame.width, frame.height
        sizes = ((h, w), (h // 2, w // 2), (h // 2, w // 2))
        # views of the decoder's planes (rows padded to ``line_size``); ``Picture.crop`` copies what is kept
        planes = tuple(np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: rows, : cols]
                       for plane, (rows, cols) in zip(frame.planes, sizes))
        return Picture(planes=planes)
    return Picture(rgb=_to_array(frame, "rgb24", rotation))


def _convert(frame, fmt: str, rotation: int):
    return _to_picture(frame, rotation) if fmt == "picture" else _to_array(frame, fmt, rotation)


def _check_size(width: int, height: int, path: str | Path) -> None:
    if width * height > MAX_PIXELS:
        raise ClipError("too_large", f"{Path(path).name}: {width}x{height} frames ({width * height / 1e6:.1f} "
                        f"megapixels) are larger than talkdata decodes ({MAX_PIXELS / 1e6:.1f} megapixels, 7680x4320); "
                        "scale the video down first", stage="decode")


def iter_frames(path: str | Path, fps: float, fmt: str = "rgb24", stats: VideoStats | None = None) -> Iterator[np.ndarray]:
    """Yield frames ``t = 0, 1, ...`` at ``fps`` as numpy arrays (``fmt``: rgb24, bgr24 or gray), or
    as :class:`Picture` objects (``fmt="picture"``: converted to RGB only where they are read)."""
    stats = stats if stats is not None else VideoStats()
    with open_media(path) as container:
        if not container.streams.video:
            raise ClipError("no_video_stream", f"{Path(path).name} has no video stream", stage="decode")
        stream = container.streams.video[0]
        _check_size(stream.codec_context.width, stream.codec_context.height, path)
        # the decoder itself refuses larger pictures, should a frame be larger than the header says
        stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}
        stream.thread_type = "AUTO"
        nominal = _nominal_frame_duration(stream)
        stats.source_fps = 1.0 / nominal
        previous = None  # (relative time, av frame, cached array)
        last_time = None
        t = 0
        try:
            for frame in container.decode(stream):
                report_progress()
                time = frame.time
                if time is None:
                    time = last_time + nominal if last_time is not None else 0.0
                if last_time is None:
                    _check_size(frame.width, frame.height, path)
                    stats.start_time = time
                    stats.width, stats.height = frame.width, frame.height
                    stats.rotation = _rotation(frame)
                    if stats.rotation in (90, 270):
                        stats.width, stats.height = frame.height, frame.width
                elif time <= last_time + TIME_EPSILON:
                    stats.dropped_frames += 1
                    continue
                stats.source_frames += 1
                relative = time - stats.start_time
                while previous is not None and t / fps < relative - TIME_EPSILON:
                    if previous[2] is None:
                        previous = (previous[0], None, _convert(previous[1], fmt, stats.rotation))
                    stats.frame_times.append(previous[0])
                    yield previous[2]
                    t += 1
                previous = (relative, frame, None)
                last_time = time
        except av.FFmpegError as err:
            # never a silently shortened sample: an error part-way rejects the clip
            raise ClipError("decode_error", f"decoding failed after {stats.source_frames} frames: "
                            f"{av_message(err)}", stage="decode") from None
        if previous is None:
            raise ClipError("too_short", f"{Path(path).name} has no decodable video frame", stage="decode")
        declared = stream.frames  # from the container's index (mp4, mov, mkv); 0 when it has none
        decoded = stats.source_frames + stats.dropped_frames
        if declared and decoded < 0.98 * declared - 2:
            raise ClipError("truncated", f"{Path(path).name}: the container's index lists {declared} frames but "
                            f"the file holds only {decoded} (cut-off download or copy?)", stage="decode")
        stats.duration = previous[0] + nominal
        while t / fps < stats.duration - TIME_EPSILON:
            if previous[2] is None:
                previous = (previous[0], None, _convert(previous[1], fmt, stats.rotation))
            stats.frame_times.append(previous[0])
            yield previous[2]
            t += 1
        stats.output_frames = t


@dataclass
class AudioTrack:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    start_time: float  # seconds, timestamp of sample 0 in the container's clock


#: seconds of audio that may be missing from a complete track beyond 2 % (encoder delay, priming)
AUDIO_SLACK = 0.1


def _mono(frame) -> np.ndarray:
    """The mean of the channels of a packed float frame (samples interleaved)."""
    return frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)


def decode_audio(path: str | Path, sample_rate: int = 16000) -> AudioTrack:
    """The whole first audio stream as mono float32 at ``sample_rate``."""
    with open_media(path) as container:
        if not container.streams.audio:
            raise ClipError("no_audio_stream", f"{Path(path).name} has no audio stream", stage="audio")
        stream = container.streams.audio[0]
        # keep the channels and average them here: ffmpeg's own stereo->mono mix adds L and R at
        # 0.707 each (3 dB louder than either channel, and past [-1, 1] on loud speech). Packed
        # ("flt", one plane) and not planar output: PyAV 18's to_ndarray crashes the process on
        # frames with 8 planes (7.1); the channel mean is bit-identical either way
        resampler = av.AudioResampler(format="flt", rate=sample_rate)
        chunks: list[np.ndarray] = []
        start = None
        decoded = 0.0  # seconds
        failure = None
        try:
            for frame in container.decode(stream):
                report_progress()
                decoded += frame.samples / frame.sample_rate if frame.sample_rate else 0.0
                if start is None:
                    start = frame.time if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    chunks.append(_mono(out))
            for out in resampler.resample(None):
                chunks.append(_mono(out))
        except av.FFmpegError as err:
            if not chunks:
                raise ClipError("decode_error", f"audio decoding failed: {av_message(err)}", stage="audio") from None
            failure = av_message(err)
        # as for video: audio that ends before the duration its index lists is a damaged or cut-off
        # file, not a short track (a complete track shorter than the video is padded with silence:
        # audio_padded_s). Only containers with a sample index (mp4, mov) count: elsewhere the
        # duration is an estimate. In seconds, since "frames" are samples for PCM in mov.
        declared = float(stream.duration * stream.time_base) if stream.frames and stream.duration else 0.0
        if declared and decoded < 0.98 * declared - AUDIO_SLACK:
            if failure:
                raise ClipError("decode_error", f"audio decoding failed after {decoded:.2f} s of the {declared:.2f} s "
                                f"the container's index lists: {failure}", stage="audio")
            raise ClipError("truncated", f"{Path(path).name}: the container's index lists {declared:.2f} s of audio but "
                            f"the file holds only {decoded:.2f} s (cut-off download or copy?)", stage="audio")
    if start is None:
        raise ClipError("no_audio_stream", f"{Path(path).name} has an audio stream without samples", stage="audio")
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    # the resampling filter can overshoot full-scale sources by a fraction of a percent
    np.clip(samples, -1.0, 1.0, out=samples)
    return AudioTrack(samples=samples, sample_rate=sample_rate, start_time=float(start))


def align_audio(track: AudioTrack, video_start: float, n_frames: int, fps: float) -> tuple[np.ndarray, float]:
    """Cut ``track`` so sample 0 is at ``video_start`` and it lasts ``round(n_frames / fps * rate)``.

    Returns the samples and the seconds of silence that had to be added (audio shorter than video).
    """
    rate = track.sample_rate
    length = int(round(n_frames / fps * rate))
    offset = int(round((video_start - track.start_time) * rate))
    if offset >= 0:
        samples = track.samples[offset : offset + length]
        lead = 0
    else:
        lead = min(-offset, length)
        samples = track.samples[: length - lead]
    out = np.zeros(length, dtype=np.float32)
    out[lead : lead + len(samples)] = samples
    padded = (length - len(samples)) / rate
    return out, padded
