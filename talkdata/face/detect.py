"""Face detection at the right scale: coarse-to-fine search over the frame, a window search around
a tracked face, and rotated copies for tilted faces.

A backend (``face.detector``) answers for one image patch; :class:`FaceDetector` decides which
patches to show it, so that every face of at least ``face.min_face_size`` source pixels reaches the
backend at a size it can find, whatever the frame's resolution:

- ``blazeface`` (default; MediaPipe BlazeFace full range, :mod:`.blazeface`): a fixed 192 x 192
  input that finds faces from about a tenth of the input up. Level 0 shows it the whole frame (padded
  by ``pad`` of its side, so faces that fill the frame are found); each further level halves the tile
  side, tiles overlapping by half, until a ``min_face_size`` face fills a tenth of a tile.
- ``hog`` (dlib's HOG) and ``mmod`` (dlib's CNN, ``mmod_human_face_detector.dat``): sliding windows
  of about 80 px over an image pyramid, so one call finds every face larger than 80 px in the image
  shown. Level 0 is the padded frame downscaled to ``max_side``; each further level doubles the
  scale, up to the scale where a ``min_face_size`` face is 80 px.

The search stops at the first level that finds a face: large faces cost one call, and the fine
levels (the expensive ones in 4K) run only while nothing has been found. When the upright search
finds nothing, the same patches are searched rotated by each angle of ``rotations`` (in-plane tilt).

Every backend's box is mapped to one convention, dlib HOG's box (the box the 68-point predictor was
trained on), by a per-backend centre shift and width factor measured on the sample clips. A
:class:`Detection` carries that upright box (centred on the face) and the face's roll in degrees
(counter-clockwise rotation that makes the eyes level).
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..config import Face
from ..errors import UserError

DETECTORS = ("blazeface", "hog", "mmod")


@dataclass
class Detection:
    box: np.ndarray  # (x0, y0, x1, y1) source pixels, dlib-HOG convention, upright about its centre
    roll: float = 0.0  # degrees; rotating the image by this (cv2 convention) levels the eyes
    score: float = 1.0


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def rotation_about(centre: tuple[float, float], angle: float, out_origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2x3 affine rotating by ``angle`` degrees (cv2 convention) about ``centre``, then shifting so
    that ``out_origin`` (in the rotated image) becomes (0, 0)."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0)
    m[:, 2] -= np.asarray(out_origin, dtype=np.float64)
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def map_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _patch(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` with replicated edges where the window leaves the image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = window
    inner = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    if inner.size == 0:
        return np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)) + image.shape[2:], image.dtype)
    borders = (max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0))
    return cv2.copyMakeBorder(inner, *borders, cv2.BORDER_REPLICATE) if any(borders) else inner


def _face_box(cx: float, cy: float, width: float) -> np.ndarray:
    return np.array([cx - width / 2.0, cy - width / 2.0, cx + width / 2.0, cy + width / 2.0])


# --------------------------------------------------------------------------- backends


def dlib_model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("dlib models not found: install the package 'face_recognition_models' "
                        "(pip install face_recognition_models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class _SlidingBackend(abc.ABC):
    """dlib detectors: any image size, faces from about ``window`` px up."""

    window = 80.0
    # map to the HOG convention: (centre x shift, centre y shift) in box widths, width factor
    to_hog = (0.0, 0.0, 1.0)

    @abc.abstractmethod
    def find(self, image: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
        """``(box in image px, roll, score)`` for every face in a grayscale/RGB ``image``."""


class HogBackend(_SlidingBackend):
    name = "hog"
    gray = True

    def __init__(self) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()

    def find(self, image):
        rects, scores, _ = self._detector.run(np.ascontiguousarray(image), 0, 0.0)
        return [(np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64), 0.0, float(s))
                for r, s in zip(rects, scores)]


class MmodBackend(_SlidingBackend):
    name = "mmod"
    gray = False
    to_hog = (0.02, 0.035, 0.96)  # measured on the sample clips (MMOD boxes sit higher and are wider)

    def __init__(self) -> None:
        import dlib

        path = dlib_model_dir() / "mmod_human_face_detector.dat"
        if not path.is_file():
            raise UserError(f"dlib CNN face detector missing: {path} (reinstall face_recognition_models)")
        self._detector = dlib.cnn_face_detection_model_v1(str(path))

    def find(self, image):
        return [(np.array([d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()], dtype=np.float64),
                 0.0, float(d.confidence)) for d in self._detector(np.ascontiguousarray(image), 0)]


class BlazeBackend:
    """BlazeFace full range: a fixed square input; faces from ``min_fraction`` of its side up."""

    name = "blazeface"
    gray = False
    min_fraction = 0.1
    to_hog = (0.0, 0.02, 0.88)  # measured on the sample clips (BlazeFace boxes are wider)

    def __init__(self, kind: str = "full") -> None:
        from .blazeface import blazeface

        self._model = blazeface(kind)
        self.size = self._model.size

    def find(self, image):
        boxes, points, scores = self._model.run(image)
        scale = image.shape[1] / self.size
        out = []
        for box, pts, score in zip(boxes, points, scores):
            right_eye, left_eye = pts[0], pts[1]  # the subject's right eye is on the image's left
            roll = float(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])))
            out.append((box * scale, roll, float(score)))
        return out


@lru_cache(maxsize=4)
def detector_backend(name: str):
    """One backend instance per process (models load once per worker)."""
    if name == "hog":
        return HogBackend()
    if name == "mmod":
        return MmodBackend()
    if name == "blazeface":
        return BlazeBackend()
    raise UserError(f"unknown face detector {name!r} (choose {', '.join(DETECTORS)})")


# --------------------------------------------------------------------------- search


class FaceDetector:
    """Where to look, at which scale and tilt; the backend only answers for the patches it is shown."""

    def __init__(self, backend, min_face_size: float = 40.0, pad: float = 0.25, max_side: int = 640,
                 rotations: tuple[float, ...] = (25.0, -25.0), near_face_size: float = 100.0):
        self.backend = backend
        self.name = backend.name
        self.min_face_size = float(min_face_size)
        self.pad = pad
        self.max_side = max_side
        self.rotations = tuple(rotations)
        self.near_face_size = near_face_size
        self.calls = 0  # backend calls, for the benchmarks

    # ---- one patch
    def _run(self, image: np.ndarray, window: tuple[int, int, int, int], scale: float, angle: float,
             out_size: tuple[int, int] | None = None) -> list[Detection]:
        """Detect in ``window`` of ``image`` (edge-replicated) rotated by ``angle`` about the window
        centre and resized by ``scale``; map the detections back to ``image`` pixels."""
        x0, y0, x1, y1 = window
        if angle:
            centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
            m = rotation_about(centre, angle, (x0, y0))
            m[:, :] *= scale
            size = out_size or (int(round((x1 - x0) * scale)), int(round((y1 - y0) * scale)))
            patch = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        else:
            patch = _patch(image, window)
            size = out_size or (int(round(patch.shape[1] * scale)), int(round(patch.shape[0] * scale)))
            if size != (patch.shape[1], patch.shape[0]):
                patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
        self.calls += 1
        back = invert_affine(m)
        dx, dy, fw = self.backend.to_hog
        out = []
        for box, roll, score in self.backend.find(np.ascontiguousarray(patch)):
            width = (box[2] - box[0] + box[3] - box[1]) / 2.0 / scale * fw
            local_shift = np.array([dx, dy]) * width
            centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
            centre = map_points(back, centre[None])[0]
            face_roll = roll + angle  # the patch was rotated by ``angle`` before the backend saw it
            c, s = np.cos(np.radians(face_roll)), np.sin(np.radians(face_roll))
            # the shift is along the face's own axes (down the face when it is tilted)
            shift = np.array([c * local_shift[0] + s * local_shift[1], -s * local_shift[0] + c * local_shift[1]])
            box_src = _face_box(*(centre + shift), width)
            if width >= 0.8 * self.min_face_size:
                out.append(Detection(box_src, face_roll, score))
        return out

    def _levels(self, shape: tuple[int, int]) -> list[list[tuple[tuple[int, int, int, int], float, tuple[int, int] | None]]]:
        """Per level, the ``(window, scale, output size)`` patches to search, coarse to fine."""
        h, w = shape
        pad = int(round(self.pad * max(h, w)))
        side = max(h, w) + 2 * pad
        levels = []
        if isinstance(self.backend, BlazeBackend):
            n = self.backend.size
            cx, cy = w / 2.0, h / 2.0
            whole = (int(round(cx - side / 2)), int(round(cy - side / 2)),
                     int(round(cx - side / 2)) + side, int(round(cy - side / 2)) + side)
            levels.append([(whole, n / side, (n, n))])
            tile = side / 2.0
            while True:
                tile_i = int(round(tile))
                step = max(tile_i // 2, 1)
                xs = list(range(0, max(w - tile_i, 0) + 1, step))
                ys = list(range(0, max(h - tile_i, 0) + 1, step))
                if xs[-1] + tile_i < w:
                    xs.append(w - tile_i)
                if ys[-1] + tile_i < h:
                    ys.append(h - tile_i)
                levels.append([((x, y, x + tile_i, y + tile_i), n / tile_i, (n, n)) for y in ys for x in xs])
                if self.backend.min_fraction * tile <= self.min_face_size:
                    break
                tile /= 2.0
            return levels
        window = self.backend.window
        scale = min(1.0, self.max_side / side)
        levels.append([((-pad, -pad, w + pad, h + pad), scale, None)])
        finest = window / self.min_face_size
        while scale < finest:
            scale = min(2.0 * scale, finest)
            levels.append([((0, 0, w, h), scale, None)])
        return levels

    def pick(self, gray: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """The image this backend reads (HOG reads grayscale, the CNNs RGB)."""
        return gray if self.backend.gray else rgb

    def detect(self, image: np.ndarray, fine: bool = True) -> list[Detection]:
        """Faces in the whole frame, largest first. ``fine=False`` searches the coarsest level only
        (upright), for frames between key frames while no face is tracked."""
        levels = self._levels(image.shape[:2])
        if not fine:
            levels = levels[:1]
        for angle in (0.0,) + (self.rotations if fine else ()):
            for level in levels:
                found = [d for window, scale, size in level for d in self._run(image, window, scale, angle, size)]
                if found:
                    return _merge(found)
        return []

    @staticmethod
    def near_reach(box: np.ndarray, margin: float = 0.5) -> tuple[int, int, int, int]:
        """The pixels ``(x0, y0, x1, y1)`` :meth:`detect_near` may read around ``box`` at any tilt: the
        square circumscribing its window turned by any angle, plus bilinear sampling's reach."""
        size = max(box[2] - box[0], box[3] - box[1], 1.0)
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half = size * (0.5 + margin) * np.sqrt(2.0) + 2.0
        return (int(np.floor(cx - half)), int(np.floor(cy - half)), int(np.ceil(cx + half)), int(np.ceil(cy + half)))

    def detect_near(self, image: np.ndarray, box: np.ndarray, roll: float = 0.0, margin: float = 0.5) -> list[Detection]:
        """Faces in a window reaching ``margin`` box sizes beyond ``box`` on every side, upright to
        the tracked face's ``roll`` first, then at the other tilts."""
        size = max(box[2] - box[0], box[3] - box[1], 1.0)
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half = size * (0.5 + margin)
        window = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
        if isinstance(self.backend, BlazeBackend):
            n = self.backend.size
            scale, out_size = n / (window[2] - window[0]), (n, n)
        else:
            scale, out_size = min(1.0, self.near_face_size / size), None
        angles = [round(roll / 5.0) * 5.0 if abs(roll) >= 10 else 0.0]
        angles += [a for a in (0.0,) + self.rotations if a not in angles]
        for angle in angles:
            found = self._run(image, window, scale, angle, out_size)
            if found:
                return _merge(found)
        return []


def _merge(found: list[Detection]) -> list[Detection]:
    """Drop duplicates (tiles overlap): keep the best-scoring of boxes overlapping by more than 0.4; largest first."""
    kept: list[Detection] = []
    for d in sorted(found, key=lambda d: -d.score):
        if all(box_iou(d.box, k.box) < 0.4 for k in kept):
            kept.append(d)
    kept.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    return kept


def make_detector(face: Face) -> FaceDetector:
    """The configured detector (``face.detector``, ``face.min_face_size``, ``face.detect_pad``, ...)."""
    return FaceDetector(detector_backend(face.detector), face.min_face_size, face.detect_pad, face.detect_max_side,
                        face.detect_rotations)
