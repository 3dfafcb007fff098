"""Landmark shape normalisation and PCA shape model (ATVG-style, Chen et al. CVPR 2019).

Pipeline for one clip of 68-point iBUG landmarks ``L`` of shape ``(T, 68, 2)``:

1. :func:`normalize_procrustes` - per frame ordinary Procrustes onto a template, exactly as
   ``scipy.spatial.procrustes(template, L[t])[1]`` (vectorised over frames).
2. :func:`remove_identity` - ``norm_t - norm_ref + template_std``: keeps the motion of the
   clip, replaces the speaker's face shape by the template's.
3. :func:`project` onto a PCA basis fitted with :func:`fit_pca` / :func:`fit_region_pca`
   (ATVG: ``scale=5`` and 6 components).

Conventions
-----------
* Coordinates are image coordinates: ``x`` to the right, ``y`` DOWN, in ``[..., 0]`` and
  ``[..., 1]``. Procrustes keeps that convention (it only rotates/scales/translates).
* A normalised shape is centred (mean point at the origin). The *standardised template*
  (:func:`standardize`) has unit Frobenius norm; a normalised frame has norm ``s <= 1``, the
  Procrustes scale (sum of singular values), exactly as scipy returns it.
* A 136-d shape vector is the interleaved flattening ``x0, y0, x1, y1, ...``, i.e.
  ``shape.reshape(T, 136)`` of a ``(T, 68, 2)`` array (``2 * len(points)`` for a region).

Everything here is pure numpy; the only I/O is :func:`save_shape_model` /
:func:`load_shape_model`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np

from ..files import write_atomic

__all__ = [
    "REGIONS",
    "ShapeBasis",
    "ShapeModel",
    "standardize",
    "normalize_procrustes",
    "remove_identity",
    "fit_pca",
    "fit_region_pca",
    "sample_frames",
    "project",
    "reconstruct",
    "shape_model_bytes",
    "save_shape_model",
    "load_shape_model",
]

#: Point subsets (0-based iBUG indices) a PCA basis can be fitted on.
REGIONS: dict[str, range] = {"full": range(68), "lips": range(48, 68), "rest": range(0, 48)}

#: Reference frames :func:`remove_identity` accepts.
REFERENCES = ("first", "last", "mean")

_FORMAT = "talkdata.shape_model"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- procrustes


def standardize(template: np.ndarray) -> np.ndarray:
    """Centre ``template`` (P, 2) and scale it to unit Frobenius norm.

    Identical to ``scipy.spatial.procrustes(template, x)[0]`` (its ``mtx1``).
    """
    t = np.array(template, dtype=np.float64, copy=True)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"template must have shape (P, 2), got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("template contains non-finite values")
    t -= t.mean(axis=0)
    n = np.linalg.norm(t)
    if n == 0:
        raise ValueError("template must contain more than one unique point")
    return t / n


def normalize_procrustes(
    landmarks: np.ndarray, template: np.ndarray, *, allow_reflection: bool = True
) -> np.ndarray:
    """Align every frame of ``landmarks`` (T, P, 2) onto ``template`` (P, 2).

    Per frame this is exactly ``scipy.spatial.procrustes(template, landmarks[t])[1]``:
    the frame is centred, scaled to unit Frobenius norm, then rotated by the orthogonal
    ``R = U V^T`` from the SVD ``U W V^T = A^T B`` (``A`` the standardised template, ``B``
    the standardised frame) and multiplied by ``s = sum(W)``. The result is centred and has
    norm ``s <= 1`` (1 only for a perfect fit). Done with one batched SVD, no frame loop.

    Reflections: like scipy (``orthogonal_procrustes``), ``R`` is any orthogonal matrix, so a
    mirrored face is un-mirrored (``det R = -1``). With ``allow_reflection=False`` ``R`` is
    restricted to a proper rotation (Kabsch: the last singular vector is flipped and
    ``s = w0 - w1``); for ordinary, unmirrored faces both give the same result.

    Raises ``ValueError`` for wrong shapes, non-finite values or a degenerate frame (all
    points equal), naming the offending frames.
    """
    a = standardize(template)
    b = np.array(landmarks, dtype=np.float64, copy=True)
    if b.ndim != 3 or b.shape[1:] != a.shape:
        raise ValueError(f"landmarks must have shape (T, {a.shape[0]}, 2), got {b.shape}")
    if b.shape[0] == 0:
        return b
    finite = np.isfinite(b).all(axis=(1, 2))
    if not finite.all():
        raise ValueError(f"non-finite landmarks in frames {np.flatnonzero(~finite)[:10].tolist()}")
    b -= b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(b, axis=(1, 2))
    if np.any(norms == 0):
        raise ValueError(f"degenerate landmarks in frames {np.flatnonzero(norms == 0)[:10].tolist()}")
    b /= norms[:, None, None]

    m = a.T @ b  # (T, 2, 2) == scipy's (B.T @ A).T per frame
    u, w, vt = np.linalg.svd(m)
    if not allow_reflection:
        d = np.sign(np.linalg.det(u @ vt))  # -1 where the optimum is a reflection
        u = u.copy()
        u[:, :, -1] *= d[:, None]
        w = w.copy()
        w[:, -1] *= d
    r = u @ vt
    s = w.sum(axis=1)
    return (b @ np.swapaxes(r, 1, 2)) * s[:, None, None]


# --------------------------------------------------------------------------- identity


def remove_identity(
    norm: np.ndarray,
    template_std: np.ndarray,
    reference: str = "last",
    basis: "np.ndarray | ShapeBasis | None" = None,
) -> np.ndarray:
    """Replace the speaker's face shape by the template: ``norm_t - norm_ref + template_std``.

    ``norm`` (T, P, 2) are Procrustes-normalised frames of ONE clip, ``template_std`` (P, 2)
    the standardised template. ``reference`` picks ``norm_ref``: ``"last"`` frame (ATVG),
    ``"first"`` frame or the ``"mean"`` over frames (then the clip's mean shape is exactly
    ``template_std``).

    ``basis`` (K, 2P) with orthonormal rows (or a :class:`ShapeBasis`, whose ``components``
    are used): the difference ``norm_t - norm_ref`` (flattened interleaved) is projected onto
    the span of the basis before the template is added, as ATVG does with its ``S``.
    """
    x = np.asarray(norm, dtype=np.float64)
    t = np.asarray(template_std, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 2 or x.shape[1:] != t.shape:
        raise ValueError(f"norm must be (T, P, 2) and template_std (P, 2); got {x.shape}, {t.shape}")
    if x.shape[0] == 0:
        raise ValueError("norm has no frames")
    if reference == "last":
        ref = x[-1]
    elif reference == "first":
        ref = x[0]
    elif reference == "mean":
        ref = x.mean(axis=0)
    else:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    diff = x - ref
    if basis is not None:
        comps = basis.components if isinstance(basis, ShapeBasis) else np.asarray(basis, np.float64)
        n_frames, dims = x.shape[0], x.shape[1] * 2
        if comps.ndim != 2 or comps.shape[1] != dims:
            raise ValueError(f"basis must have shape (K, {dims}), got {comps.shape}")
        if not np.allclose(comps @ comps.T, np.eye(comps.shape[0]), atol=1e-6):
            raise ValueError("basis rows must be orthonormal")
        flat = diff.reshape(n_frames, dims)
        diff = ((flat @ comps.T) @ comps).reshape(x.shape)
    return diff + t


# --------------------------------------------------------------------------- PCA


@dataclass(eq=False)
class ShapeBasis:
    """A PCA basis of (scaled) shape vectors.

    ``components`` (K, D) have orthonormal rows, sorted by ``explained_variance`` (K,)
    descending; ``D = 2 * len(point_indices)``. Variances use ``ddof=0`` (divide by N), so
    the mean over samples of the squared reconstruction error ``||x - x_hat||^2`` with K
    components equals the sum of the dropped components' variances.
    ``explained_variance_ratio`` is relative to the total variance of all D dimensions.
    ``mean`` (D,) and the variances are in scaled units (``scale * shape``).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    scale: float = 1.0
    region: str = "full"
    point_indices: list[int] = field(default_factory=lambda: list(range(68)))

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])


