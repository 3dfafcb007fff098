"""The reference training loops through the CLI on the real GRID samples: run folder contents,
loss going down on a small overfit run, validation metrics in their units, determinism, and the
one-line errors (no CUDA, no torch, bad settings)."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from talkdata.cli import main
from test_loader import deepspeech_grid

# a small AT-net so that a CPU test runs in seconds (the defaults are ATVG's sizes)
SMALL_ATNET = ["--set", "channels=4", "--set", "fc=64", "--set", "audio_dim=32", "--set", "example_dim=32",
               "--set", "hidden=32", "--set", "layers=1", "--set", "batch_size=4", "--set", "lr=0.002",
               "--set", "threads=1"]


@pytest.fixture(scope="session")
def ds_grid(tmp_path_factory) -> Path:
    return deepspeech_grid(tmp_path_factory)


def train(*args: str):
    return CliRunner().invoke(main, ["train", *args])


def read_run(run: Path) -> tuple[list[dict], dict, dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return lines, json.loads((run / "metrics.json").read_text()), json.loads((run / "config.json").read_text())


def step_losses(run: Path) -> list[float]:
    return [line["loss"] for line in read_run(run)[0] if "loss" in line]


def test_atnet_overfits_one_grid_clip(grid_dataset, tmp_path):
    run = tmp_path / "atnet"
    result = train("atnet", "--data", str(grid_dataset), "--steps", "150", "--out", str(run), *SMALL_ATNET)
    assert result.exit_code == 0, result.output
    lines, summary, config = read_run(run)
    losses = [line["loss"] for line in lines if "loss" in line]
    assert [line["step"] for line in lines if "loss" in line] == list(range(1, 151))
    assert sum(losses[-10:]) / 10 < 0.25 * sum(losses[:10]) / 10  # the one training clip is learned
    val = lines[-1]
    assert val["split"] == "val" and val == {"step": 150, "split": "val", **summary["val"]}
    # landmark error in pixels of the 128 x 128 region: finite, positive, well under the face size
    assert math.isfinite(val["landmark_error_px"]) and 0 < val["landmark_error_px"] < 20
    assert 0 < val["still_error_px"] < 20 and val["frames"] == 4 * 16  # 4 windows of the val clip
    assert config["loop"] == "atnet" and config["settings"]["steps"] == 150 and config["settings"]["channels"] == 4
    assert config["dataset_version"] == json.loads((grid_dataset / "dataset.json").read_text())["version"]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 150 and "lstm.weight_ih_l0" in checkpoint["model"]
    assert "landmark_error_px" in result.output and str(run) in result.output


def test_atnet_is_deterministic_for_a_seed(grid_dataset, tmp_path):
    def losses(name: str, seed: str) -> list[float]:
        result = train("atnet", "--data", str(grid_dataset), "--steps", "6", "--out", str(tmp_path / name),
                       "--seed", seed, *SMALL_ATNET)
        assert result.exit_code == 0, result.output
        return step_losses(tmp_path / name)

    first = losses("a", "0")
    assert first == losses("b", "0")
    assert first != losses("c", "1")


def test_facial_pose_with_deepspeech_overfits(ds_grid, tmp_path):
    run = tmp_path / "facial"
    result = train("facial-pose", "--data", str(ds_grid), "--steps", "80", "--out", str(run),
                   "--set", "batch_size=4", "--set", "hidden=32", "--set", "threads=1")
    assert result.exit_code == 0, result.output
    lines, summary, config = read_run(run)
    losses = step_losses(run)
    assert len(losses) == 80 and sum(losses[-10:]) < 0.25 * sum(losses[:10])
    assert config["audio_features"] == "deepspeech"
    val = summary["val"]
    # pose error in degrees (GRID heads move a few degrees): finite and of that order
    assert math.isfinite(val["pose_error_deg"]) and 0 < val["pose_error_deg"] < 30
    assert val["pose_error_deg"] == pytest.approx(
        (val["pitch_error_deg"] + val["yaw_error_deg"] + val["roll_error_deg"]) / 3, rel=1e-5)
    assert val["frames"] == 2 * 32  # 90 frames at 30 fps: sequences at 0 and 32
    assert (run / "checkpoint.pt").is_file()


def test_facial_pose_uses_mfcc_without_deepspeech(grid_dataset, tmp_path):
    result = train("facial-pose", "--data", str(grid_dataset), "--steps", "3", "--out", str(tmp_path / "r"),
                   "--set", "threads=1")
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "r")[2]["audio_features"] == "mfcc"


def test_cuda_without_cuda_is_one_line(grid_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = train("atnet", "--data", str(grid_dataset), "--device", "cuda", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert result.output.startswith("error: --device cuda: CUDA is not available")
    assert "--device cpu" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_missing_torch_is_one_line(grid_dataset, tmp_path):
    script = ("import sys; sys.modules['torch'] = None\n"
              "from talkdata.cli import main\n"
              f"main(['train', 'atnet', '--data', {str(grid_dataset)!r}, '--out', {str(tmp_path / 'r')!r}])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == "error: the training loops need PyTorch, which is not installed: " \
                            "pip install 'talkdata[train]'\n"


def test_bad_training_input_is_one_line(grid_dataset, crema_dataset, tmp_path):
    cases = [
        (["wav2lip", "--data", str(grid_dataset)], "unknown training loop 'wav2lip'; choose from atnet, facial-pose"),
        (["atnet", "--data", str(grid_dataset), "--set", "depth=3"], "unknown training setting 'depth'"),
        (["atnet", "--data", str(grid_dataset), "--set", "lr=fast"], "training setting 'lr' takes a float"),
        (["atnet", "--data", str(tmp_path / "none")], "dataset folder not found"),
        (["atnet", "--data", str(crema_dataset)], "split val of"),  # the CREMA-D samples have no val clip
    ]
    for args, message in cases:
        result = train(*args, "--out", str(tmp_path / "r"))
        assert result.exit_code == 2, result.output
        assert message in result.output and result.output.count("\n") == 1


def test_atnet_landmark_error_is_in_pixels_of_the_128_region(grid_dataset):
    import numpy as np

    from talkdata.face.shape import ShapeBasis, load_shape_model, reconstruct
    from talkdata.train.atnet import landmark_distances, pixels_per_unit

    components6, px_per_unit = pixels_per_unit(str(grid_dataset))
    model = load_shape_model(grid_dataset / "stats/shape_model.npz")
    # the template is 1 unit wide in x and spans crop.face_width * 128 = 76.8 px of the 128-px region
    std = model.template_std
    assert (std[:, 0].max() - std[:, 0].min()) * px_per_unit == pytest.approx(0.6 * 128)
    basis = model.basis
    six = ShapeBasis(basis.mean, basis.components[:6], basis.explained_variance[:6],
                     basis.explained_variance_ratio[:6], basis.scale)
    codes = np.random.default_rng(0).normal(scale=0.1, size=(2, 6))  # x5 codes, as the atvg profile gives
    shapes = reconstruct(codes * basis.scale / 5, six)
    expected = np.linalg.norm(shapes[0] - shapes[1], axis=-1) * px_per_unit
    assert np.allclose(landmark_distances(codes[0] - codes[1], components6, px_per_unit), expected)


def test_facial_pose_error_is_in_degrees(grid_dataset):
    import numpy as np

    import talkdata
    from talkdata.shards import read_shard
    from talkdata.train.facial_pose import PoseNet, Settings, evaluate

    class MeanPose(PoseNet):  # predicts z = 0: the clip's mean pose
        def forward(self, audio):
            return torch.zeros(audio.shape[0], audio.shape[1], 4)

    val = talkdata.load(grid_dataset, profile="facial", features="mfcc", window=32, split="val", shuffle=False)
    result = evaluate(MeanPose(16, 52, Settings(hidden=8)), val, torch.device("cpu"), 4)
    (files,) = read_shard(next((grid_dataset / "shards" / "val").glob("*.tar"))).values()
    pose = np.load(io.BytesIO(files["pose.npy"]))[:, [1, 0, 2]].astype(np.float64)
    at30 = np.stack([np.interp(np.arange(90) / 30, np.arange(75) / 25, pose[:, a]) for a in range(3)], axis=1)
    deviation = np.abs(at30 - at30.mean(axis=0))[:64]  # sequences 0..31 and 32..63
    assert result["frames"] == 64
    assert result["pose_error_deg"] == pytest.approx(deviation.mean(), rel=1e-4)
    assert result["yaw_error_deg"] == pytest.approx(deviation[:, 1].mean(), rel=1e-4)
    assert result["still_error_deg"] == pytest.approx(result["pose_error_deg"], rel=1e-5)
