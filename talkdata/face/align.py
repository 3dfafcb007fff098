"""Similarity alignment of faces to the template, smoothed over time, and crop rendering.

Per frame, a similarity transform (rotation, uniform scale, translation; no shear, no reflection)
maps the stable landmarks (default: nose tip 33 and the four eye corners 36, 39, 42, 45, as SDA and
face-processor use) onto the template placed in the crop. The stable points are first smoothed
over time with a centred moving average (the window shrinks symmetrically at the clip's ends), so
that crops do not jitter with landmark noise while mouth motion is untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping ``source`` (N,2) onto ``target``; (2,3)."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    src, dst = source - mu_s, target - mu_t
    covariance = dst.T @ src / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    variance = (src**2).sum() / len(source)
    scale = (singular * np.diag(sign)).sum() / variance if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_t - scale * rotation @ mu_s
    return matrix


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply (2,3) ``matrix`` to (..., 2) points, or (T,2,3) matrices to (T, N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    if matrix.ndim == 3:
        return np.einsum("tij,tnj->tni", matrix[:, :, :2], points) + matrix[:, None, :, 2]
    return points @ matrix[:, :2].T + matrix[:, 2]


def smooth_centred(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over axis 0; near the ends the window shrinks symmetrically."""
    if window <= 1 or len(values) < 2:
        return values.copy()
    half = window // 2
    n = len(values)
    cumulative = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    out = np.empty_like(values, dtype=np.float64)
    for t in range(n):
        reach = min(half, t, n - 1 - t)
        out[t] = (cumulative[t + reach + 1] - cumulative[t - reach]) / (2 * reach + 1)
    return out


def compute_affines(landmarks: np.ndarray, template: np.ndarray, stable_points: list[int], window: int) -> np.ndarray:
    """(T,2,3) source-to-crop transforms from (T,68,2) source landmarks."""
    stable = smooth_centred(landmarks[:, stable_points], window)
    target = template[stable_points]
    return np.stack([similarity_transform(frame, target) for frame in stable])


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int, border: str = "replicate") -> np.ndarray:
    """The ``size`` x ``size`` crop of ``image`` under ``matrix`` (bilinear)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=BORDERS[border])

