"""Cutting face tubes out of long videos with PyAV (no ffmpeg binary needed).

TalkingHead-1KH describes a tube as a frame range ``S..E`` (E inclusive) of a 1-minute chunk of a
YouTube video plus a box ``L, T, R, B`` in the pixels of a reference resolution ``H x W``. The official
scripts make the chunks with ``ffmpeg -i in.mp4 -c copy -map 0 -segment_time 00:01:00 -f segment``
and cut each tube with ``trim(start_frame=S, end_frame=E+1)`` and ``crop(l, t, r-l, b-t)`` after
rescaling the box with ``t = int(T / H * h)`` (likewise for the others).

:func:`split_chunks` replicates that segmentation by stream copy: a new chunk starts at the first
video key frame whose timestamp reaches the next multiple of the chunk length (as ffmpeg's segment
muxer does), and the timestamps are kept. Frame indices inside a chunk count its decoded frames, as
the official trim does. Audio packets go to the chunk whose time span holds them (ffmpeg writes them
in file order, which can put a few milliseconds of audio into the neighbouring chunk); an audio packet
that straddles a cut is written to both chunks.

:func:`cut_tube` decodes the chunk, keeps frames ``S..E``, crops them (the crop is trimmed to even
sizes, as H.264 yuv420p needs) and encodes them with x264 at the source timestamps (no frame rate
change); the audio from the start of frame S to the end of frame E is re-encoded as AAC. It checks the
frame range against the frames the chunk really has and raises :class:`TubeRangeError` otherwise.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CUT_CRF = 17  # x264 quality of the cut tubes (they are re-encoded again by the build)
CUT_PRESET = "veryfast"


class TubeRangeError(Exception):
    """The tube's frames or box do not fit the video it refers to."""


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float  # average frame rate
    has_audio: bool
    duration: float  # seconds, from the container (0 when unknown)


@dataclass
class Chunk:
    path: Path
    frames: int  # video packets = frames (one access unit per mp4 sample)
    start: float  # seconds from the start of the video


def probe(path: str | Path) -> VideoInfo:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        video = container.streams.video[0]
        rate = video.average_rate or video.guessed_rate or 0
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        return VideoInfo(video.codec_context.width, video.codec_context.height, float(rate),
                         bool(container.streams.audio), duration)


def _seconds(packet_ts: int | None, time_base: Fraction, origin: float) -> float | None:
    return None if packet_ts is None else float(packet_ts * time_base) - origin


def chunk_name(stem: str, index: int) -> str:
    return f"{stem}_{index:04d}.mp4"


