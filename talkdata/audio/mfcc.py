"""MFCC features with ``rows_per_frame`` rows per video frame (ATVG's settings by default).

``python_speech_features.mfcc`` on 16 kHz float audio in [-1, 1] (as ATVG feeds it from librosa):
25 ms window, hop ``1 / (rows_per_frame * fps)`` (10 ms at 25 fps), 13 coefficients, 26 mel filters,
nfft 512, pre-emphasis 0.97, cepstral lifter 22, c0 replaced by the log frame energy. Row ``4t + k``
is the window starting at ``t / fps + k * hop``, so rows ``4t .. 4t+3`` belong to video frame ``t``.
The audio is zero-padded at the end so the last frame also gets ``rows_per_frame`` full rows.
"""

from __future__ import annotations

import numpy as np
from python_speech_features import mfcc


def mfcc_per_frame(audio: np.ndarray, n_frames: int, fps: float, sample_rate: int, settings: dict) -> np.ndarray:
    """(n_frames, rows_per_frame, numcep) float32."""
    rows = int(settings["rows_per_frame"])
    hop = 1.0 / (rows * fps)
    hop_samples = hop * sample_rate
    win_samples = settings["winlen"] * sample_rate
    wanted = n_frames * rows
    # pad so that the window of the last row fits: start (wanted - 1) * hop + window length
    needed = int(np.ceil((wanted - 1) * hop_samples + win_samples))
    padded = np.zeros(max(needed, len(audio)), dtype=np.float64)
    padded[: len(audio)] = audio
    features = mfcc(
        padded[:needed] if needed > len(audio) else padded,
        samplerate=sample_rate,
        winlen=settings["winlen"],
        winstep=hop,
        numcep=settings["numcep"],
        nfilt=settings["nfilt"],
        nfft=settings["nfft"],
        preemph=settings["preemph"],
        ceplifter=settings["ceplifter"],
        appendEnergy=settings["append_energy"],
    )
    if len(features) < wanted:
        raise ValueError(f"MFCC gave {len(features)} rows, expected {wanted}")
    return features[:wanted].reshape(n_frames, rows, -1).astype(np.float32)
