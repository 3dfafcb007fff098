"""Dataset statistics: the landmark shape model, fitted after every clip is processed.

Frames are procrustes-normalised against the template, the speaker's identity is removed per clip
(``norm_t - norm_ref + template``, reference frame from ``shape.reference``), and a PCA basis is
fitted on a deterministic sample of those frames from the fitting split (``shape.fit_split``,
default train, so that test data never shapes the basis). Every sample then gets ``lmk_norm.npy``
and ``pca.npy`` from that basis, or from one given with ``build --shape-model``.
"""

from __future__ import annotations

import numpy as np

from ..face.shape import (
    ShapeModel,
    fit_pca,
    fit_region_pca,
    normalize_procrustes,
    project,
    remove_identity,
    sample_frames,
    standardize,
)
from ..face.template import mean_face_2d


def identity_removed(landmarks: np.ndarray, model_template_std: np.ndarray, template: np.ndarray,
                     reference: str, basis=None) -> np.ndarray:
    norm = normalize_procrustes(landmarks, template)
    return remove_identity(norm, model_template_std, reference, basis)


def fit_shape_model(clips: list[np.ndarray], settings: dict) -> ShapeModel:
    """Fit on (T_i, 68, 2) source landmarks of the fitting clips, given in key order."""
    template = mean_face_2d()
    template_std = standardize(template)
    frames = [identity_removed(c, template_std, template, settings["reference"]) for c in clips]
    sample = sample_frames(frames, settings["max_frames"], settings["seed"])
    k = min(settings["n_components"], 136, len(sample))
    basis = fit_pca(sample, k, settings["scale"])
    regions = {name: fit_region_pca(sample, name, min(settings["n_components"], len(sample)), settings["scale"])
               for name in settings["regions"]}
    fit = {key: settings[key] for key in ("reference", "project_identity", "n_components", "scale", "max_frames",
                                          "seed", "fit_split", "regions")}
    fit["frames_sampled"] = int(len(sample))
    fit["clips"] = len(clips)
    return ShapeModel(template=template, template_std=template_std, basis=basis, region_bases=regions, settings=fit)


def shape_fields(landmarks: np.ndarray, model: ShapeModel) -> tuple[np.ndarray, np.ndarray]:
    """``lmk_norm`` (T,68,2) float32 and ``pca`` (T,K) float32 of one clip."""
    settings = model.settings
    basis = model.basis if settings.get("project_identity") else None
    norm = identity_removed(landmarks, model.template_std, model.template, settings.get("reference", "last"), basis)
    return norm.astype(np.float32), project(norm, model.basis)