def chunk_cuts(path: str | Path, seconds: float) -> tuple[list[int], list[float], float]:
    """Where the chunks start: video packet ordinals (decode order), start times (s), and the time origin."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        origin = float(container.start_time / av.time_base) if container.start_time is not None else 0.0
        ordinals, starts = [0], [0.0]
        count = 0
        for packet in container.demux(video):
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's final empty packet
            t = _seconds(packet.pts, video.time_base, origin)
            if count > ordinals[-1] and packet.is_keyframe and t is not None and t >= seconds * len(ordinals):
                ordinals.append(count)
                starts.append(t)
            count += 1
    return ordinals, starts, origin


def split_chunks(path: str | Path, out_dir: str | Path, stem: str, seconds: float = 60.0) -> list[Chunk]:
    """Split ``path`` into ``out_dir/{stem}_0000.mp4, ...`` by stream copy (video + first audio stream)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ordinals, starts, origin = chunk_cuts(path, seconds)
    outputs: dict[int, tuple] = {}
    frames = [0] * len(ordinals)
    temps = [out_dir / f".{chunk_name(stem, i)}.tmp.mp4" for i in range(len(ordinals))]

    def output(index: int, streams):
        if index not in outputs:
            container = av.open(str(temps[index]), "w", format="mp4")
            mapped = {s.index: container.add_stream_from_template(s) for s in streams}
            outputs[index] = (container, mapped)
        return outputs[index]

    closed = [0]  # chunks below this index are finished

    def close_before(index: int) -> None:
        for i in [i for i in outputs if i < index]:
            outputs.pop(i)[0].close()
        closed[0] = max(closed[0], index)

    try:
        with av.open(str(path)) as source:
            video = source.streams.video[0]
            audio = source.streams.audio[0] if source.streams.audio else None
            streams = [video] + ([audio] if audio is not None else [])
            video_count, video_chunk, audio_chunk = 0, 0, 0
            for packet in source.demux(streams):
                if packet.dts is None and packet.pts is None:
                    continue
                if packet.stream.index == video.index:
                    video_chunk = bisect.bisect_right(ordinals, video_count) - 1
                    index = video_chunk
                    video_count += 1
                    frames[index] += 1
                else:
                    t = _seconds(packet.pts if packet.pts is not None else packet.dts, audio.time_base, origin)
                    # a packet of an already finished chunk (audio lagging far behind) joins the oldest open one
                    index = max(closed[0], bisect.bisect_right(starts, t) - 1)
                    audio_chunk = max(audio_chunk, index)
                    # an audio packet that runs into the next chunk is written to both, so that every chunk
                    # has audio from its first frame on (the tube cutter takes audio by time)
                    if index + 1 < len(starts) and packet.duration and t is not None \
                            and t + float(packet.duration * audio.time_base) > starts[index + 1]:
                        twin = av.Packet(bytes(packet))
                        twin.pts, twin.dts, twin.duration = packet.pts, packet.dts, packet.duration
                        twin.time_base = packet.time_base
                        container, mapped = output(index + 1, streams)
                        twin.stream = mapped[packet.stream.index]
                        container.mux(twin)
                container, mapped = output(index, streams)
                packet.stream = mapped[packet.stream.index]
                container.mux(packet)
                close_before(min(video_chunk, audio_chunk) if audio is not None else video_chunk)
        close_before(len(ordinals))
        chunks = []
        for i, temp in enumerate(temps):
            final = out_dir / chunk_name(stem, i)
            if temp.exists():
                os.replace(temp, final)
                chunks.append(Chunk(final, frames[i], starts[i]))
        return chunks
    finally:
        for container, _ in outputs.values():
            container.close()
        for temp in temps:
            temp.unlink(missing_ok=True)


def rescale_box(box: tuple[int, int, int, int], reference: tuple[int, int], size: tuple[int, int]) -> list[int]:
    """A ``(L, T, R, B)`` box annotated at ``reference = (H, W)`` in a video of ``size = (width, height)``.

    Truncates like the official ``videos_crop.py`` (``t = int(T / H * h)``).
    """
    left, top, right, bottom = box
    ref_h, ref_w = reference
    width, height = size
    return [int(left / ref_w * width), int(top / ref_h * height),
            int(right / ref_w * width), int(bottom / ref_h * height)]


def crop_region(box: list[int], size: tuple[int, int], margin: float = 0.0) -> list[int]:
    """The region to cut: ``box`` grown by ``margin`` of its size per side, clipped to the frame, even sized."""
    width, height = size
    left, top, right, bottom = box
    grow_x, grow_y = margin * (right - left), margin * (bottom - top)
    x0 = max(0, int(round(left - grow_x)))
    y0 = max(0, int(round(top - grow_y)))
    x1 = min(width, int(round(right + grow_x)))
    y1 = min(height, int(round(bottom + grow_y)))
    x1 = x0 + max(0, x1 - x0) // 2 * 2
    y1 = y0 + max(0, y1 - y0) // 2 * 2
    return [x0, y0, x1, y1]


