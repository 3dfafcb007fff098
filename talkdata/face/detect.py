"""Face detection on key frames (dlib's HOG detector).

dlib's HOG detector misses faces that fill the frame (VoxCeleb2's 224 x 224 crops): the face box
must fit inside the frame with some margin for its sliding windows. The frame is therefore padded
by ``pad`` of its size on every side (edge pixels replicated) before detecting, and large frames are
downscaled so that detection costs about the same whatever the resolution. Boxes are returned in
source-frame pixels.

While a face is tracked, the tracker only needs to know whether the detector still sees a face
where the track is: :meth:`HogDetector.detect_near` looks in a window around the tracked box (two
box widths wide, edge-replicated where it leaves the frame) scaled so that the face is about 100
pixels wide (HOG's window is 80). On the sample clips it finds the face on 122 of the 125 frames
where a full-frame detection does, at a sixth of the cost (2.8 vs 17.7 ms); the tracker falls back
to the whole frame when it misses.
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
        scale = min(1.0, self.max_side / (max(h, w) + 2 * pad))
        return self._detect_window(gray, (-pad, -pad, w + pad, h + pad), scale)

    def detect_near(self, gray: np.ndarray, box: np.ndarray, margin: float = 0.5,
                    near_face_size: float = 100.0) -> list[np.ndarray]:
        """Face boxes in a window reaching ``margin`` box sizes beyond ``box`` on every side."""
        size = max(box[2] - box[0], box[3] - box[1], 1.0)
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half = size * (0.5 + margin)
        window = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
        return self._detect_window(gray, window, min(1.0, near_face_size / size))

    def _detect_window(self, gray: np.ndarray, window: tuple[int, int, int, int], scale: float) -> list[np.ndarray]:
        """Detect in ``gray[y0:y1, x0:x1]`` (edge-replicated outside the frame) resized by ``scale``."""
        h, w = gray.shape[:2]
        x0, y0, x1, y1 = window
        inner = gray[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        if inner.size == 0:
            return []
        borders = (max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0))
        image = cv2.copyMakeBorder(inner, *borders, cv2.BORDER_REPLICATE) if any(borders) else inner
        if scale < 1.0:
            size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = image.shape[1] / (x1 - x0), image.shape[0] / (y1 - y0)
        boxes = []
        for rect in _dlib_detector()(np.ascontiguousarray(image), self.upsample):
            box = np.array([rect.left() / scale_x + x0, rect.top() / scale_y + y0,
                            rect.right() / scale_x + x0, rect.bottom() / scale_y + y0], dtype=np.float64)
            box[[0, 2]] = box[[0, 2]].clip(-0.5 * w, 1.5 * w)
            box[[1, 3]] = box[[1, 3]].clip(-0.5 * h, 1.5 * h)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                boxes.append(box)
        boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
        return boxes
