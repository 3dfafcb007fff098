"""Pure image transforms on decoded frames (N, H, W, 3) uint8 RGB.

Resizing uses OpenCV: area interpolation when shrinking (what a careful ``cv2.resize`` user picks to
avoid aliasing), bicubic when enlarging. Outputs for the models are float32 channel-first
(``ToTensor`` layout) in ``[-1, 1]`` (``Normalize(0.5, 0.5)``) or ``[0, 1]``.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, height, width, C) uint8."""
    n, h, w = frames.shape[:3]
    if (h, w) == (height, width):
        return frames
    method = cv2.INTER_AREA if width <= w and height <= h else cv2.INTER_CUBIC
    out = np.empty((n, height, width) + frames.shape[3:], dtype=frames.dtype)
    for i in range(n):
        out[i] = cv2.resize(frames[i], (width, height), interpolation=method).reshape(out.shape[1:])
    return out


def crop_width(frames: np.ndarray, aspect: float) -> np.ndarray:
    """Centre crop to ``width / height == aspect`` keeping the full height (for aspect <= W / H)."""
    h, w = frames.shape[1:3]
    target = int(round(h * aspect))
    if target >= w:
        return frames
    left = (w - target) // 2
    return frames[:, :, left : left + target]


def to_signed(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [-1, 1]: ``x / 127.5 - 1``."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def to_unit(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


#: ITU-R 601-2 luma weights as torchvision's ``Grayscale`` applies them (Diffused Heads' motion frames)
LUMA = np.array([0.2989, 0.587, 0.114], dtype=np.float32)


def to_gray_signed(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float32: the luma of the [-1, 1] frames.

    Diffused Heads applies ``Grayscale`` after ``(x / 255) * 2 - 1``, so the weights (which sum to
    0.9999) act on the signed values.
    """
    signed = frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return signed @ LUMA
