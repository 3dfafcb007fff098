"""68-point landmark backends.

Every backend has the same interface: ``predict(gray, rgb, box) -> (68, 2) float64`` in source
pixels, given a face box ``(x0, y0, x1, y1)``. The tracker supplies the boxes, so backends never
detect faces themselves.

- ``dlib`` (default, offline): dlib's ``shape_predictor_68_face_landmarks.dat``, loaded by path from
  the ``face_recognition_models`` package (its ``__init__`` imports ``pkg_resources``, so it is
  located with ``importlib.util.find_spec`` and never imported), and evaluated by
  :mod:`talkdata.face.ert`, which gives dlib's points at about half of dlib's cost.
- ``fan``: the 2D-FAN network of ``face-alignment`` (Bulat & Tzimiropoulos, 2017), optional extra
  ``talkdata[fan]``. Its weights are read from the torch hub cache; the build's preflight downloads
  and verifies them first when they are missing (:mod:`talkdata.acquire.models`); this module only takes the
  path and fails with a message naming the file and where to put it.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import UserError

DLIB_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"


def dlib_model_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "dlib landmark model not found: install the package 'face_recognition_models' "
            "(pip install face_recognition_models)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_MODEL_NAME
    if not path.is_file():
        raise UserError(f"dlib landmark model missing: {path} (reinstall face_recognition_models)")
    return path


class DlibLandmarks:
    """dlib's 68-point model, evaluated by :mod:`talkdata.face.ert` (the same points as dlib, about 2x faster)."""

    name = "dlib"
    gray_only = True  # reads ``gray`` only: the tracker may give it the gray region around the face

    def __init__(self) -> None:
        from . import ert

        self._ert = ert
        self._model = ert.load(dlib_model_path())

    def predict(self, gray: np.ndarray, rgb: np.ndarray | None, box: np.ndarray) -> np.ndarray:
        return self._ert.predict(self._model, gray, tuple(int(round(v)) for v in box))


#: file names face-alignment gives the 2D-FAN-4 weights in the torch hub cache (torch >= 1.6 first, the
#: one :mod:`talkdata.acquire.models` downloads; then 1.3/1.4 and torch 1.5)
FAN_WEIGHTS = ("2DFAN4_1.6-c827573f02.zip", "2DFAN4-cd938726ad.zip", "2DFAN4_1.5-a60332318a.zip")


def torch_hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def fan_weights_path() -> Path:
    folder = torch_hub_checkpoints()
    for name in FAN_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise UserError(
        f"FAN weights not found: {folder / FAN_WEIGHTS[0]} (a build downloads them when the network is "
        f"reachable; otherwise copy {FAN_WEIGHTS[0]} from a machine with internet into {folder} or set TORCH_HOME)"
    )


class FanLandmarks:
    """2D-FAN-4 landmarks (the TorchScript weights face-alignment uses), run on tracker boxes.

    The crop and heat-map decoding are face-alignment's own (``face_alignment.utils.crop`` and
    ``get_preds_fromhm``) with its box-to-centre/scale rule, so results match
    ``FaceAlignment.get_landmarks_from_image(image, detected_faces=[box])``; only its face detector,
    which would download more weights, is not constructed.
    """

    name = "fan"

    def __init__(self, device: str = "cpu") -> None:
        try:
            import torch
            from face_alignment import utils as fa_utils
        except ImportError as err:
            raise UserError(
                f"face.backend=fan needs the optional extra: pip install 'talkdata[fan]' ({err})"
            ) from None
        weights = fan_weights_path()
        self._torch = torch
        self._utils = fa_utils
        self._device = device
        self._net = torch.jit.load(str(weights), map_location=device).eval()

    def predict(self, gray: np.ndarray, rgb: np.ndarray | None, box: np.ndarray) -> np.ndarray:
        torch = self._torch
        image = rgb if rgb is not None else np.repeat(gray[:, :, None], 3, axis=2)
        x0, y0, x1, y1 = (float(v) for v in box)
        center = torch.tensor([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0])
        center[1] = center[1] - (y1 - y0) * 0.12
        scale = (x1 - x0 + y1 - y0) / 195.0
        patch = self._utils.crop(image, center, scale)
        tensor = torch.from_numpy(patch.transpose((2, 0, 1))).float().div(255.0).unsqueeze(0).to(self._device)
        with torch.no_grad():
            heatmaps = self._net(tensor).detach().cpu().numpy()
        _, points, _ = self._utils.get_preds_fromhm(heatmaps, center.numpy(), scale)
        return np.asarray(points, dtype=np.float64).reshape(68, 2)


@lru_cache(maxsize=4)
def landmark_backend(name: str, device: str = "cpu"):
    """One backend instance per process (models load once per dask worker)."""
    if name == "dlib":
        return DlibLandmarks()
    if name == "fan":
        return FanLandmarks(device)
    raise UserError(f"unknown landmark backend {name!r} (choose dlib or fan)")
