"""Follow one face through a clip: detect on key frames, follow with landmarks in between.

The tracker runs the detector on every ``detect_every``-th frame and whenever it has no face (on
the whole frame when it has no face, in a window around the tracked face otherwise).
Between key frames the face box of frame t is derived from the landmarks of frame t-1 (with the
box-from-landmarks mapping calibrated on the last detection), so the landmark predictor itself
carries the track. A key-frame detection that overlaps the tracked box re-seeds the track (this
corrects drift); the track is dropped when the landmarks jump (box size or position changes more
than a face could between frames) and then re-acquired by detection.

One identity is kept: the first face chosen is the largest, ties broken by closeness to the frame
centre; later detections are only accepted when they overlap the tracked face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ClipError
from .detect import box_iou


@dataclass
class TrackState:
    box_from_landmarks: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0, 1.0]))
    last_box: np.ndarray | None = None
    last_landmarks: np.ndarray | None = None


def landmark_box(points: np.ndarray) -> np.ndarray:
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])


def calibrate(det_box: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Express a detector box relative to the landmarks' box: (dx0, dy0, dx1, dy1) in box units."""
    lb = landmark_box(points)
    w, h = max(lb[2] - lb[0], 1.0), max(lb[3] - lb[1], 1.0)
    return np.array([(det_box[0] - lb[0]) / w, (det_box[1] - lb[1]) / h, (det_box[2] - lb[2]) / w, (det_box[3] - lb[3]) / h])


def box_from_landmarks(points: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    lb = landmark_box(points)
    w, h = lb[2] - lb[0], lb[3] - lb[1]
    return lb + calibration * np.array([w, h, w, h])


def choose_first_face(boxes: list[np.ndarray], frame_shape: tuple[int, int]) -> np.ndarray:
    """The largest face; among faces of similar size (within 20 %), the one nearest the centre."""
    h, w = frame_shape
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes])
    candidates = [b for b, a in zip(boxes, areas) if a >= 0.8 * areas.max()]
    centre = np.array([w / 2.0, h / 2.0])
    return min(candidates, key=lambda b: float(np.linalg.norm((b[:2] + b[2:]) / 2.0 - centre)))


def _jumped(prev: np.ndarray, new: np.ndarray) -> bool:
    """True when the landmark box changed more than a face moves between two frames."""
    pw, nw = prev[2] - prev[0], new[2] - new[0]
    if nw <= 0 or pw <= 0 or not (0.67 < nw / pw < 1.5):
        return True
    shift = np.linalg.norm((prev[:2] + prev[2:]) / 2.0 - (new[:2] + new[2:]) / 2.0)
    return shift > 0.5 * pw


