"""Blink signal: the eye aspect ratio (Soukupova & Cech, 2016) from 68-point landmarks."""

import numpy as np

from .points import LEFT_EYE, RIGHT_EYE


def _eye_aspect_ratio(eye: np.ndarray) -> np.ndarray:
    """``eye`` is (T, 6, 2) in iBUG order p1..p6; EAR = (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    vertical = np.linalg.norm(eye[:, 1] - eye[:, 5], axis=-1) + np.linalg.norm(eye[:, 2] - eye[:, 4], axis=-1)
    horizontal = np.linalg.norm(eye[:, 0] - eye[:, 3], axis=-1)
    return vertical / np.maximum(2.0 * horizontal, 1e-6)


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Mean EAR of both eyes per frame, (T,) float32. About 0.3 when open, near 0 when closed."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    right = _eye_aspect_ratio(landmarks[:, list(RIGHT_EYE)])
    left = _eye_aspect_ratio(landmarks[:, list(LEFT_EYE)])
    return ((right + left) / 2.0).astype(np.float32)
