"""The canonical 68-point face template (2D for alignment, 3D for head pose).

``data/mean_face_68.csv`` holds one row per iBUG point: ``x, y`` of the template and ``z``, its depth.

Provenance (regenerate with ``python -m talkdata.face.template tests/data``):

- ``x, y``: generalised procrustes mean of the dlib 68-point landmarks of every frame of the real
  sample clips and images in ``tests/data`` (GRID, CREMA-D, VoxCeleb2-style clips, face images),
  made exactly left-right symmetric by averaging with its mirror image, then normalised so that the
  points span ``x`` in [-0.5, 0.5] with their bounding box centred on the origin (+x right, +y down).
- ``z``: depth of each point towards the camera (negative = closer, same unit as ``x``), set from
  anthropometric proportions (nose tip 0.25 face widths in front of the eye corners, cheek contour
  0.35 behind, lips 0.02-0.12 in front). It is an approximation: head-pose angles computed with it
  move correctly (an in-plane rotation of the image changes roll by the same angle; a mirror image
  flips yaw and roll), while absolute yaw and pitch can be off by a few degrees for extreme poses.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources

import numpy as np

from .points import MIRROR

logger = logging.getLogger(__name__)

#: depth of each point in face widths, towards the camera positive (converted to camera z < 0 on load)
_PROTRUSION = {
    **{i: v for i, v in zip(range(17), [-0.35, -0.33, -0.29, -0.24, -0.18, -0.11, -0.05, 0.0, 0.03,
                                          0.0, -0.05, -0.11, -0.18, -0.24, -0.29, -0.33, -0.35])},
    **{i: v for i, v in zip(range(17, 27), [-0.06, -0.01, 0.02, 0.04, 0.05, 0.05, 0.04, 0.02, -0.01, -0.06])},
    27: 0.04, 28: 0.10, 29: 0.17, 30: 0.25, 31: 0.11, 32: 0.15, 33: 0.18, 34: 0.15, 35: 0.11,
    36: -0.06, 37: -0.01, 38: -0.01, 39: 0.0, 40: -0.01, 41: -0.01,
    42: 0.0, 43: -0.01, 44: -0.01, 45: -0.06, 46: -0.01, 47: -0.01,
    48: 0.02, 49: 0.07, 50: 0.10, 51: 0.12, 52: 0.10, 53: 0.07, 54: 0.02,
    55: 0.06, 56: 0.09, 57: 0.10, 58: 0.09, 59: 0.06,
    60: 0.03, 61: 0.08, 62: 0.09, 63: 0.08, 64: 0.03, 65: 0.07, 66: 0.08, 67: 0.07,
}


@lru_cache(maxsize=1)
def mean_face_3d() -> np.ndarray:
    """(68, 3) template: x right, y down, z away from the camera (nose tip has the smallest z)."""
    text = resources.files("talkdata.face").joinpath("data/mean_face_68.csv").read_text()
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#") and not line.startswith("x")]
    points = np.array([[float(v) for v in row] for row in rows])
    if points.shape != (68, 3):
        raise ValueError(f"mean_face_68.csv must have 68 rows of x,y,z, found {points.shape}")
    return points


def mean_face_2d() -> np.ndarray:
    """(68, 2) template in normalised units (x spans [-0.5, 0.5], box centred at the origin)."""
    return mean_face_3d()[:, :2].copy()


def crop_template(size: int, face_width: float, center_y: float) -> np.ndarray:
    """Template points in the pixels of an ``size`` x ``size`` crop."""
    points = mean_face_2d() * (face_width * size)
    points[:, 0] += 0.5 * size
    points[:, 1] += center_y * size
    return points


def _similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    from .align import apply_affine, similarity_transform

    return apply_affine(source, similarity_transform(source, target))


def fit_mean_shape(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Generalised procrustes mean of (N, 68, 2) shapes, symmetrised and normalised as documented."""
    mean = shapes[0] - shapes[0].mean(0)
    for _ in range(iterations):
        aligned = np.stack([_similarity_align(s, mean) for s in shapes])
        mean = aligned.mean(0)
        mean = (mean - mean.mean(0)) / np.linalg.norm(mean - mean.mean(0))
    mirrored = mean[MIRROR] * np.array([-1.0, 1.0])
    mirrored = _similarity_align(mirrored, mean)
    symmetric = (mean + mirrored) / 2.0
    # put the eye line horizontal and the axis of symmetry at x = 0
    symmetric = symmetric - symmetric.mean(0)
    eyes = symmetric[45] - symmetric[36]
    angle = np.arctan2(eyes[1], eyes[0])
    c, s = np.cos(-angle), np.sin(-angle)
    symmetric = symmetric @ np.array([[c, s], [-s, c]])
    symmetric[:, 0] -= (symmetric[:, 0] + symmetric[MIRROR, 0]).mean() / 2.0
    low, high = symmetric.min(0), symmetric.max(0)
    return (symmetric - (low + high) / 2.0) / (high[0] - low[0])


def _sample_landmarks(folder: str) -> np.ndarray:
    """dlib landmarks of every frame of the media under ``folder`` (for regenerating the template)."""
    from pathlib import Path

    import cv2

    from .detect import FaceDetector, detector_backend
    from .landmarks import landmark_backend
    from ..media.decode import iter_frames

    detector, predictor = FaceDetector(detector_backend("hog"), 32.0), landmark_backend("dlib")
    shapes = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() in (".jpg", ".png"):
            images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)]
        elif path.suffix.lower() in (".mpg", ".flv", ".mp4"):
            images = list(iter_frames(path, 25.0, fmt="gray"))
        else:
            continue
        for gray in images:
            found = detector.detect(gray)
            if found:
                shapes.append(predictor.predict(gray, None, found[0].box))
    return np.stack(shapes)


def main(folder: str) -> None:
    shapes = _sample_landmarks(folder)
    mean = fit_mean_shape(shapes)
    depth = -np.array([_PROTRUSION[i] for i in range(68)])
    target = resources.files("talkdata.face").joinpath("data/mean_face_68.csv")
    lines = [f"# dlib 68-point mean face from {len(shapes)} real frames; see talkdata/face/template.py", "x,y,z"]
    lines += [f"{x:.6f},{y:.6f},{z:.6f}" for (x, y), z in zip(mean, depth)]
    with open(str(target), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    logger.info(f"wrote {target} from {len(shapes)} frames")


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data")
