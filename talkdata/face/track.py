"""Follow one face through a clip: detect on key frames, follow with landmarks in between.

The tracker runs the detector on every ``detect_every``-th frame and whenever it has no face (on
the whole frame when it has no face, in a window around the tracked face otherwise).
Between key frames the face box of frame t is derived from the landmarks of frame t-1 (with the
box-from-landmarks mapping calibrated on the last detection), so the landmark predictor itself
carries the track. A key-frame detection that overlaps the tracked box re-seeds the track (this
corrects drift); the track is dropped when the landmarks jump (box size or position changes more
than a face could between frames) and then re-acquired by detection.

Tilted faces (in-plane roll of ``MIN_ROLL`` degrees or more, from the detection or from the eye
line of the previous frame's landmarks) are landmarked on a levelled copy of the face region, so the
68-point predictor always sees an upright face and the landmarks carry the tilt through the clip.

Frames given as RGB only are converted to grayscale where something reads it: the whole frame for a
grayscale detector or a tilted face, only the region around an upright face (``GRAY_HALF``) for the
68-point predictor, which gives the same landmarks at a fraction of the cost on HD and 4K frames.

One identity is kept: the first face chosen is the largest, ties broken by closeness to the frame
centre; later detections are only accepted when they overlap the tracked face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import ClipError
from ..media.decode import Picture
from .detect import Detection, box_iou, invert_affine, map_points, rotation_about


#: tilts (degrees) below this are treated as upright: the landmark predictor gets the frame as it is
MIN_ROLL = 10.0

#: half the side of the grayscale region converted around an upright face for the landmark predictor,
#: in box sizes from the box centre. dlib's 68-point model reads pixels around its current landmarks:
#: on VoxCeleb2's turned faces a region of 0.8 changed the landmarks and 0.9 did not, so 2.0 leaves
#: more than twice the reach measured
GRAY_HALF = 2.0


class Frame:
    """One frame's pixels for the tracker: RGB as decoded (or None) or a decoded
    :class:`~talkdata.media.decode.Picture`, grayscale given or converted on demand, whole or
    (:meth:`gray_near`) only around a face, so that HD frames are not converted whole on every frame."""

    def __init__(self, gray: np.ndarray | None, rgb: np.ndarray | None, picture: Picture | None = None):
        if gray is None and rgb is None and picture is None:
            raise ValueError("a frame needs gray, rgb or picture pixels")
        self._rgb = rgb
        self._picture = picture
        self._gray = gray
        self.shape = (gray if gray is not None else rgb).shape[:2] if picture is None else picture.shape

    @property
    def rgb(self) -> np.ndarray | None:
        if self._rgb is None and self._picture is not None:
            self._rgb = self._picture.rgb()
        return self._rgb

    @property
    def gray(self) -> np.ndarray:
        if self._gray is None:
            self._gray = cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)
        return self._gray

    def _rgb_region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        if self._rgb is None and self._picture is not None:
            return self._picture.rgb_region(x0, y0, x1, y1)
        return self.rgb[y0:y1, x0:x1]

    def near(self, reach: tuple[int, int, int, int], gray: bool) -> tuple[np.ndarray, tuple[int, int]]:
        """The pixels within ``reach`` (clamped to the frame; grayscale or RGB) and their origin; the whole
        frame when that is most of it. The detector's window search reads the same pixels from either
        (it replicates the frame's edges, which are the region's edges where the reach leaves the frame)."""
        h, w = self.shape
        x0, y0 = min(max(reach[0], 0), w) & ~1, min(max(reach[1], 0), h) & ~1
        x1, y1 = max(min(reach[2], w), x0), max(min(reach[3], h), y0)
        if x1 - x0 < 2 or y1 - y0 < 2 or 2 * (x1 - x0) * (y1 - y0) >= w * h:
            return (self.gray if gray else self.rgb), (0, 0)
        if gray:
            if self._gray is not None:
                return self._gray[y0:y1, x0:x1], (x0, y0)
            return cv2.cvtColor(self._rgb_region(x0, y0, x1, y1), cv2.COLOR_RGB2GRAY), (x0, y0)
        return self._rgb_region(x0, y0, x1, y1), (x0, y0)

    def gray_near(self, box: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Grayscale pixels within ``GRAY_HALF`` box sizes of ``box``'s centre and their origin
        ``(x, y)`` in the frame (even, so that rounding a box shifted by it is unchanged); the whole
        frame when that region is most of it or the frame's gray is at hand."""
        h, w = self.shape
        if self._gray is None:
            half = GRAY_HALF * max(box[2] - box[0], box[3] - box[1], 1.0)
            cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
            x0 = min(max(int(np.floor(cx - half)), 0), w) & ~1
            y0 = min(max(int(np.floor(cy - half)), 0), h) & ~1
            x1, y1 = max(min(int(np.ceil(cx + half)), w), x0), max(min(int(np.ceil(cy + half)), h), y0)
            if x1 - x0 >= 2 and y1 - y0 >= 2 and 2 * (x1 - x0) * (y1 - y0) < w * h:
                return cv2.cvtColor(self._rgb_region(x0, y0, x1, y1), cv2.COLOR_RGB2GRAY), (x0, y0)
        return self.gray, (0, 0)


