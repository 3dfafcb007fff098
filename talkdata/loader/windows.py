"""Pure windowing functions: frame windows, and audio features cut to the same frames.

Timing conventions of the shards (DESIGN section 5): frame ``t`` starts at ``t / fps``; audio sample
0 is the start of frame 0; ``mfcc.npy[t, k]`` is the 25 ms window starting at
``t / fps + k / (4 fps)``; ``deepspeech.npy[t]`` is the logit vector interpolated at ``t / fps``.
"""

from __future__ import annotations

import numpy as np

from ..audio.deepspeech import facial_windows

__all__ = ["window_starts", "sample_span", "cut_audio", "raw_audio_windows", "atvg_mfcc_windows",
           "resample_frames", "facial_windows", "clamp"]


def window_starts(n_frames: int, window: int, stride: int, first: int = 0, margin: int = 0) -> list[int]:
    """Starts ``s = first, first + stride, ...`` of the windows ``[s, s + window)`` that fit in the
    clip with ``margin`` more frames after them (audio context)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    return list(range(first, n_frames - window - margin + 1, stride))


def sample_span(start_frame: int, frames: int, fps: float, rate: int) -> tuple[int, int]:
    """First audio sample and sample count of frames ``[start_frame, start_frame + frames)``.

    The count depends only on ``frames`` (``round(frames / fps * rate)``), so every window of a
    dataset has the same length even when ``rate / fps`` is not an integer.
    """
    return int(round(start_frame / fps * rate)), int(round(frames / fps * rate))


def cut_audio(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``audio[start : start + length]`` with zeros where that range leaves the signal."""
    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, len(audio))
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


def raw_audio_windows(audio: np.ndarray, n_frames: int, fps: float, rate: int, length: int) -> np.ndarray:
    """SDA's per-frame raw-audio windows (``speech-driven-animation`` ``cut_sequence_``), (T, length).

    Stride ``int(rate / fps)`` samples (640 at 25 fps, 16 kHz); the signal is zero-padded by
    ``length - stride`` samples split ``floor`` left / ``ceil`` right, so window ``t`` covers samples
    ``[t * stride - left, t * stride - left + length)`` of the clip: with 3200 samples at 25 fps
    ``[640 t - 1280, 640 t + 1920)``, centred on frame ``t``'s 40 ms.
    """
    stride = int(rate / fps)
    left = (length - stride) // 2
    return np.stack([cut_audio(audio, t * stride - left, length) for t in range(n_frames)]) if n_frames else \
        np.zeros((0, length), np.float32)


def atvg_mfcc_windows(mfcc: np.ndarray, targets: list[int], before: int = 3, after: int = 3,
                      drop_c0: bool = True) -> np.ndarray:
    """ATVG's audio input per target frame ``t``: MFCC rows ``[(t - before) * R, (t + after + 1) * R)``
    of the (T * R, C) row matrix (R rows per frame), without column 0 when ``drop_c0``.

    With R = 4 and the defaults: (len(targets), 28, 12). Every row must lie inside the clip.
    """
    t_count, rows, _ = mfcc.shape
    flat = mfcc.reshape(t_count * rows, -1)
    out = []
    for t in targets:
        lo, hi = (t - before) * rows, (t + after + 1) * rows
        if lo < 0 or hi > len(flat):
            raise ValueError(f"frame {t} needs MFCC rows {lo}..{hi - 1}, the clip has {len(flat)}")
        out.append(flat[lo:hi, 1:] if drop_c0 else flat[lo:hi])
    return np.stack(out).astype(np.float32)


def resample_frames(values: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Per-frame values (T, ...) at ``fps_in`` -> (round(T / fps_in * fps_out), ...) at ``fps_out``.

    Linear interpolation in time (``np.interp`` per channel) from ``i / fps_in`` to ``j / fps_out``;
    values past the last input frame are held. Returns the input unchanged when the rates match.
    """
    values = np.asarray(values)
    if abs(fps_in - fps_out) < 1e-9:
        return values
    n_in = len(values)
    n_out = int(round(n_in / fps_in * fps_out))
    flat = values.reshape(n_in, -1).astype(np.float64)
    times_in = np.arange(n_in) / fps_in
    times_out = np.arange(n_out) / fps_out
    out = np.empty((n_out, flat.shape[1]), dtype=np.float64)
    for channel in range(flat.shape[1]):
        out[:, channel] = np.interp(times_out, times_in, flat[:, channel])
    return out.reshape((n_out,) + values.shape[1:]).astype(values.dtype if values.dtype.kind == "f" else np.float32)


def clamp(indices, n: int) -> np.ndarray:
    """Indices clipped to ``[0, n - 1]`` (edge replication)."""
    return np.clip(np.asarray(indices, dtype=np.int64), 0, n - 1)
