"""Head pose from 2D landmarks: ``cv2.solvePnP`` against the 3D mean face (see ``template.py``).

Camera: pinhole at the frame centre, focal length ``focal_scale * max(width, height)`` pixels, no
distortion. Model and camera axes: x right, y down, z away from the camera; the model's unit is
scaled so that the face is 140 mm wide (cheek to cheek at eye level), so translations are in mm.

Angles (degrees), from R = Rz(roll') . Ry(yaw') . Rx(pitch') of the model-to-camera rotation:

- ``yaw``: positive when the face turns towards the image's right (the subject's left);
- ``pitch``: positive when the face tilts up;
- ``roll``: positive when the face rotates counter-clockwise in the image (the direction of a
  positive angle in ``cv2.getRotationMatrix2D``);
- ``tx, ty, tz``: position of the model origin (face centre) in camera coordinates, mm.

A frontal, upright face has yaw = pitch = roll = 0; mirroring the image negates yaw and roll.
"""

from __future__ import annotations

import cv2
import numpy as np

from .template import mean_face_3d

FACE_WIDTH_MM = 140.0


def model_points_mm() -> np.ndarray:
    points = mean_face_3d().copy()
    width = points[16, 0] - points[0, 0]
    return points * (FACE_WIDTH_MM / width)


def camera_matrix(width: int, height: int, focal_scale: float = 1.0) -> np.ndarray:
    focal = focal_scale * max(width, height)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def rotation_to_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees in the conventions of this module."""
    beta = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    alpha = np.arctan2(rotation[2, 1], rotation[2, 2])
    gamma = np.arctan2(rotation[1, 0], rotation[0, 0])
    return float(-np.degrees(beta)), float(-np.degrees(alpha)), float(-np.degrees(gamma))


def estimate_pose(landmarks: np.ndarray, width: int, height: int, focal_scale: float = 1.0) -> np.ndarray:
    """(T, 6) float32: yaw, pitch, roll (deg), tx, ty, tz (mm) for (T, 68, 2) source landmarks."""
    model = model_points_mm()
    camera = camera_matrix(width, height, focal_scale)
    distortion = np.zeros(4)
    out = np.zeros((len(landmarks), 6), dtype=np.float32)
    rvec = tvec = None
    for t, points in enumerate(np.asarray(landmarks, dtype=np.float64)):
        if rvec is None:
            ok, rvec, tvec = cv2.solvePnP(model, points, camera, distortion, flags=cv2.SOLVEPNP_EPNP)
            ok, rvec, tvec = cv2.solvePnP(model, points, camera, distortion, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
        else:
            ok, rvec, tvec = cv2.solvePnP(model, points, camera, distortion, rvec.copy(), tvec.copy(), True,
                                          cv2.SOLVEPNP_ITERATIVE)
        rotation, _ = cv2.Rodrigues(rvec)
        out[t, :3] = rotation_to_angles(rotation)
        out[t, 3:] = tvec.reshape(3)
    return out