class FaceTracker:
    """Feed frames in order with :meth:`step`; read the per-frame results afterwards."""

    def __init__(self, detector, predictor, detect_every: int = 10, redetect_iou: float = 0.3,
                 max_unconfirmed: int = 3, hint: list[float] | None = None):
        """``hint``: where the corpus says the face is, ``[x0, y0, x1, y1]`` as fractions of the frame
        (VoxCeleb2's face-track crops, TalkingHead-1KH tubes). It seeds the track when the detector
        finds nothing, and a tracked face that overlaps it counts as confirmed."""
        self.hint = hint
        self.detector = detector
        self.predictor = predictor
        self.detect_every = detect_every
        self.redetect_iou = redetect_iou
        self.max_unconfirmed = max_unconfirmed
        self._confirmed_at = 0  # last frame where a detection confirmed the track
        self._misses = 0  # consecutive key frames whose detection did not confirm the track
        self.state = TrackState()
        self.landmarks: list[np.ndarray | None] = []
        self.boxes: list[np.ndarray | None] = []
        self.n_detector_runs = 0
        self.n_detections = 0
        self.n_hint_seeds = 0

    def _detect(self, gray: np.ndarray, near: np.ndarray | None = None) -> list[np.ndarray]:
        self.n_detector_runs += 1
        boxes = self.detector.detect(gray) if near is None else self.detector.detect_near(gray, near)
        self.n_detections += bool(boxes)
        return boxes

    def _hint_box(self, gray: np.ndarray) -> np.ndarray | None:
        if self.hint is None:
            return None
        h, w = gray.shape[:2]
        return np.asarray(self.hint, dtype=np.float64) * np.array([w, h, w, h])

    def _seed(self, gray, rgb, box) -> np.ndarray:
        points = self.predictor.predict(gray, rgb, box)
        self.state.box_from_landmarks = calibrate(box, points)
        return points

    def step(self, gray: np.ndarray, rgb: np.ndarray | None = None) -> None:
        t = len(self.landmarks)
        state = self.state
        points = None
        box = None
        if state.last_landmarks is None:
            boxes = self._detect(gray)
            if not boxes and self.hint is not None:
                boxes = [self._hint_box(gray)]
                self.n_hint_seeds += 1
            if boxes:
                box = choose_first_face(boxes, gray.shape[:2]) if state.last_box is None else max(
                    boxes, key=lambda b: box_iou(b, state.last_box))
                points = self._seed(gray, rgb, box)
                self._confirmed_at, self._misses = t, 0
        else:
            box = box_from_landmarks(state.last_landmarks, state.box_from_landmarks)
            if t % self.detect_every == 0:
                boxes = self._detect(gray, near=box)  # only a face overlapping the track matters here
                best = max(boxes, key=lambda b: box_iou(b, box)) if boxes else None
                if best is None or box_iou(best, box) < self.redetect_iou:
                    boxes = self._detect(gray)  # the window can miss what the whole frame shows
                    best = max(boxes, key=lambda b: box_iou(b, box)) if boxes else None
                if best is not None and box_iou(best, box) >= self.redetect_iou:
                    box = best
                    points = self._seed(gray, rgb, box)
                    self._confirmed_at, self._misses = t, 0
                elif self.hint is not None and box_iou(self._hint_box(gray), box) >= self.redetect_iou:
                    self._confirmed_at, self._misses = t, 0  # the corpus's face box vouches for the track
                else:
                    self._misses += 1
                    if self._misses >= self.max_unconfirmed:
                        # the landmark predictor answers on any image: after several key frames without a
                        # detection the track is following nothing, so drop it back to the last confirmation
                        self._drop_since(self._confirmed_at + 1)
                        state.last_landmarks, self._misses = None, 0
                        self.landmarks.append(None)
                        self.boxes.append(None)
                        return
            if points is None:
                points = self.predictor.predict(gray, rgb, box)
                if _jumped(landmark_box(state.last_landmarks), landmark_box(points)):
                    points, box = None, None
        if points is not None:
            h, w = gray.shape[:2]
            lb = landmark_box(points)
            inside = (min(lb[2], w) - max(lb[0], 0)) * (min(lb[3], h) - max(lb[1], 0))
            if inside < 0.5 * (lb[2] - lb[0]) * (lb[3] - lb[1]):
                points, box = None, None  # the face left the frame
        state.last_landmarks = points
        if box is not None:
            state.last_box = box
        self.landmarks.append(points)
        self.boxes.append(box)

    def _drop_since(self, start: int) -> None:
        for t in range(start, len(self.landmarks)):
            self.landmarks[t] = None
            self.boxes[t] = None

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``landmarks (T,68,2)``, ``boxes (T,4)`` with NaN where no face, and ``found (T,)``."""
        n = len(self.landmarks)
        landmarks = np.full((n, 68, 2), np.nan)
        boxes = np.full((n, 4), np.nan)
        found = np.zeros(n, dtype=bool)
        for t, (points, box) in enumerate(zip(self.landmarks, self.boxes)):
            if points is not None:
                landmarks[t], boxes[t], found[t] = points, box, True
        return landmarks, boxes, found


def missing_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of every run of frames without a face."""
    runs, start = [], None
    for t, ok in enumerate(found):
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            runs.append((start, t))
            start = None
    if start is not None:
        runs.append((start, len(found)))
    return runs


def fill_missing(values: np.ndarray, found: np.ndarray, max_gap: int, max_missing_fraction: float) -> np.ndarray:
    """Interpolate frames without a face linearly in time (held at the clip's ends).

    Raises ``ClipError('no_face')`` when no frame has a face and ``ClipError('face_missing')`` when
    too many frames lack it or one gap is longer than ``max_gap`` frames.
    """
    n = len(found)
    if not found.any():
        raise ClipError("no_face", f"no face found in any of {n} frames", stage="track")
    missing = n - int(found.sum())
    if missing > max_missing_fraction * n:
        raise ClipError("face_missing", f"face missing in {missing} of {n} frames "
                        f"(more than face.max_missing_fraction={max_missing_fraction})", stage="track")
    longest = max((stop - start for start, stop in missing_runs(found)), default=0)
    if longest > max_gap:
        raise ClipError("face_missing", f"face missing in {longest} consecutive frames "
                        f"(more than face.max_gap_frames={max_gap})", stage="track")
    if missing == 0:
        return values.copy()
    flat = values.reshape(n, -1).copy()
    known = np.flatnonzero(found)
    times = np.arange(n)
    for column in range(flat.shape[1]):
        flat[:, column] = np.interp(times, known, flat[known, column])
    return flat.reshape(values.shape)
