"""Tests for talkdata.face.shape on real dlib landmarks of two GRID speakers (s1, s2)."""

from __future__ import annotations

import importlib.util
import io
import os
import zipfile
from pathlib import Path

import av
import dlib
import numpy as np
import pytest
from scipy.spatial import procrustes

from talkdata.face.shape import (
    REGIONS,
    ShapeModel,
    fit_pca,
    fit_region_pca,
    load_shape_model,
    normalize_procrustes,
    project,
    reconstruct,
    remove_identity,
    sample_frames,
    save_shape_model,
    shape_model_bytes,
    standardize,
)

DATA = Path(__file__).parent / "data" / "grid"
CLIPS = {"s1": DATA / "s1" / "bbaf2n.mpg", "s2": DATA / "s2" / "swwp2s.mpg"}
UPPER_INNER_LIP, LOWER_INNER_LIP = 62, 66


def _predictor_path() -> str:
    # find the package directory without importing it (its __init__ imports pkg_resources)
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec is not None and spec.submodule_search_locations, "face_recognition_models missing"
    return os.path.join(
        spec.submodule_search_locations[0], "models", "shape_predictor_68_face_landmarks.dat"
    )


@pytest.fixture(scope="session")
def landmarks() -> dict[str, np.ndarray]:
    """Real 68-point landmarks (T, 68, 2) float64 per clip, frames without a face skipped."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(_predictor_path())
    out = {}
    for key, path in CLIPS.items():
        frames = []
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                # PyAV returns a strided view (line size padded past the width); dlib reads
                # non-contiguous arrays wrongly and nondeterministically, so copy first
                gray = np.ascontiguousarray(frame.to_ndarray(format="gray"))
                rects = detector(gray, 0)
                if not rects:
                    continue
                shape = predictor(gray, max(rects, key=lambda r: r.area()))
                frames.append([(p.x, p.y) for p in shape.parts()])
        out[key] = np.asarray(frames, dtype=np.float64)
        assert out[key].shape[0] >= 70, f"{key}: too few frames with a face"
    return out


@pytest.fixture(scope="session")
def template(landmarks) -> np.ndarray:
    """Mean of both clips' frames aligned onto the first s1 frame."""
    ref = landmarks["s1"][0]
    aligned = [normalize_procrustes(landmarks[k], ref) for k in sorted(landmarks)]
    return np.concatenate(aligned).mean(axis=0)


@pytest.fixture(scope="session")
def normalized(landmarks, template) -> dict[str, np.ndarray]:
    return {k: normalize_procrustes(v, template) for k, v in landmarks.items()}


@pytest.fixture(scope="session")
def pca_frames(normalized, template) -> np.ndarray:
    tstd = standardize(template)
    clips = [remove_identity(normalized[k], tstd, "last") for k in sorted(normalized)]
    return sample_frames(clips)


def _opening(shapes: np.ndarray) -> np.ndarray:
    return np.linalg.norm(shapes[:, UPPER_INNER_LIP] - shapes[:, LOWER_INNER_LIP], axis=1)


def _codes64(frames: np.ndarray, basis) -> np.ndarray:
    flat = frames[:, basis.point_indices, :].reshape(len(frames), -1)
    return (basis.scale * flat - basis.mean) @ basis.components.T


# ----------------------------------------------------------------------------- procrustes


def test_vectorized_procrustes_matches_scipy(landmarks, template):
    for key, lmk in landmarks.items():
        norm = normalize_procrustes(lmk, template)
        assert norm.shape == lmk.shape and norm.dtype == np.float64
        for t in range(len(lmk)):
            mtx1, mtx2, _ = procrustes(template, lmk[t])
            np.testing.assert_allclose(norm[t], mtx2, rtol=0, atol=1e-9, err_msg=f"{key}[{t}]")
        np.testing.assert_allclose(standardize(template), mtx1, rtol=0, atol=1e-12)
        # centred, norm = procrustes scale <= 1
        np.testing.assert_allclose(norm.mean(axis=1), 0, atol=1e-12)
        norms = np.linalg.norm(norm, axis=(1, 2))
        assert np.all(norms <= 1 + 1e-12) and np.all(norms > 0.9)


