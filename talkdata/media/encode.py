"""Encode crops to H.264 mp4 bytes and audio to PCM16 wav bytes, deterministically.

The encoder runs single-threaded with bit-exact flags so that the same frames give the same bytes on
any machine with the same library versions (x264's output depends on its thread count). The mp4 is
written with its index (``moov``) in front (``movflags=+faststart``), so a player or a streaming
reader can start from the first bytes; FFmpeg moves the index in a second pass over the file, which
needs a real file, so the encoder writes to a temporary file and returns its bytes.
"""

from __future__ import annotations

import io
import os
import tempfile
import wave
from fractions import Fraction

import av
import numpy as np


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class H264Writer:
    """Append RGB frames with :meth:`write`, then :meth:`finish` returns the mp4 bytes."""

    def __init__(self, width: int, height: int, fps: float, crf: int = 18, preset: str = "veryfast"):
        self._folder = tempfile.TemporaryDirectory(prefix="talkdata-mp4-")
        self._path = os.path.join(self._folder.name, "video.mp4")
        self._container = av.open(self._path, mode="w", format="mp4",
                                  options={"fflags": "+bitexact", "movflags": "+faststart"})
        rate = fps_fraction(fps)
        self._stream = self._container.add_stream(
            "libx264", rate=rate, options={"crf": str(crf), "preset": preset, "threads": "1", "flags": "+bitexact"}
        )
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / rate
        self._index = 0
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._index
        self._index += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        try:
            with open(self._path, "rb") as handle:
                return handle.read()
        finally:
            self._folder.cleanup()


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono PCM16 wav bytes from float samples in [-1, 1] (clipped)."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode_wav`: float32 samples and the sample rate."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32767.0), rate
