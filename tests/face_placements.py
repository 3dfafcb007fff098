"""A labelled set for face detection and tracking, made from the real sample clips.

Each :class:`Placement` puts frames of a native clip (GRID, CREMA-D, the VoxCeleb2-style crops of
``tests/data``) on a plain canvas (1280x720, 1920x1080 or 3840x2160) with a known similarity
transform: scaled so that the face is ``face_px`` wide, tilted in-plane by ``tilt`` degrees,
optionally mirrored and blurred. The ground truth is the placement itself: the native clip's face
box and landmarks (tracked on the native frames, where the face is large and upright) moved by the
transform. Nothing of the code under test decides the expected values except the native landmarks,
which the tests check separately against a fresh dlib run.

Import as ``import face_placements`` (``tests/conftest.py`` puts ``tests/`` on the path; the
benchmarks add it themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).parent / "data"
CLIPS = {
    "grid": DATA / "grid" / "s1" / "bbaf2n.mpg",
    "crema": DATA / "crema_d" / "VideoFlash" / "1001_DFA_ANG_XX.flv",
    "vox473": DATA / "voxceleb2_like" / "00473.mp4",
    "vox2": DATA / "voxceleb2_like" / "00002.mp4",  # turned faces in its first frames
}
CANVASES = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
BACKGROUND = 118  # plain mid-gray canvas


@dataclass(frozen=True)
class Placement:
    clip: str
    canvas: str
    face_px: float  # face (HOG-convention box) width on the canvas
    centre: tuple[float, float] = (0.5, 0.5)  # where the face centre goes, fractions of the canvas
    tilt: float = 0.0  # in-plane rotation, degrees counter-clockwise (cv2 convention)
    mirror: bool = False
    blur: float = 0.0  # Gaussian sigma in canvas pixels

    @property
    def name(self) -> str:
        extra = f"{'_tilt%+d' % self.tilt if self.tilt else ''}{'_mirror' if self.mirror else ''}" \
                f"{'_blur%g' % self.blur if self.blur else ''}"
        return f"{self.clip}_{self.canvas}_{int(self.face_px)}px{extra}"


@lru_cache(maxsize=8)
def native_frames(clip: str, n: int) -> tuple[np.ndarray, ...]:
    from talkdata.media.decode import iter_frames

    frames = []
    for rgb in iter_frames(str(CLIPS[clip]), 25.0, "rgb24"):
        frames.append(rgb)
        if len(frames) == n:
            break
    return tuple(frames)


@lru_cache(maxsize=8)
def native_track(clip: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks ``(n, 68, 2)``, boxes ``(n, 4)`` and found ``(n,)`` on the native frames (HOG + dlib,
    the detector the native clips were built with)."""
    from talkdata.face.detect import FaceDetector, detector_backend
    from talkdata.face.landmarks import landmark_backend
    from talkdata.face.track import FaceTracker

    tracker = FaceTracker(FaceDetector(detector_backend("hog"), 32.0), landmark_backend("dlib"))
    for rgb in native_frames(clip, n):
        tracker.step(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), rgb)
    return tracker.result()


def native_face_width(clip: str, n: int) -> float:
    _, boxes, found = native_track(clip, n)
    return float(np.median(boxes[found, 2] - boxes[found, 0]))


def transform(p: Placement, n: int) -> np.ndarray:
    """2x3 affine from native-frame pixels to canvas pixels."""
    h, w = native_frames(p.clip, n)[0].shape[:2]
    _, boxes, found = native_track(p.clip, n)
    face_centre = np.median((boxes[found, :2] + boxes[found, 2:]) / 2.0, axis=0)
    scale = p.face_px / native_face_width(p.clip, n)
    cw, ch = CANVASES[p.canvas]
    m = cv2.getRotationMatrix2D((float(face_centre[0]), float(face_centre[1])), p.tilt, scale)
    if p.mirror:  # mirror about the face centre first
        flip = np.array([[-1.0, 0.0, 2.0 * face_centre[0]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        m = (np.vstack([m, [0, 0, 1]]) @ flip)[:2]
    m[:, 2] += np.array([p.centre[0] * cw, p.centre[1] * ch]) - face_centre
    return m


def canvas_frames(p: Placement, n: int):
    """The placed frames (RGB uint8), one at a time (4K frames are 25 MB each)."""
    m = transform(p, n)
    size = CANVASES[p.canvas]
    for rgb in native_frames(p.clip, n):
        out = cv2.warpAffine(rgb, m, size, flags=cv2.INTER_AREA if m[0, 0] ** 2 + m[0, 1] ** 2 < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(BACKGROUND,) * 3)
        if p.blur:
            out = cv2.GaussianBlur(out, (0, 0), p.blur)
        yield out


MIRROR_68 = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
                     + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48]
                     + [59, 58, 57, 56, 55] + [64, 63, 62, 61, 60] + [67, 66, 65])


def truth(p: Placement, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected landmarks ``(n, 68, 2)`` and face centres ``(n, 2)`` on the canvas, and which native
    frames had a face."""
    landmarks, boxes, found = native_track(p.clip, n)
    m = transform(p, n)
    moved = landmarks @ m[:, :2].T + m[:, 2]
    if p.mirror:  # the subject's left becomes the right: renumber the points
        moved = moved[:, MIRROR_68]
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2.0) @ m[:, :2].T + m[:, 2]
    return moved, centres, found


def nme(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean point error per frame over the inter-ocular distance (outer eye corners 36, 45)."""
    iod = np.linalg.norm(reference[:, 36] - reference[:, 45], axis=1)
    return np.linalg.norm(points - reference, axis=2).mean(axis=1) / iod


#: the labelled set: 720p / 1080p / 4K, faces 40-400 px, tilts of +-30 degrees, mirror, blur, turned faces
LABELLED = [
    Placement("vox473", "720p", 110),
    Placement("vox473", "1080p", 55, (0.3, 0.6)),
    Placement("vox473", "4k", 280, (0.7, 0.4)),
    Placement("vox473", "4k", 40, (0.45, 0.55)),
    Placement("vox473", "1080p", 400),
    Placement("vox473", "720p", 110, tilt=30),
    Placement("vox473", "1080p", 150, tilt=-30),
    Placement("vox473", "720p", 110, mirror=True),
    Placement("vox473", "1080p", 120, blur=2.0),
    Placement("vox2", "720p", 110),
    Placement("grid", "720p", 110),
    Placement("grid", "1080p", 220),
    Placement("crema", "720p", 110, (0.6, 0.45)),
    Placement("crema", "4k", 110, tilt=20),
]
