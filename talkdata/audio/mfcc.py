"""MFCC features with ``rows_per_frame`` rows per video frame (ATVG's settings by default).

``python_speech_features``' MFCC on the 16 kHz PCM16 samples stored in ``audio.wav`` as ``librosa.load``
reads them (float32 ``pcm / 32768``, what ATVG feeds it; :func:`talkdata.audio.pcm.librosa_float`):
25 ms window, hop ``1 / (rows_per_frame * fps)`` (10 ms at 25 fps), 13 coefficients, 26 mel filters,
nfft 512, pre-emphasis 0.97, cepstral lifter 22, c0 replaced by the log frame energy. Row ``4t + k``
is the window starting at sample ``round((t / fps + k * hop) * rate)``, so rows ``4t .. 4t+3``
belong to video frame ``t``. The pre-emphasised audio is zero-padded at the end (as the library pads
its frames) so the last frame also gets ``rows_per_frame`` full rows; the library stops one row
earlier (its last row is ``4T - 2`` for a clip of exactly ``T`` frames of audio).

The computation is the library's own (its pre-emphasis, power spectrum, mel filterbank, DCT and
lifter functions, in the order ``python_speech_features.mfcc`` applies them) with two differences
that leave the 25 fps result bit-identical to ``mfcc(audio, winstep=0.01, ...)``:

- rows are computed in chunks of ``CHUNK_ROWS`` (pre-emphasis is applied once to the whole signal
  first), so memory does not grow with the clip length (the library frames the whole signal at
  once: ~800 MB for a 10-minute clip);
- each window starts at the exact sample of its row's time. The library rounds the hop to whole
  samples, which drifts at frame rates where the hop is fractional (30 fps: 133.33 samples, 150 ms
  of drift per minute).
"""

from __future__ import annotations

import numpy as np

from ..config import Mfcc

CHUNK_ROWS = 4096


def row_starts(n_rows: int, hop_samples: float) -> np.ndarray:
    """First sample of every MFCC row (round half up, as the library rounds)."""
    return np.floor(np.arange(n_rows) * hop_samples + 0.5).astype(np.int64)


def mfcc_per_frame(audio: np.ndarray, n_frames: int, fps: float, sample_rate: int, settings: Mfcc) -> np.ndarray:
    """(n_frames, rows_per_frame, numcep) float32."""
    # imported here: scipy.fft takes ~0.4 s to import, which the build's driver does not need
    from python_speech_features import sigproc
    from python_speech_features.base import get_filterbanks, lifter
    from scipy.fftpack import dct

    rows = int(settings.rows_per_frame)
    wanted = n_frames * rows
    frame_len = int(np.floor(settings.winlen * sample_rate + 0.5))
    starts = row_starts(wanted, sample_rate / (rows * fps))
    needed = int(starts[-1]) + frame_len if wanted else 0
    signal = np.zeros(max(needed, len(audio)), dtype=np.float64)
    if len(audio):
        # in the audio's own dtype, as the library does (float32 from librosa: float32 arithmetic)
        signal[: len(audio)] = sigproc.preemphasis(np.asarray(audio), settings.preemph)
    filters = get_filterbanks(settings.nfilt, settings.nfft, sample_rate, 0, sample_rate / 2)
    offsets = np.arange(frame_len)
    out = np.empty((wanted, settings.numcep), dtype=np.float32)
    eps = np.finfo(float).eps
    for first in range(0, wanted, CHUNK_ROWS):
        frames = signal[starts[first : first + CHUNK_ROWS, None] + offsets]
        power = sigproc.powspec(frames, settings.nfft)
        energy = np.sum(power, 1)
        energy = np.where(energy == 0, eps, energy)
        bands = np.dot(power, filters.T)
        bands = np.where(bands == 0, eps, bands)
        cepstra = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, : settings.numcep]
        cepstra = lifter(cepstra, settings.ceplifter)
        if settings.append_energy:
            cepstra[:, 0] = np.log(energy)
        out[first : first + len(frames)] = cepstra
    return out.reshape(n_frames, rows, -1)
