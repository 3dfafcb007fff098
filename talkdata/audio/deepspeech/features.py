"""DeepSpeech v0.1.0 input features, as VOCA and FACIAL compute them (``audioToInputVector`` in
``utils/audio_handler.py`` of VOCA and ``audio2face/_utils/audio_handler.py`` of FACIAL).

1. The model is fed 16 kHz mono int16 samples: the PCM16 samples stored in ``audio.wav`` (VOCA and
   FACIAL read the wav with ``scipy.io.wavfile``; ``resampy`` leaves 16 kHz audio as it is, and
   ``.astype('int16')`` gives the same integers back).
2. ``python_speech_features.mfcc(samples, samplerate=16000, numcep=26)`` with the library defaults
   (25 ms windows every 10 ms, 26 filters, 512-point FFT, energy in c0) gives 100 Hz features;
   every second frame is kept (the BiRNN stride of 2), giving 50 Hz steps: step ``i`` is the
   window starting at sample ``320 i``.
3. Each step gets a context of 9 frames either side (zero frames beyond the ends): a 19 x 26 window
   flattened row by row into a 494-vector.
4. The whole (N, 494) input matrix is z-scored with ONE scalar mean and standard deviation.
"""

from __future__ import annotations

import numpy as np
from python_speech_features import mfcc

SAMPLE_RATE = 16000
NUM_CEP = 26
NUM_CONTEXT = 9
WINDOW_STEPS = 2 * NUM_CONTEXT + 1  # 19
INPUT_SIZE = WINDOW_STEPS * NUM_CEP  # 494
NUM_CLASSES = 29
STEP_RATE = 50.0  # DeepSpeech steps per second (100 Hz MFCC, stride 2)


def audio_to_inputs(pcm: np.ndarray) -> np.ndarray:
    """Steps 1-4: 16 kHz mono int16 samples -> (N, 494) z-scored float32 inputs."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1 or pcm.size == 0:
        raise ValueError(f"expected non-empty 1-D int16 PCM samples, got {pcm.dtype} {pcm.shape}")
    frames = mfcc(pcm, samplerate=SAMPLE_RATE, numcep=NUM_CEP)[::2]
    return _zscore(_stack_context(frames)).astype(np.float32)


def _stack_context(frames: np.ndarray) -> np.ndarray:
    """(N, 26) frames -> (N, 494): row i is frames i-9..i+9 (zeros outside), frame-major."""
    empty = np.zeros((NUM_CONTEXT, frames.shape[1]), dtype=frames.dtype)
    padded = np.concatenate((empty, frames, empty))
    windows = np.lib.stride_tricks.sliding_window_view(padded, WINDOW_STEPS, axis=0)
    # sliding_window_view puts the window axis last: (N, 26, 19) -> (N, 19, 26)
    return windows.transpose(0, 2, 1).reshape(len(frames), -1)


def _zscore(inputs: np.ndarray) -> np.ndarray:
    """One global z-score over all elements (std 0 leaves the centred values unscaled)."""
    std = inputs.std()
    return (inputs - inputs.mean()) / (std if std > 0 else 1.0)