def fit_pca(
    samples: np.ndarray,
    n_components: int | None = 20,
    scale: float = 1.0,
    *,
    region: str = "full",
    point_indices: Sequence[int] | None = None,
) -> ShapeBasis:
    """Fit a PCA basis on ``samples`` (N, D) or (N, P, 2) multiplied by ``scale``.

    Deterministic: SVD of the centred data (``np.linalg.svd(X - mean, full_matrices=False)``)
    and each component's sign is fixed so that its largest-magnitude entry is positive
    (first such entry on ties). ``n_components=None`` keeps all ``min(N, D)``.
    ``point_indices`` default to ``range(D // 2)``.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 3 and x.shape[2] == 2:
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"samples must be (N>=2, D) or (N>=2, P, 2), got {np.shape(samples)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain non-finite values")
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale}")
    n, d = x.shape
    idx = list(range(d // 2)) if point_indices is None else [int(i) for i in point_indices]
    if 2 * len(idx) != d:
        raise ValueError(f"samples have {d} dims but {len(idx)} points were given")
    k_max = min(n, d)
    k = k_max if n_components is None else int(n_components)
    if not 1 <= k <= k_max:
        raise ValueError(f"n_components must be in [1, {k_max}], got {n_components}")

    x = x * float(scale)
    mean = x.mean(axis=0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    total = float(np.sum(xc * xc)) / n
    if total <= 0:
        raise ValueError("samples have zero variance")
    comps = vt[:k].copy()
    pivot = np.argmax(np.abs(comps), axis=1)
    signs = np.sign(comps[np.arange(k), pivot])
    comps *= signs[:, None]
    var = s[:k] ** 2 / n
    return ShapeBasis(
        mean=mean,
        components=comps,
        explained_variance=var,
        explained_variance_ratio=var / total,
        scale=float(scale),
        region=region,
        point_indices=idx,
    )


def fit_region_pca(
    frames: np.ndarray, region: str, n_components: int | None = 20, scale: float = 1.0
) -> ShapeBasis:
    """Fit :func:`fit_pca` on the points of ``REGIONS[region]`` of ``frames`` (N, 68, 2)."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; known: {sorted(REGIONS)}")
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 3 or f.shape[1:] != (68, 2):
        raise ValueError(f"frames must have shape (N, 68, 2), got {f.shape}")
    idx = list(REGIONS[region])
    sub = f[:, idx, :].reshape(f.shape[0], 2 * len(idx))
    return fit_pca(sub, n_components, scale, region=region, point_indices=idx)


