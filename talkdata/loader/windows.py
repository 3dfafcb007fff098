"""Pure windowing functions: frame windows, and audio features cut to the same frames.

Timing conventions of the shards (README "Sample fields"): frame ``t`` starts at ``t / fps``; audio sample
0 is the start of frame 0; ``mfcc.npy[t, k]`` is the 25 ms window starting at
``t / fps + k / (4 fps)``; ``deepspeech.npy[i]`` is DeepSpeech's 50 Hz step ``i`` (the 25 ms MFCC window
starting at ``i / 50`` s); :func:`logits_at_fps` and :func:`facial_window_view` turn those into VOCA's and
FACIAL's per-frame windows.
"""

from __future__ import annotations

import numpy as np

from .fast.interp import frame_grid, interp_rows

#: DeepSpeech v0.1.0 steps per second (100 Hz MFCC frames, BiRNN stride 2)
DEEPSPEECH_RATE = 50.0

__all__ = ["window_starts", "sample_span", "cut_audio", "raw_audio_windows", "atvg_mfcc_windows",
           "resample_frames", "deepspeech_steps", "logits_at_fps", "facial_window_view", "sliding_view",
           "clamp", "DEEPSPEECH_RATE"]


def window_starts(n_frames: int, window: int, stride: int, first: int = 0, margin: int = 0) -> list[int]:
    """Starts ``s = first, first + stride, ...`` of the windows ``[s, s + window)`` that fit in the
    clip with ``margin`` more frames after them (audio context)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    return list(range(first, n_frames - window - margin + 1, stride))


def item_windows(n_frames: int, window: int | None, stride: int) -> tuple[int, list[int]]:
    """``(window length, starts)`` of a profile's items: ``window=None`` means one item holding the
    whole clip."""
    if window is None:
        return n_frames, [0]
    return window, window_starts(n_frames, window, stride)


def sample_span(start_frame: int, frames: int, fps: float, rate: int) -> tuple[int, int]:
    """First audio sample and sample count of frames ``[start_frame, start_frame + frames)``.

    The count depends only on ``frames`` (``round(frames / fps * rate)``), so every window of a
    dataset has the same length even when ``rate / fps`` is not an integer.
    """
    return int(round(start_frame / fps * rate)), int(round(frames / fps * rate))


def cut_audio(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``audio[start : start + length]`` (rows of any shape) with zeros where that range leaves the signal."""
    out = np.zeros((length,) + audio.shape[1:], dtype=np.float32)
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
    span = (before + after + 1) * rows
    for t in (min(targets), max(targets)) if len(targets) else ():
        lo = (t - before) * rows
        if lo < 0 or lo + span > len(flat):
            raise ValueError(f"frame {t} needs MFCC rows {lo}..{lo + span - 1}, the clip has {len(flat)}")
    first = (targets[0] - before) * rows if len(targets) else 0
    if len(targets) > 1 and list(targets) == list(range(targets[0], targets[0] + len(targets))):
        # consecutive frames: one strided view of the overlapping row ranges
        picked = np.lib.stride_tricks.as_strided(flat[first:], shape=(len(targets), span, flat.shape[1]),
                                                 strides=(rows * flat.strides[0],) + flat.strides, writeable=False)
    else:
        starts = (np.asarray(targets, dtype=np.int64) - before) * rows
        picked = flat[starts[:, None] + np.arange(span)]  # (len(targets), span, C)
    return np.ascontiguousarray(picked[:, :, 1:] if drop_c0 else picked, dtype=np.float32)


def resample_frames(values: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Per-frame values (T, ...) at ``fps_in`` -> (round(T / fps_in * fps_out), ...) at ``fps_out``.

    Linear interpolation in time (``np.interp`` per channel, computed for all channels at once with
    numpy's arithmetic, so the values are the same) from ``i / fps_in`` to ``j / fps_out``; values
    past the last input frame are held. Returns the input unchanged when the rates match.
    """
    values = np.asarray(values)
    if abs(fps_in - fps_out) < 1e-9:
        return values
    n_in = len(values)
    n_out = int(round(n_in / fps_in * fps_out))
    flat = values.reshape(n_in, -1).astype(np.float64, copy=False)
    out = interp_rows(frame_grid(n_in, float(fps_in), n_out, float(fps_out)), flat)
    return out.reshape((n_out,) + values.shape[1:]).astype(values.dtype if values.dtype.kind == "f" else np.float32,
                                                           copy=False)


def deepspeech_steps(n_samples: int) -> int:
    """DeepSpeech's 50 Hz steps for ``n_samples`` 16 kHz samples: python_speech_features frames 400
    samples every 160 (``1 + ceil((n - 400) / 160)``, at least 1), of which every second is kept."""
    frames = 1 if n_samples <= 400 else 1 + -(-(n_samples - 400) // 160)
    return -(-frames // 2)


def logits_at_fps(logits: np.ndarray, n_frames: int, fps: float, rate: float = DEEPSPEECH_RATE) -> np.ndarray:
    """VOCA / FACIAL ``interpolate_features``: (S, C) rows at ``rate`` -> (n_frames, C) float32 at ``fps``,
    ``np.interp`` per channel from the step times ``i / rate`` to the frame times ``j / fps`` (values past
    the last step held). Bit-identical to the per-channel loop, computed for all channels at once."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"expected non-empty (S, C) logits, got shape {logits.shape}")
    grid = frame_grid(len(logits), float(rate), int(n_frames), float(fps))
    return interp_rows(grid, logits.astype(np.float64)).astype(np.float32)


def facial_window_view(features: np.ndarray, win: int = 16, pad: int = 8, stride: int = 1) -> np.ndarray:
    """FACIAL / VOCA's audio windows as a read-only view (no copy of every window: a profile item
    copies only the rows it returns): ``pad`` zero rows at both ends of (T, C) ``features``, then
    window ``j`` is padded rows ``j * stride .. j * stride + win - 1`` for ``j * stride`` in
    ``range(0, T + 2 pad - win, stride)`` (``audio_handler.py``'s loop). With the defaults there are
    exactly T windows and row 8 of window ``j`` is row ``j``; FACIAL's 25 fps branch is ``stride=2``
    over the 50 Hz logits: ``ceil(T / 2)`` windows, window ``j`` centred on step ``2 j``."""
    features = np.asarray(features, dtype=np.float32)
    padded = np.zeros((len(features) + 2 * pad,) + features.shape[1:], dtype=np.float32)
    padded[pad : pad + len(features)] = features
    count = len(range(0, len(padded) - win, stride))
    view = sliding_view(padded, win)
    if stride == 1:
        return view[:count]
    return np.lib.stride_tricks.as_strided(view, (count,) + view.shape[1:],
                                           (view.strides[0] * stride,) + view.strides[1:], writeable=False)


def sliding_view(rows: np.ndarray, window: int, axis: int = 0) -> np.ndarray:
    """Read-only view of every ``window`` consecutive entries of ``rows`` along ``axis``, the window
    axis right after it: for ``axis=0``, (N - window + 1, window, ...) with ``view[t, k] = rows[t + k]``."""
    count = max(rows.shape[axis] - window + 1, 0)
    return np.lib.stride_tricks.as_strided(rows, rows.shape[:axis] + (count, window) + rows.shape[axis + 1:],
                                           rows.strides[: axis + 1] + rows.strides[axis:], writeable=False)


def clamp(indices, n: int) -> np.ndarray:
    """Indices clipped to ``[0, n - 1]`` (edge replication)."""
    return np.clip(np.asarray(indices, dtype=np.int64), 0, n - 1)