def test_reflection_handling(landmarks, template):
    lmk = landmarks["s1"]
    # real faces need no reflection: both modes agree
    np.testing.assert_allclose(
        normalize_procrustes(lmk, template, allow_reflection=False),
        normalize_procrustes(lmk, template),
        atol=1e-12,
    )
    mirrored = lmk * np.array([-1.0, 1.0])
    # scipy-exact mode un-mirrors the shape (det R = -1) ...
    np.testing.assert_allclose(
        normalize_procrustes(mirrored, template), normalize_procrustes(lmk, template), atol=1e-9
    )
    # ... the rotation-only mode cannot, so its fit is worse
    rot = normalize_procrustes(mirrored, template, allow_reflection=False)
    tstd = standardize(template)
    assert np.all(np.sum((rot - tstd) ** 2, axis=(1, 2)) > 10 * np.sum(
        (normalize_procrustes(lmk, template) - tstd) ** 2, axis=(1, 2)
    ))


def test_procrustes_rejects_bad_input(template):
    with pytest.raises(ValueError, match=r"landmarks must have shape \(T, 68, 2\), got \(3, 67, 2\)"):
        normalize_procrustes(np.zeros((3, 67, 2)), template)
    with pytest.raises(ValueError, match="degenerate"):
        normalize_procrustes(np.ones((2, 68, 2)), template)
    bad = np.random.default_rng(0).normal(size=(2, 68, 2))
    bad[1, 5, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        normalize_procrustes(bad, template)


# ----------------------------------------------------------------------------- identity


@pytest.mark.parametrize("reference", ["first", "last", "mean"])
def test_still_photo_becomes_template(landmarks, template, reference):
    """One real frame moved around by similarity transforms has no motion left."""
    still = landmarks["s1"][30]
    rng = np.random.default_rng(1234)
    n = 40
    theta = np.deg2rad(rng.uniform(-20, 20, n))
    scale = rng.uniform(0.5, 2.0, n)
    shift = rng.uniform(-150, 150, (n, 2))
    rot = np.stack([np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)], 1).reshape(n, 2, 2)
    moving = scale[:, None, None] * (still @ np.swapaxes(rot, 1, 2)) + shift[:, None, :]
    assert np.ptp(moving[:, :, 0].mean(axis=1)) > 50  # it really moves

    tstd = standardize(template)
    out = remove_identity(normalize_procrustes(moving, template), tstd, reference)
    assert out.shape == moving.shape
    np.testing.assert_allclose(out, np.broadcast_to(tstd, out.shape), rtol=0, atol=1e-9)


def test_two_speakers_share_mean_shape_and_keep_mouth_motion(normalized, template):
    tstd = standardize(template)
    n1, n2 = normalized["s1"], normalized["s2"]
    size = np.linalg.norm(tstd)
    raw_gap = np.linalg.norm(n1.mean(0) - n2.mean(0)) / size
    assert raw_gap > 0.05  # the two speakers really have different face shapes

    # reference="mean": each clip's mean shape is exactly the template
    m1 = remove_identity(n1, tstd, "mean").mean(0)
    m2 = remove_identity(n2, tstd, "mean").mean(0)
    np.testing.assert_allclose(m1, tstd, atol=1e-12)
    assert np.linalg.norm(m1 - m2) / size < 0.02

    # reference="last" (ATVG): the mean shapes differ only by the clips' motion
    l1 = remove_identity(n1, tstd, "last").mean(0)
    l2 = remove_identity(n2, tstd, "last").mean(0)
    assert np.linalg.norm(l1 - l2) / size < 0.5 * raw_gap

    # mouth motion is kept (both clips end with a closed mouth; s2 starts mid-word with an
    # open mouth, which is why reference="first" would invert its openings)
    for norm in (n1, n2):
        for reference in ("last", "mean"):
            out = remove_identity(norm, tstd, reference)
            r = np.corrcoef(_opening(out), _opening(norm))[0, 1]
            assert r > 0.9, (reference, r)