@dataclass
class TrackState:
    box_from_landmarks: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0, 1.0]))
    last_box: np.ndarray | None = None
    last_landmarks: np.ndarray | None = None
    roll: float = 0.0  # in-plane tilt of the tracked face (0 when below MIN_ROLL)


def landmark_box(points: np.ndarray) -> np.ndarray:
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])


def eye_roll(points: np.ndarray) -> float:
    """Tilt of the eye line in degrees (rotating the image by it, cv2 convention, levels the eyes)."""
    right, left = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    return float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))


def effective_roll(roll: float) -> float:
    return roll if abs(roll) >= MIN_ROLL else 0.0


def _levelling(points: np.ndarray, roll: float) -> np.ndarray | None:
    """The rotation about the landmarks' centre that levels a face tilted by ``roll`` (None: upright)."""
    if not roll:
        return None
    return rotation_about(tuple(points.mean(axis=0)), roll)


def calibrate(det_box: np.ndarray, points: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Express a detector box relative to the landmarks' box: (dx0, dy0, dx1, dy1) in box units,
    both taken upright (levelled by ``roll``)."""
    m = _levelling(points, roll)
    if m is not None:
        points = map_points(m, points)
        centre = map_points(m, ((det_box[:2] + det_box[2:]) / 2.0)[None])[0]
        half = (det_box[2:] - det_box[:2]) / 2.0
        det_box = np.r_[centre - half, centre + half]
    lb = landmark_box(points)
    w, h = max(lb[2] - lb[0], 1.0), max(lb[3] - lb[1], 1.0)
    return np.array([(det_box[0] - lb[0]) / w, (det_box[1] - lb[1]) / h, (det_box[2] - lb[2]) / w, (det_box[3] - lb[3]) / h])


def box_from_landmarks(points: np.ndarray, calibration: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """The face's upright box (centred on the face, axis-aligned in the levelled frame)."""
    m = _levelling(points, roll)
    lb = landmark_box(points if m is None else map_points(m, points))
    w, h = lb[2] - lb[0], lb[3] - lb[1]
    box = lb + calibration * np.array([w, h, w, h])
    if m is None:
        return box
    centre = map_points(invert_affine(m), ((box[:2] + box[2:]) / 2.0)[None])[0]
    half = (box[2:] - box[:2]) / 2.0
    return np.r_[centre - half, centre + half]


def predict_levelled(predictor, frame: Frame, box: np.ndarray, roll: float) -> np.ndarray:
    """Landmarks of the face in ``box`` tilted by ``roll``: the predictor runs on a levelled patch
    (two box sizes wide) and its points are rotated back into the frame. An upright face is given to
    a grayscale predictor as the gray region around it (:meth:`Frame.gray_near`), which gives the
    same points as the whole frame."""
    gray_only = getattr(predictor, "gray_only", False)
    if not roll:
        if not gray_only:
            return predictor.predict(frame.gray, frame.rgb, box)
        patch, (x0, y0) = frame.gray_near(box)
        if not (x0 or y0):
            return predictor.predict(patch, None, box)
        return predictor.predict(patch, None, box - np.array([x0, y0, x0, y0], dtype=np.float64)) + np.array([x0, y0])
    gray, rgb = frame.gray, None if gray_only else frame.rgb
    size = max(box[2] - box[0], box[3] - box[1], 1.0)
    centre = (box[:2] + box[2:]) / 2.0
    side = int(np.ceil(2.0 * size))
    origin = centre - side / 2.0
    m = rotation_about(tuple(centre), roll, tuple(origin))
    gray_patch = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rgb_patch = None if rgb is None else cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_LINEAR,
                                                        borderMode=cv2.BORDER_REPLICATE)
    local = box - np.r_[origin, origin]
    points = predictor.predict(gray_patch, rgb_patch, local)
    return map_points(invert_affine(m), points)


