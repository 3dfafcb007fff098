"""Face detection on key frames (dlib's HOG detector).

dlib's HOG detector misses faces that fill the frame (VoxCeleb2's 224 x 224 crops): the face box
must fit inside the frame with some margin for its sliding windows. The frame is therefore padded
by ``pad`` of its size on every side (edge pixels replicated) before detecting, and large frames are
downscaled so that detection costs about the same whatever the resolution. Boxes are returned in
source-frame pixels.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@lru_cache(maxsize=1)
def _dlib_detector():
    import dlib

    return dlib.get_frontal_face_detector()


class HogDetector:
    def __init__(self, upsample: int = 0, pad: float = 0.25, max_side: int = 640, min_size: int = 32):
        self.upsample = upsample
        self.pad = pad
        self.max_side = max_side
        self.min_size = min_size

    def detect(self, gray: np.ndarray) -> list[np.ndarray]:
        """Face boxes ``(x0, y0, x1, y1)`` in ``gray``'s pixels, largest first."""
        h, w = gray.shape[:2]
        pad = int(round(self.pad * max(h, w)))
        image = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        if scale < 1.0:
            size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        boxes = []
        for rect in _dlib_detector()(np.ascontiguousarray(image), self.upsample):
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64) / scale - pad
            box[[0, 2]] = box[[0, 2]].clip(-0.5 * w, 1.5 * w)
            box[[1, 3]] = box[[1, 3]].clip(-0.5 * h, 1.5 * h)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                boxes.append(box)
        boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
        return boxes