def sample_frames(
    per_clip_arrays: Sequence[np.ndarray], max_frames: int = 100_000, seed: int = 0
) -> np.ndarray:
    """Concatenate the clips' frames (T_i, P, 2) and subsample deterministically.

    The caller passes the clips in a fixed order (sorted by key). If the total number of
    frames is at most ``max_frames`` all are returned in order; otherwise the frame indices
    ``np.random.default_rng(seed).choice(total, max_frames, replace=False)``, sorted.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    arrays = [np.asarray(a, dtype=np.float64) for a in per_clip_arrays]
    if not arrays:
        return np.zeros((0, 68, 2), dtype=np.float64)
    shape = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.ndim != 3 or a.shape[1:] != shape or shape[-1] != 2:
            raise ValueError(f"clip {i}: expected (T, {shape[0]}, 2), got {a.shape}")
    allf = np.concatenate(arrays, axis=0)
    total = allf.shape[0]
    if total <= max_frames:
        return allf
    idx = np.sort(np.random.default_rng(seed).choice(total, max_frames, replace=False))
    return allf[idx]


def project(norm: np.ndarray, basis: ShapeBasis) -> np.ndarray:
    """Codes (T, K) float32 = ``(scale * flat - mean) @ components.T``.

    ``norm`` is (T, 68, 2) (the basis's ``point_indices`` are selected) or already
    (T, len(point_indices), 2).
    """
    x = np.asarray(norm, dtype=np.float64)
    idx = basis.point_indices
    if x.ndim != 3 or x.shape[2] != 2:
        raise ValueError(f"norm must have shape (T, P, 2), got {x.shape}")
    if x.shape[1] != len(idx):
        x = x[:, idx, :]
    flat = x.reshape(x.shape[0], 2 * len(idx))
    return ((basis.scale * flat - basis.mean) @ basis.components.T).astype(np.float32)


def reconstruct(codes: np.ndarray, basis: ShapeBasis) -> np.ndarray:
    """Shapes (T, len(point_indices), 2) float64 = ``(codes @ components + mean) / scale``."""
    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != basis.n_components:
        raise ValueError(f"codes must have shape (T, {basis.n_components}), got {c.shape}")
    flat = (c @ basis.components + basis.mean) / basis.scale
    return flat.reshape(c.shape[0], len(basis.point_indices), 2)


# --------------------------------------------------------------------------- model file


@dataclass(eq=False)
class ShapeModel:
    """Everything needed to turn raw landmarks into shape codes.

    ``template`` (68, 2) is the (pixel) template frames are Procrustes-aligned to,
    ``template_std`` its :func:`standardize` d form used by :func:`remove_identity`,
    ``basis`` the full-face PCA basis, ``region_bases`` optional extra bases by name and
    ``settings`` the JSON-serialisable fit settings (reference, scale, seed, ...).
    """

    template: np.ndarray
    template_std: np.ndarray
    basis: ShapeBasis
    region_bases: dict[str, ShapeBasis] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


_BASIS_ARRAYS = ("mean", "components", "explained_variance", "explained_variance_ratio")


def _basis_arrays(prefix: str, b: ShapeBasis) -> dict[str, np.ndarray]:
    out = {prefix + k: np.ascontiguousarray(getattr(b, k), dtype="<f8") for k in _BASIS_ARRAYS}
    out[prefix + "scale"] = np.asarray(b.scale, dtype="<f8")
    return out


def shape_model_bytes(model: ShapeModel) -> bytes:
    """The .npz bytes of ``model``; byte-identical for equal models.

    Keys: ``template, template_std, mean, components, explained_variance,
    explained_variance_ratio, scale, settings_json, meta_json`` and
    ``region_<name>_{mean,components,explained_variance,explained_variance_ratio,scale}``
    per extra region. ``meta_json`` holds the format version, region names and point
    indices. Determinism: entries are written in sorted key order, and numpy's ``savez``
    writes zip entries with the fixed ``ZipInfo`` default date (1980-01-01), not the clock.
    """
    meta = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "basis": {"region": model.basis.region, "point_indices": list(model.basis.point_indices)},
        "regions": {
            name: {"region": b.region, "point_indices": list(b.point_indices)}
            for name, b in sorted(model.region_bases.items())
        },
    }
    arrays: dict[str, np.ndarray] = {
        "template": np.ascontiguousarray(model.template, dtype="<f8"),
        "template_std": np.ascontiguousarray(model.template_std, dtype="<f8"),
        "settings_json": np.asarray(json.dumps(model.settings, sort_keys=True)),
        "meta_json": np.asarray(json.dumps(meta, sort_keys=True)),
    }
    arrays.update(_basis_arrays("", model.basis))
    for name, b in model.region_bases.items():
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"region name must be alphanumeric/underscore, got {name!r}")
        arrays.update(_basis_arrays(f"region_{name}_", b))
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[k] for k in sorted(arrays)})
    return buf.getvalue()


def save_shape_model(path: str | os.PathLike[str], model: ShapeModel) -> None:
    """Write ``model`` to ``path`` exactly (no ``.npz`` suffix added), atomically."""
    write_atomic(path, shape_model_bytes(model))


def _load_basis(z: Any, prefix: str, info: dict[str, Any]) -> ShapeBasis:
    return ShapeBasis(
        mean=z[prefix + "mean"],
        components=z[prefix + "components"],
        explained_variance=z[prefix + "explained_variance"],
        explained_variance_ratio=z[prefix + "explained_variance_ratio"],
        scale=float(z[prefix + "scale"]),
        region=str(info["region"]),
        point_indices=[int(i) for i in info["point_indices"]],
    )


def load_shape_model(path: str | os.PathLike[str] | BinaryIO) -> ShapeModel:
    """Read a model written by :func:`save_shape_model` (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta_json"][()]))
        if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
            raise ValueError(f"not a talkdata shape model v{_FORMAT_VERSION}: {meta.get('format')!r}")
        return ShapeModel(
            template=z["template"],
            template_std=z["template_std"],
            basis=_load_basis(z, "", meta["basis"]),
            region_bases={
                name: _load_basis(z, f"region_{name}_", info) for name, info in meta["regions"].items()
            },
            settings=json.loads(str(z["settings_json"][()])),
        )


# --------------------------------------------------------------------------- ATVG's published basis

#: ATVGnet's ``basics/`` files (code/utils.py:50-55 and the PCA of code/dataset.py), their shapes
ATVG_BASIS_FILES = {"S": ("S.npy", (100, 136)), "mean_norm": ("mean_shape_norm.npy", (1, 136)),
                    "mean_img": ("mean_shape_img.npy", (68, 2))}
ATVG_PCA_FILES = {"lrw1": ("U_lrw1.npy", "mean_lrw1.npy"), "grid": ("U_grid.npy", "mean_grid.npy")}


@dataclass(frozen=True)
class AtvgBasis:
    """ATVGnet's published shape basis and PCA: ``S`` (100, 136) orthonormal rows, ``mean_norm``
    (136,) the procrustes-normalised mean shape, ``mean_img`` (68, 2) the pixel-scale procrustes
    reference, ``U`` (136, 136) PCA axes in columns and ``mean`` (136,) the PCA mean (x5 scale)."""

    S: np.ndarray
    mean_norm: np.ndarray
    mean_img: np.ndarray
    U: np.ndarray
    mean: np.ndarray


def load_atvg_basis(folder: str | os.PathLike[str], pca: str = "lrw1") -> AtvgBasis:
    """Read ATVGnet's ``basics/`` files from ``folder`` (``pca``: ``lrw1`` for ``U_lrw1.npy`` /
    ``mean_lrw1.npy``, ``grid`` for ``U_grid.npy`` / ``mean_grid.npy``). Raises ValueError with one
    line naming the missing or malformed file."""
    if pca not in ATVG_PCA_FILES:
        raise ValueError(f"unknown ATVG PCA {pca!r}; expected one of {', '.join(ATVG_PCA_FILES)}")
    u_name, mean_name = ATVG_PCA_FILES[pca]
    wanted = dict(ATVG_BASIS_FILES, U=(u_name, (136, 136)), mean=(mean_name, (136,)))
    arrays = {}
    for field_name, (name, shape) in wanted.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ValueError(f"ATVG basis file {path} not found (ATVGnet's basics/ folder holds it)")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"ATVG basis file {path} is not a numpy array ({exc})") from None
        if array.shape != shape or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"ATVG basis file {path} has shape {array.shape} {array.dtype}, expected {shape}")
        arrays[field_name] = array.astype(np.float64)
    arrays["mean_norm"] = arrays["mean_norm"].reshape(136)
    return AtvgBasis(**arrays)
