"""The exact PCM16 samples of a mono wav written by talkdata, and the float views systems read.

Audio features are computed from these samples (not from the float audio before it was rounded to
PCM16), so that recomputing them from a shard's ``audio.wav`` with a system's own code gives the
same numbers.
"""

from __future__ import annotations

import io
import wave

import numpy as np


def wav_pcm16(data: bytes) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of mono 16-bit wav bytes."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"expected mono 16-bit wav, got {wav.getnchannels()} channels of "
                             f"{8 * wav.getsampwidth()} bits")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16), wav.getframerate()


def librosa_float(pcm: np.ndarray) -> np.ndarray:
    """int16 samples as ``librosa.load`` / ``soundfile`` return them: float32 ``pcm / 32768``."""
    return np.asarray(pcm, dtype=np.float32) / np.float32(32768.0)
