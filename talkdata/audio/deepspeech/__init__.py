"""DeepSpeech v0.1.0 logits, as VOCA and FACIAL compute them, at the model's native 50 Hz.

* :mod:`.features`: the feature math (PCM16 samples -> (N, 494) z-scored model inputs);
* :mod:`.backends`: the acoustic model, an ONNX export (onnxruntime) or the original frozen graph
  ``output_graph.pb`` (TensorFlow, the optional ``talkdata[deepspeech]`` extra).

:func:`deepspeech_logits` gives the (N, 29) logits of the 50 Hz steps, which the build stores as
``deepspeech.npy``. Interpolating them to a video frame rate and cutting FACIAL's / VOCA's windows
is the loader's job (``talkdata/loader/windows.py``), which therefore needs neither this package
nor python_speech_features.
"""

from __future__ import annotations

import numpy as np

from .backends import DeepSpeechModel, OnnxDeepSpeech, TensorFlowDeepSpeech, load_deepspeech
from .features import NUM_CLASSES, STEP_RATE, audio_to_inputs

__all__ = ["DeepSpeechModel", "OnnxDeepSpeech", "TensorFlowDeepSpeech", "load_deepspeech", "NUM_CLASSES",
           "STEP_RATE", "audio_to_inputs", "deepspeech_logits"]


def deepspeech_logits(pcm: np.ndarray, model: DeepSpeechModel) -> np.ndarray:
    """16 kHz mono int16 samples -> (N, 29) float32 logits of the 50 Hz steps."""
    return model.logits(audio_to_inputs(pcm))