def test_remove_identity_with_basis(normalized, template, pca_frames):
    tstd = standardize(template)
    norm = normalized["s1"]
    basis = fit_pca(pca_frames, 6)
    out = remove_identity(norm, tstd, "last", basis=basis.components)
    diff = (out - tstd).reshape(len(out), -1)
    # the difference lies in the basis span, and is the orthogonal projection of the raw one
    raw = (norm - norm[-1]).reshape(len(norm), -1)
    np.testing.assert_allclose(diff, raw @ basis.components.T @ basis.components, atol=1e-12)
    np.testing.assert_allclose(diff - diff @ basis.components.T @ basis.components, 0, atol=1e-12)
    # a ShapeBasis is accepted too; the last frame is still exactly the template
    np.testing.assert_array_equal(remove_identity(norm, tstd, "last", basis=basis), out)
    np.testing.assert_allclose(out[-1], tstd, atol=1e-15)
    # mouth motion survives the 6-d projection
    assert np.corrcoef(_opening(out), _opening(norm))[0, 1] > 0.9
    with pytest.raises(ValueError, match="orthonormal"):
        remove_identity(norm, tstd, basis=2 * basis.components)
    with pytest.raises(ValueError, match="reference"):
        remove_identity(norm, tstd, reference="middle")


# ----------------------------------------------------------------------------- PCA


