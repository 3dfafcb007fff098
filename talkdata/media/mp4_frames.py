"""Frames of an in-memory mp4 (a shard's ``video.mp4`` member): the one decoder of shard video.

Used by the loader (:class:`talkdata.loader.members.Clip`), the dataset card's contact sheet and
``talkdata inspect``. It lives here, below all three, so that none of them pulls in another's
imports (the loader package brings torch).
"""

from __future__ import annotations

import io
from typing import Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter


def decode_video(data: bytes, indices: Sequence[int] | None = None) -> np.ndarray:
    """Frames of an in-memory mp4 as (N, H, W, 3) uint8 RGB; ``indices`` picks (and orders) them.

    One ``VideoReformatter`` converts the frames of the clip (``frame.to_ndarray(format="rgb24")``
    sets up a new swscale context for each frame, which costs as much as decoding it; the pixels
    are the same). With ``indices``, decoding stops after the last one, and frames that are
    neither asked for nor referenced by others (non-reference B-frames) are not decoded; frames are
    then numbered by their timestamps, and a stream whose timestamps are not on the frame grid is
    decoded frame by frame instead.
    """
    if indices is None:
        frames = _decode_all(data)
        return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return np.zeros((0, 0, 0, 3), np.uint8)
    picked = _decode_skipping(data, wanted)
    if picked is None:
        picked = _decode_counting(data, wanted)
    missing = [i for i in wanted if i not in picked]
    if missing:
        raise ValueError(f"the video has fewer frames than asked for (frame {missing[0]} is missing)")
    return np.stack([picked[int(i)] for i in indices])


def _decode_all(data: bytes) -> list[np.ndarray]:
    rgb = VideoReformatter()
    with av.open(io.BytesIO(data), mode="r") as container:
        return [rgb.reformat(frame, format="rgb24").to_ndarray() for frame in container.decode(video=0)]


def _decode_counting(data: bytes, wanted: list[int]) -> dict[int, np.ndarray]:
    """Frames numbered in display order as they come out of the decoder."""
    rgb, frames, keep = VideoReformatter(), {}, set(wanted)
    with av.open(io.BytesIO(data), mode="r") as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in keep:
                frames[number] = rgb.reformat(frame, format="rgb24").to_ndarray()
            if number >= wanted[-1]:
                break
    return frames


def _decode_skipping(data: bytes, wanted: list[int]) -> dict[int, np.ndarray] | None:
    """Frames numbered by timestamp, non-reference frames that are not wanted left undecoded;
    ``None`` when the timestamps are not on a constant frame grid starting at frame 0."""
    rgb, frames, keep = VideoReformatter(), {}, set(wanted)
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        rate, base = stream.average_rate, stream.time_base
        if not rate or not base:
            return None
        context = stream.codec_context
        origin = None
        scale, unit = base.numerator * rate.numerator, base.denominator * rate.denominator  # frames = ticks * scale / unit

        def number(pts: int) -> int | None:
            ticks = (pts - origin) * scale
            whole = (2 * ticks + unit) // (2 * unit)
            return whole if abs(ticks - whole * unit) * 1000 < unit else None

        for packet in container.demux(stream):
            if packet.pts is None and packet.size:
                return None
            if origin is None and packet.size:
                if not packet.is_keyframe:
                    return None
                origin = packet.pts if stream.start_time is None else min(packet.pts, stream.start_time)
            if packet.size:
                index = number(packet.pts)
                if index is None:
                    return None
                context.skip_frame = "DEFAULT" if index in keep else "NONREF"
            for frame in context.decode(packet if packet.size else None):
                index = None if frame.pts is None else number(frame.pts)
                if index is None:
                    return None
                if index in keep:
                    frames[index] = rgb.reformat(frame, format="rgb24").to_ndarray()
            if len(frames) == len(keep):
                break
    return frames
