"""Decoding the fields of one WebDataset sample into a :class:`Clip`.

``.npy`` members become numpy arrays (no pickles), ``audio.wav`` float32 samples in [-1, 1],
``json`` a dict. ``video.mp4`` is kept as bytes and decoded on demand from memory with PyAV (no
temporary file): :meth:`Clip.video` decodes the whole clip once and caches it, or only the frames
asked for (decoding stops after the last one; only those are converted to RGB).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Sequence

import av
import numpy as np

from ..errors import UserError
from ..media.encode import decode_wav

#: how to get each optional field into a dataset that lacks it
HOW_TO_GET = {
    "deepspeech.npy": ("the dataset was built without DeepSpeech features; rebuild it with "
                       "--set audio.deepspeech_model=PATH (a DeepSpeech v0.1.0 output_graph.pb, which needs "
                       "pip install 'talkdata[deepspeech]', or an ONNX export of it); see README 'Sample fields'"),
}


def missing_field_message(field: str, key: str, source: str) -> str:
    how = HOW_TO_GET.get(field, "the shards were written without it; rebuild the dataset with the current talkdata")
    return f"sample {key} in {source} has no {field}: {how}"


@dataclass
class Clip:
    """One decoded sample: ``key``, its ``json`` metadata and the requested fields."""

    key: str
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # 'mfcc', 'pca', ..., 'audio'
    video_bytes: bytes | None = None
    _frames: np.ndarray | None = field(default=None, repr=False)

    @property
    def frames_count(self) -> int:
        return int(self.meta["frames"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def audio_rate(self) -> int:
        return int(self.meta.get("audio_rate", 16000))

    def video(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """RGB frames (N, S, S, 3) uint8: all of them (cached), or those at ``indices``."""
        if self.video_bytes is None:
            raise ValueError(f"{self.key}: video.mp4 was not loaded (add it to fields)")
        if indices is None:
            if self._frames is None:
                self._frames = decode_video(self.video_bytes)
            return self._frames
        if self._frames is not None:
            return self._frames[np.asarray(indices, dtype=np.int64)]
        return decode_video(self.video_bytes, indices)


def decode_video(data: bytes, indices: Sequence[int] | None = None) -> np.ndarray:
    """Frames of an in-memory mp4 as (N, H, W, 3) uint8 RGB; ``indices`` picks (and orders) them."""
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    frames: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        for number, frame in enumerate(container.decode(stream)):
            if wanted is None or number in wanted:
                frames[number] = frame.to_ndarray(format="rgb24")
            if wanted is not None and number >= wanted[-1]:
                break
    if wanted is None:
        return np.stack([frames[i] for i in range(len(frames))]) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise ValueError(f"the video has fewer frames than asked for (frame {missing[0]} is missing)")
    return np.stack([frames[int(i)] for i in indices])


def decode_field(name: str, data: bytes):
    if name.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if name == "audio.wav":
        return decode_wav(data)[0]
    if name == "json":
        return json.loads(data)
    raise ValueError(f"no decoder for field {name!r}")


def decode_sample(sample: dict, fields: set[str], source: str) -> Clip:
    """A :class:`Clip` from a raw sample ``{"__key__", field: bytes}``; every field must be there."""
    key = sample["__key__"]
    for name in sorted(fields | {"json"}):
        if name not in sample:
            raise UserError(missing_field_message(name, key, source))
    clip = Clip(key=key, meta=decode_field("json", sample["json"]))
    for name in fields:
        if name == "video.mp4":
            clip.video_bytes = sample[name]
        elif name != "json":
            clip.arrays[field_key(name)] = decode_field(name, sample[name])
    return clip


def field_key(name: str) -> str:
    """``mfcc.npy`` -> ``mfcc``, ``audio.wav`` -> ``audio``, ``video.mp4`` -> ``video``."""
    return name.split(".", 1)[0]