def choose_first_face(boxes: list[np.ndarray], frame_shape: tuple[int, int]) -> int:
    """Index of the largest face; among faces of similar size (within 20 %), the one nearest the centre."""
    h, w = frame_shape
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes])
    candidates = [i for i, a in enumerate(areas) if a >= 0.8 * areas.max()]
    centre = np.array([w / 2.0, h / 2.0])
    return min(candidates, key=lambda i: float(np.linalg.norm((boxes[i][:2] + boxes[i][2:]) / 2.0 - centre)))


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
        """``detector``: a :class:`~talkdata.face.detect.FaceDetector`. ``hint``: where the corpus
        says the face is, ``[x0, y0, x1, y1]`` as fractions of the frame (VoxCeleb2's face-track
        crops, TalkingHead-1KH tubes). It seeds the track when the detector finds nothing, and a
        tracked face that overlaps it counts as confirmed."""
        self.hint = hint
        self.detector = detector
        self.predictor = predictor
        self.detect_every = detect_every
        self.redetect_iou = redetect_iou
        self.max_unconfirmed = max_unconfirmed
        self._confirmed_at = 0  # last frame where a detection confirmed the track
        self._misses = 0  # consecutive key frames whose detection did not confirm the track
        self._full_search_at: int | None = None  # last frame searched at every scale and tilt
        self.state = TrackState()
        self.landmarks: list[np.ndarray | None] = []
        self.boxes: list[np.ndarray | None] = []
        self.n_detector_runs = 0
        self.n_detections = 0
        self.n_hint_seeds = 0

    def _detect(self, frame: Frame, t: int, near: np.ndarray | None = None) -> list[Detection]:
        self.n_detector_runs += 1
        if near is not None:
            # only the pixels the window search reads, so that an HD frame is not converted whole
            image, (x0, y0) = frame.near(self.detector.near_reach(near), self.detector.backend.gray)
            shift = np.array([x0, y0, x0, y0], dtype=np.float64)
            found = self.detector.detect_near(image, near - shift, self.state.roll)
            found = [Detection(d.box + shift, d.roll, d.score) for d in found]
        else:
            image = self.detector.pick(frame.gray if self.detector.backend.gray else None, frame.rgb)
            # searching every scale and tilt of a large frame is the expensive call: while no face is
            # tracked it runs on key frames, the coarsest upright level on the frames between
            fine = self._full_search_at is None or t - self._full_search_at >= self.detect_every
            if fine:
                self._full_search_at = t
            found = self.detector.detect(image, fine=fine)
        self.n_detections += bool(found)
        return found

    def _hint_box(self, shape: tuple[int, int]) -> np.ndarray | None:
        if self.hint is None:
            return None
        h, w = shape
        return np.asarray(self.hint, dtype=np.float64) * np.array([w, h, w, h])

    def _seed(self, frame: Frame, found: Detection) -> np.ndarray:
        points = predict_levelled(self.predictor, frame, found.box, effective_roll(found.roll))
        self.state.roll = effective_roll(eye_roll(points))
        self.state.box_from_landmarks = calibrate(found.box, points, self.state.roll)
        return points

    def step(self, gray: np.ndarray | None, rgb: np.ndarray | None = None, picture: Picture | None = None) -> None:
        """One frame: ``rgb`` when the detector or the landmark backend reads colour; ``gray`` when
        at hand (None: converted from ``rgb`` where the detector or the predictor needs it); or the
        decoded ``picture``, converted only where something reads it (the whole frame on key frames
        and for tilted faces, the region around an upright face otherwise)."""
        t = len(self.landmarks)
        state = self.state
        frame = Frame(gray, rgb, picture)
        points = None
        box = None
        if state.last_landmarks is None:
            found = self._detect(frame, t)
            if not found and self.hint is not None:
                found = [Detection(self._hint_box(frame.shape))]
                self.n_hint_seeds += 1
            if found:
                boxes = [d.box for d in found]
                best = choose_first_face(boxes, frame.shape) if state.last_box is None else max(
                    range(len(boxes)), key=lambda i: box_iou(boxes[i], state.last_box))
                box = found[best].box
                points = self._seed(frame, found[best])
                self._confirmed_at, self._misses = t, 0
        else:
            box = box_from_landmarks(state.last_landmarks, state.box_from_landmarks, state.roll)
            if t % self.detect_every == 0:
                found = self._detect(frame, t, near=box)  # only a face overlapping the track matters here
                best = max(found, key=lambda d: box_iou(d.box, box)) if found else None
                if best is None or box_iou(best.box, box) < self.redetect_iou:
                    found = self._detect(frame, t)  # the window can miss what the whole frame shows
                    best = max(found, key=lambda d: box_iou(d.box, box)) if found else None
                if best is not None and box_iou(best.box, box) >= self.redetect_iou:
                    box = best.box
                    points = self._seed(frame, best)
                    self._confirmed_at, self._misses = t, 0
                elif self.hint is not None and box_iou(self._hint_box(frame.shape), box) >= self.redetect_iou:
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
                points = predict_levelled(self.predictor, frame, box, state.roll)
                if _jumped(landmark_box(state.last_landmarks), landmark_box(points)):
                    points, box = None, None
                else:
                    state.roll = effective_roll(eye_roll(points))
        if points is not None:
            h, w = frame.shape
            lb = landmark_box(points)
            inside = (min(lb[2], w) - max(lb[0], 0)) * (min(lb[3], h) - max(lb[1], 0))
            if inside < 0.5 * (lb[2] - lb[0]) * (lb[3] - lb[1]):
                points, box = None, None  # the face left the frame
            elif max(lb[2] - lb[0], lb[3] - lb[1]) < 0.5 * self.detector.min_face_size:
                points, box = None, None  # landmarks shrunk onto nothing (a track lost on a turned face)
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