def box_in_region(box: list[int], region: list[int]) -> list[float]:
    """``box`` as fractions of ``region``'s width and height (clipped to 0..1), rounded to 4 decimals."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    values = [(box[0] - x0) / w, (box[1] - y0) / h, (box[2] - x0) / w, (box[3] - y0) / h]
    return [round(min(1.0, max(0.0, v)), 4) for v in values]


@dataclass
class CutResult:
    frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    start: float  # time of frame S in the chunk, seconds
    end: float  # end of frame E, seconds


def cut_tube(chunk: str | Path, out: str | Path, start: int, end: int, region: list[int],
             crf: int = CUT_CRF, preset: str = CUT_PRESET) -> CutResult:
    """Frames ``start..end`` (inclusive) of ``chunk`` cropped to ``region``, with their audio, into ``out``."""
    x0, y0, x1, y1 = region
    width, height = x1 - x0, y1 - y0
    if width < 2 or height < 2:
        raise TubeRangeError(f"the tube box {region} lies outside the frame")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.parent / f".{out.name}.tmp.mp4"
    try:
        with av.open(str(chunk)) as source, av.open(str(temp), "w", format="mp4") as target:
            video = source.streams.video[0]
            video.thread_type = "AUTO"
            frame_w, frame_h = video.codec_context.width, video.codec_context.height
            if x1 > frame_w or y1 > frame_h:
                raise TubeRangeError(f"the tube box {region} exceeds the {frame_w}x{frame_h} frame")
            rate = video.average_rate or video.guessed_rate or Fraction(25)
            encoder = target.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.codec_context.time_base = video.time_base
            audio_in = source.streams.audio[0] if source.streams.audio else None
            audio_out = None
            if audio_in is not None:
                layout = audio_in.codec_context.layout.name
                audio_out = target.add_stream("aac", rate=audio_in.codec_context.sample_rate, layout=layout)
            t_start = t_end = None
            t_last = 0.0
            first_pts, last_pts, count = None, None, 0
            frame_duration = float(1 / rate)
            for index, frame in enumerate(source.decode(video)):
                if index < start:
                    continue
                if index > end:
                    t_end = frame.time if frame.time is not None else t_last + frame_duration
                    break
                rgb = frame.to_ndarray(format="rgb24")[y0:y1, x0:x1]
                out_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                # source timestamps, so that variable frame rates stay as they are; frames without one
                # follow the previous frame at the average rate
                t_frame = frame.time
                if t_frame is None:
                    t_frame = t_last + frame_duration if count else index * frame_duration
                ticks = frame.pts if frame.pts is not None else int(round(t_frame / video.time_base))
                if first_pts is None:
                    first_pts, t_start = ticks, t_frame
                pts = ticks - first_pts
                pts = pts if last_pts is None else max(pts, last_pts + 1)
                out_frame.pts, out_frame.time_base, last_pts = pts, video.time_base, pts
                for packet in encoder.encode(out_frame):
                    target.mux(packet)
                count += 1
                t_last = t_frame
            if count < end - start + 1:
                have = start + count
                raise TubeRangeError(f"the tube needs frames {start}..{end} but the chunk has {have} frames "
                                     f"(0..{have - 1})")
            for packet in encoder.encode(None):
                target.mux(packet)
            if t_end is None:
                t_end = t_last + frame_duration
            if audio_out is not None:
                _cut_audio(chunk, audio_out, target, t_start, t_end)
        os.replace(temp, out)
        return CutResult(count, float(rate), width, height, audio_out is not None, t_start, t_end)
    finally:
        temp.unlink(missing_ok=True)


def _cut_audio(chunk, audio_out, target, t_start: float, t_end: float) -> None:
    """Audio of ``chunk`` from ``t_start`` to ``t_end`` (seconds), silence where the track has none."""
    rate = audio_out.codec_context.sample_rate
    layout = audio_out.codec_context.layout.name
    total = max(0, int(round((t_end - t_start) * rate)))
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    channels = len(audio_out.codec_context.layout.channels)
    buffer = np.zeros((channels, total), dtype=np.float32)
    with av.open(str(chunk)) as source:
        stream = source.streams.audio[0]
        for frame in source.decode(stream):
            if frame.time is None:
                continue
            offset = int(round((frame.time - t_start) * rate))
            if offset >= total:
                break
            for converted in resampler.resample(frame):
                samples = converted.to_ndarray().reshape(channels, -1)
                lo, hi = max(0, offset), min(total, offset + samples.shape[1])
                if hi > lo:
                    buffer[:, lo:hi] = samples[:, lo - offset : hi - offset]
                offset += samples.shape[1]
    block = audio_out.codec_context.frame_size or 1024
    for begin in range(0, total, block):
        samples = np.ascontiguousarray(buffer[:, begin : begin + block])
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, begin, Fraction(1, rate)
        for packet in audio_out.encode(frame):
            target.mux(packet)
    for packet in audio_out.encode(None):
        target.mux(packet)
