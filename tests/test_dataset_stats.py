"""The dataset-level stage inside real builds: shape model fitted on train, codes consistent with
the basis, re-projection with --shape-model, DeepSpeech features when a model is configured, and
clear errors for missing models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from talkdata.audio.deepspeech import deepspeech_logits, load_deepspeech
from talkdata.audio.pcm import wav_pcm16
from talkdata.cli import main
from talkdata.errors import UserError
from talkdata.face.landmarks import FAN_WEIGHTS, fan_weights_path
from talkdata.face.shape import load_shape_model, project, reconstruct
from test_build import all_samples as samples, npy

DATA = Path(__file__).parent / "data"


def build(*args: str) -> None:
    result = CliRunner().invoke(main, ["build", *args, "--no-progress"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """The GRID samples with a tiny linear DeepSpeech model (the build test_loader's ds_grid shares)."""
    from test_loader import deepspeech_grid

    return deepspeech_grid(tmp_path_factory)


def test_shape_model_is_fitted_on_train_only(grid):
    manifest = json.loads((grid / "dataset.json").read_text())
    settings = manifest["shape_model"]["settings"]
    assert settings["fit_split"] == "train" and settings["clips"] == manifest["splits"]["train"]["samples"] == 1
    assert settings["frames_sampled"] == 75
    assert 0 < manifest["shape_model"]["explained_variance_ratio_first_6"] <= manifest["shape_model"][
        "explained_variance_ratio_all"] <= 1
    model = load_shape_model(grid / "stats/shape_model.npz")
    assert model.basis.components.shape == (20, 136)
    assert np.allclose(model.basis.components @ model.basis.components.T, np.eye(20), atol=1e-8)


def test_codes_reconstruct_with_the_dropped_variance(grid):
    model = load_shape_model(grid / "stats/shape_model.npz")
    train = [s for s in samples(grid).values() if json.loads(s["json"])["split"] == "train"]
    norm = np.concatenate([npy(s["lmk_norm.npy"]) for s in train]).astype(np.float64)
    codes = np.concatenate([npy(s["pca.npy"]) for s in train]).astype(np.float64)
    assert np.allclose(codes, project(norm, model.basis), atol=1e-5)
    for k in (6, 20):
        basis = model.basis
        partial = type(basis)(basis.mean, basis.components[:k], basis.explained_variance[:k],
                              basis.explained_variance_ratio[:k], basis.scale, basis.region, basis.point_indices)
        error = ((reconstruct(codes[:, :k], partial) - norm) ** 2).reshape(len(norm), -1).sum(1).mean()
        # the fit used exactly these frames: the mean squared error is the variance of the dropped components
        total = basis.explained_variance.sum() / basis.explained_variance_ratio.sum()
        assert error == pytest.approx((1 - basis.explained_variance_ratio[:k].sum()) * total, rel=1e-3)


def test_identity_removed_landmarks_keep_mouth_motion(grid):
    clips = samples(grid)
    assert len(clips) == 3  # every GRID sample
    for files in clips.values():
        src = npy(files["lmk_src.npy"])
        norm = npy(files["lmk_norm.npy"])
        opening_src = np.linalg.norm(src[:, 66] - src[:, 62], axis=1) / np.linalg.norm(src[:, 45] - src[:, 36], axis=1)
        opening_norm = np.linalg.norm(norm[:, 66] - norm[:, 62], axis=1)
        assert np.corrcoef(opening_src, opening_norm)[0, 1] > 0.95
        # reference = last frame: the last frame is exactly the template
        model = load_shape_model(grid / "stats/shape_model.npz")
        assert np.allclose(norm[-1], model.template_std, atol=1e-5)


def test_deepspeech_field_matches_the_feature_pipeline(grid, tmp_path_factory):
    manifest = json.loads((grid / "dataset.json").read_text())
    assert manifest["audio_features"] == ["deepspeech", "mfcc"]
    files = samples(grid)["s1/bbaf2n"]
    meta = json.loads(files["json"])
    assert meta["backends"]["audio_features"] == ["mfcc", "deepspeech"]
    features = npy(files["deepspeech.npy"])
    assert features.shape == (150, 29) and features.dtype == np.float32  # 50 Hz steps of 3 s
    pcm, _ = wav_pcm16(files["audio.wav"])  # computed from exactly the stored samples
    model = load_deepspeech(manifest["config"]["audio"]["deepspeech_model"])
    assert np.array_equal(features, deepspeech_logits(pcm, model))


def test_reprojection_onto_another_datasets_basis(grid, tmp_path):
    out = tmp_path / "crema"
    given = grid / "stats/shape_model.npz"
    build("crema-d", "--source", str(DATA / "crema_d"), "--out", str(out), "--limit", "2", "--shape-model", str(given))
    assert (out / "stats/shape_model.npz").read_bytes() == given.read_bytes()
    model = load_shape_model(given)
    built = samples(out)
    assert len(built) == 2  # --limit 2
    for files in built.values():
        assert np.allclose(npy(files["pca.npy"]), project(npy(files["lmk_norm.npy"]), model.basis), atol=1e-5)
        assert json.loads(files["json"])["shape_model"]["sha256"] == json.loads(
            (grid / "dataset.json").read_text())["artifacts"]["stats/shape_model.npz"]["sha256"]


def test_missing_models_stop_the_build_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(tmp_path / "o"),
                                       "--set", f'audio.deepspeech_model="{tmp_path}/none.onnx"'])
    assert result.exit_code == 2 and "DeepSpeech model not found" in result.output
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(tmp_path / "o"),
                                       "--shape-model", str(tmp_path / "nope.npz")])
    assert result.exit_code == 2 and "cannot read shape model" in result.output


def test_fan_weights_missing_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError) as err:
        fan_weights_path()
    assert FAN_WEIGHTS[0] in str(err.value) and str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / FAN_WEIGHTS[1]).write_bytes(b"weights")
    assert fan_weights_path() == checkpoints / FAN_WEIGHTS[1]


def test_fan_backend_without_the_extra_is_a_clear_error(tmp_path, monkeypatch):
    """Without face-alignment: install the extra. With it but without the weights (a torch cache of the test's
    own, the weights' URL on a closed local port, never the internet): the file and the folder are named."""
    import dataclasses
    import importlib.util
    import socket

    from talkdata.acquire import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fan = models.REGISTRY["fan-2d"]
    monkeypatch.setitem(models.REGISTRY, "fan-2d", dataclasses.replace(fan, url=f"http://127.0.0.1:{port}/{fan.file}"))
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(tmp_path / "o"),
                                       "--set", 'face.backend="fan"'])
    assert result.exit_code == 2
    if importlib.util.find_spec("face_alignment") is None:
        assert "face.backend=fan needs the optional extra: pip install 'talkdata[fan]'" in result.output
    else:
        assert f"FAN weights not found: {tmp_path / 'torch' / 'hub' / 'checkpoints' / fan.file}" in result.output


def test_card_shows_the_shape_modes(grid):
    from PIL import Image

    png = grid / "card" / "shape_modes.png"
    with Image.open(png) as image:
        assert image.size == (880, 260)
        pixels = np.asarray(image.convert("L"))
    assert (pixels < 128).mean() > 0.005  # points were drawn, not an empty canvas
    assert "card/shape_modes.png" in (grid / "README.md").read_text()
    manifest = json.loads((grid / "dataset.json").read_text())
    assert f"{manifest['shape_model']['explained_variance_ratio_first_6']:.3f} (first 6)" in (grid / "README.md").read_text()
