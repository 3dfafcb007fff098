"""Member decoding: the fields of one shard sample into a :class:`Clip`.

``.npy`` members become numpy arrays (no pickles; :mod:`talkdata.loader.fast.npy`), ``audio.wav``
float32 samples in [-1, 1], ``json`` a dict. ``video.mp4`` is kept as bytes and decoded on demand
from memory with PyAV (no temporary file): :meth:`Clip.video` decodes the whole clip once and caches
it, or only the frames asked for (decoding stops after the last one, unneeded non-reference frames
are skipped, only the asked frames are converted to RGB).

Imports :mod:`talkdata.loader.damage`, :mod:`talkdata.loader.fast.npy`,
:func:`talkdata.media.encode.decode_wav` and :func:`talkdata.media.mp4_frames.decode_video` (the one
decoder of ``video.mp4`` members, shared with the card and ``talkdata inspect``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..media.encode import decode_wav
from ..media.mp4_frames import decode_video
from .damage import DamagedSample, damaged_message, reason
from .fast.npy import decode_npy


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
    url: str = ""  # the shard, and the dataset, it came from: named in read errors
    source: str = ""
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
                frames = self._decode(None)
                if len(frames) != self.frames_count:
                    raise DamagedSample(damaged_message(self.url, self.key, "video.mp4", f"holds {len(frames)} frames, "
                                                        f"its json says {self.frames_count}", self.source))
                self._frames = frames
            return self._frames
        if self._frames is not None:
            return self._frames[np.asarray(indices, dtype=np.int64)]
        return self._decode(indices)

    def _decode(self, indices: Sequence[int] | None) -> np.ndarray:
        try:
            return decode_video(self.video_bytes, indices)
        except MemoryError:
            raise
        except Exception as err:  # any failure to decode these bytes: the member is damaged
            raise DamagedSample(damaged_message(self.url, self.key, "video.mp4", f"cannot be decoded ({reason(err)})",
                                                self.source)) from None


def decode_field(name: str, data: bytes):
    if name.endswith(".npy"):
        return decode_npy(data)
    if name == "audio.wav":
        return decode_wav(data)[0]
    if name == "json":
        return json.loads(data)
    raise ValueError(f"no decoder for field {name!r}")


def decode_sample(sample: dict, fields: set[str], source: str) -> Clip:
    """A :class:`Clip` from a raw sample ``{"__key__", "__url__", field: bytes}``; every field must be
    there. A member that cannot be decoded, or that the sample's json lists but the shard lacks, is
    a :class:`DamagedSample`; a field the dataset was built without is a ``UserError`` saying how to
    get it."""
    key, url = sample["__key__"], sample.get("__url__", source)
    if "json" not in sample:
        raise DamagedSample(damaged_message(url, key, "json", "is missing (every sample has one)", source))
    meta = _decode_member(url, key, "json", sample["json"], source)
    if not isinstance(meta, dict) or "frames" not in meta or "fps" not in meta:
        raise DamagedSample(damaged_message(url, key, "json", "is not a sample's metadata (no 'frames' / 'fps')",
                                            source))
    for name in sorted(fields):
        if name not in sample:
            if name in meta.get("fields", ()):
                raise DamagedSample(damaged_message(url, key, name, "is missing (the sample's json lists it)", source))
            raise UserError(missing_field_message(name, key, source))
    clip = Clip(key=key, meta=meta, url=url, source=source)
    for name in fields:
        if name == "video.mp4":
            clip.video_bytes = sample[name]
        elif name != "json":
            clip.arrays[field_key(name)] = _decode_member(url, key, name, sample[name], source)
    return clip


def _decode_member(url: str, key: str, name: str, data: bytes, source: str):
    try:
        return decode_field(name, data)
    except MemoryError:
        raise
    except Exception as err:  # numpy, json, wave: any failure to parse these bytes means damage
        raise DamagedSample(damaged_message(url, key, name, f"cannot be decoded ({reason(err)})", source)) from None


def field_key(name: str) -> str:
    """``mfcc.npy`` -> ``mfcc``, ``audio.wav`` -> ``audio``, ``video.mp4`` -> ``video``."""
    return name.split(".", 1)[0]