def test_pca_properties(pca_frames):
    basis = fit_pca(pca_frames, 20)
    c = basis.components
    assert c.shape == (20, 136) and basis.mean.shape == (136,)
    assert basis.region == "full" and basis.point_indices == list(range(68))
    np.testing.assert_allclose(c @ c.T, np.eye(20), atol=1e-8)
    assert np.all(np.diff(basis.explained_variance) <= 0)
    assert np.all(basis.explained_variance_ratio > 0)
    assert basis.explained_variance_ratio.sum() <= 1 + 1e-12
    # sign convention: the largest-magnitude entry of each component is positive
    assert np.all(c[np.arange(20), np.argmax(np.abs(c), axis=1)] > 0)
    # all components: ratios sum to 1 (total variance of all 136 dims, ddof=0)
    full = fit_pca(pca_frames, None)
    np.testing.assert_allclose(full.explained_variance_ratio.sum(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(
        full.explained_variance.sum(), pca_frames.reshape(len(pca_frames), -1).var(0).sum(), rtol=1e-10
    )


@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_pca_reconstruction_error_equals_dropped_variance(pca_frames, scale):
    full = fit_pca(pca_frames, None, scale)
    x = scale * pca_frames.reshape(len(pca_frames), -1)
    for k in (1, 6, 20):
        basis = fit_pca(pca_frames, k, scale)
        recon = reconstruct(_codes64(pca_frames, basis), basis)
        mse = np.mean(np.sum((x - scale * recon.reshape(len(x), -1)) ** 2, axis=1))
        np.testing.assert_allclose(mse, full.explained_variance[k:].sum(), rtol=1e-6)
        total = basis.explained_variance[0] / basis.explained_variance_ratio[0]
        np.testing.assert_allclose(mse, total - basis.explained_variance.sum(), rtol=1e-6)
        # project == the float64 codes, in float32
        codes = project(pca_frames, basis)
        assert codes.dtype == np.float32 and codes.shape == (len(x), k)
        np.testing.assert_allclose(codes, _codes64(pca_frames, basis), rtol=1e-5, atol=1e-6 * scale)


def test_pca_deterministic(pca_frames):
    a, b = fit_pca(pca_frames, 6, 5.0), fit_pca(pca_frames.copy(), 6, 5.0)
    for name in ("mean", "components", "explained_variance", "explained_variance_ratio"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_pca_scale(pca_frames):
    b1, b5 = fit_pca(pca_frames, 6, 1.0), fit_pca(pca_frames, 6, 5.0)
    np.testing.assert_allclose(b5.components, b1.components, atol=1e-9)
    np.testing.assert_allclose(b5.mean, 5 * b1.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b5.explained_variance, 25 * b1.explained_variance, rtol=1e-9)
    np.testing.assert_allclose(b5.explained_variance_ratio, b1.explained_variance_ratio, rtol=1e-9)
    c1, c5 = project(pca_frames, b1), project(pca_frames, b5)
    np.testing.assert_allclose(c5, 5 * c1, rtol=1e-5, atol=1e-6)
    # reconstruction is back in unscaled units
    np.testing.assert_allclose(
        reconstruct(c5, b5), reconstruct(c1, b1), atol=1e-6
    )


def test_region_pca(pca_frames):
    lips = fit_region_pca(pca_frames, "lips", 6, 5.0)
    assert lips.components.shape == (6, 40) and lips.mean.shape == (40,)
    assert lips.region == "lips" and lips.point_indices == list(range(48, 68))
    np.testing.assert_allclose(lips.components @ lips.components.T, np.eye(6), atol=1e-8)
    direct = fit_pca(pca_frames[:, 48:68, :].reshape(len(pca_frames), 40), 6, 5.0)
    np.testing.assert_array_equal(lips.components, direct.components)
    codes = project(pca_frames, lips)  # full 68-point frames: the region's points are picked
    np.testing.assert_array_equal(codes, project(pca_frames[:, 48:68], lips))
    assert reconstruct(codes, lips).shape == (len(pca_frames), 20, 2)
    rest = fit_region_pca(pca_frames, "rest", 6)
    assert rest.components.shape == (6, 96) and rest.point_indices == list(REGIONS["rest"])
    with pytest.raises(ValueError, match="unknown region"):
        fit_region_pca(pca_frames, "nose")


def test_sample_frames():
    sizes = [5, 7, 3, 9]
    starts = np.cumsum([0] + sizes[:-1])
    clips = [np.broadcast_to(np.arange(s, s + n, dtype=float)[:, None, None], (n, 68, 2)).copy()
             for s, n in zip(starts, sizes)]
    total = sum(sizes)
    # everything fits: all frames, in order
    allf = sample_frames(clips, max_frames=total)
    np.testing.assert_array_equal(allf[:, 0, 0], np.arange(total))
    # subsample: deterministic, sorted, no duplicates, the documented rng draw
    a = sample_frames(clips, max_frames=10, seed=3)
    b = sample_frames(clips, max_frames=10, seed=3)
    np.testing.assert_array_equal(a, b)
    idx = a[:, 0, 0].astype(int)
    assert a.shape == (10, 68, 2) and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, np.sort(np.random.default_rng(3).choice(total, 10, replace=False)))
    assert not np.array_equal(sample_frames(clips, max_frames=10, seed=4), a)
    assert sample_frames([], max_frames=10).shape == (0, 68, 2)


# ----------------------------------------------------------------------------- model file


def _model(template, pca_frames) -> ShapeModel:
    settings = {"reference": "last", "scale": 5.0, "n_components": 6, "max_frames": 100_000, "seed": 0}
    return ShapeModel(
        template=template,
        template_std=standardize(template),
        basis=fit_pca(pca_frames, 6, 5.0),
        region_bases={r: fit_region_pca(pca_frames, r, 6, 5.0) for r in ("lips", "rest")},
        settings=settings,
    )


def _assert_basis_equal(a, b):
    for name in ("mean", "components", "explained_variance", "explained_variance_ratio"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.scale, a.region, a.point_indices) == (b.scale, b.region, b.point_indices)


def test_save_load_roundtrip(tmp_path, template, pca_frames):
    model = _model(template, pca_frames)
    path = tmp_path / "shape_model.npz"
    save_shape_model(path, model)
    assert path.read_bytes() == shape_model_bytes(model)
    loaded = load_shape_model(path)
    np.testing.assert_array_equal(loaded.template, model.template)
    np.testing.assert_array_equal(loaded.template_std, model.template_std)
    _assert_basis_equal(loaded.basis, model.basis)
    assert sorted(loaded.region_bases) == ["lips", "rest"]
    for name, b in model.region_bases.items():
        _assert_basis_equal(loaded.region_bases[name], b)
    assert loaded.settings == model.settings
    # the documented keys are there, readable without pickle
    with np.load(path, allow_pickle=False) as z:
        for key in ("template", "template_std", "mean", "components", "explained_variance",
                    "explained_variance_ratio", "scale", "settings_json",
                    "region_lips_mean", "region_lips_components", "region_rest_scale"):
            assert key in z.files
    # loading and saving again gives the same bytes
    assert shape_model_bytes(loaded) == shape_model_bytes(model)


def test_model_bytes_deterministic(template, pca_frames):
    data = shape_model_bytes(_model(template, pca_frames))
    assert shape_model_bytes(_model(template, pca_frames)) == data  # refit from scratch
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}  # no wall-clock timestamps
