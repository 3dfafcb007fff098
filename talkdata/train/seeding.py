"""Determinism of a run: seeding every RNG with deterministic kernels, and capturing / restoring the
RNG states (Python, NumPy, torch, CUDA) that a checkpoint carries."""

from __future__ import annotations

import os
import random

import numpy as np

from .device import require_torch


def seed_everything(seed: int, device, threads: int = 0) -> None:
    """Same seed, same device, same losses: seeded RNGs and deterministic kernels (``threads`` > 0
    also fixes torch's CPU thread count, which helps small models on busy machines)."""
    torch = require_torch()
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def rng_state(device) -> dict:
    torch = require_torch()
    version, state, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    out = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
           "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                     "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                     "gauss": float(numpy_state["gauss"])}}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict, device) -> None:
    torch = require_torch()
    torch.set_rng_state(state["torch"])
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
