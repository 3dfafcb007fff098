"""The reference training loops through the CLI on the real sample clips: run folder contents
(config.json, metrics.csv, metrics.json, checkpoint.pt), learning against constant-prediction
baselines, exact resume after an interruption, TensorBoard only when it imports, the progress bar,
determinism, and the one-line errors (no CUDA, no torch, bad settings).

Two fixtures. The GRID build has one 3 s clip per split, each of another speaker: a model trained on
that one clip cannot be expected to generalise to the val clip (it does not: see the README), so
the GRID tests check learning on the training clip (``eval_splits=train,val``: the same windows,
evaluated by the loop's own evaluation code) and that the val metrics are computed. The held-out
CREMA-D build (``crema_heldout_dataset``: actor 1001 saying one sentence with four emotions; three
clips train, the SAD clip is val) is where each loop must beat the constant prediction on the
validation split, for several seeds.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import talkdata
import talkdata.train.batches as train_batches
from talkdata.cli import main
from talkdata.errors import UserError
from talkdata.shards import read_shard
from talkdata.train import read_metrics
from test_loader import deepspeech_grid

# a small AT-net so that a CPU test runs in seconds (the defaults are ATVG's sizes)
SMALL_ATNET = ["--set", "channels=4", "--set", "fc=64", "--set", "audio_dim=32", "--set", "example_dim=32",
               "--set", "hidden=32", "--set", "layers=1", "--set", "batch_size=4", "--set", "lr=0.002",
               "--set", "threads=1"]
SMALL_POSE = ["--set", "batch_size=4", "--set", "hidden=32", "--set", "threads=1"]


@pytest.fixture(scope="session")
def ds_grid(tmp_path_factory) -> Path:
    return deepspeech_grid(tmp_path_factory)


def train(*args: str):
    return CliRunner().invoke(main, ["train", *args])


def read_run(run: Path) -> tuple[list[dict], dict, dict]:
    return (read_metrics(run / "metrics.csv"), json.loads((run / "metrics.json").read_text()),
            json.loads((run / "config.json").read_text()))


def train_rows(run: Path) -> list[dict]:
    return [row for row in read_metrics(run / "metrics.csv") if row["phase"] == "train"]


def eval_rows(run: Path) -> list[dict]:
    return [row for row in read_metrics(run / "metrics.csv") if row["phase"] == "eval"]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def shard_arrays(dataset: Path, split: str) -> dict[str, np.ndarray]:
    (files,) = read_shard(next((dataset / "shards" / split).glob("*.tar"))).values()
    return {name[:-4]: np.load(io.BytesIO(data)) for name, data in files.items() if name.endswith(".npy")}


# ------------------------------------------------------------------------------ learning, outputs


def test_atnet_learns_and_beats_the_mean_code_baseline(grid_dataset, tmp_path):
    from talkdata.train.atnet import landmark_distances, pixels_per_unit

    run = tmp_path / "atnet"
    result = train("atnet", "--data", str(grid_dataset), "--steps", "300", "--out", str(run), "--no-progress",
                   "--set", "eval_splits=train,val", "--set", "eval_every=100", *SMALL_ATNET)
    assert result.exit_code == 0, result.output
    rows, summary, config = read_run(run)
    losses = [row["loss"] for row in rows if row["phase"] == "train"]
    assert [row["step"] for row in rows if row["phase"] == "train"] == list(range(1, 301))
    assert mean(losses[-10:]) <= 0.7 * mean(losses[:10])  # the training loss falls by at least 30 %
    assert summary["first10_loss"] == pytest.approx(mean(losses[:10]))
    assert summary["last10_loss"] == pytest.approx(mean(losses[-10:]))
    # evaluation rows: train and val at steps 100, 200 and 300, in pixels of the 128 x 128 region
    evals = [row for row in rows if row["phase"] == "eval"]
    assert [(row["step"], row["split"]) for row in evals] == [(s, split) for s in (100, 200, 300)
                                                              for split in ("train", "val")]
    final = {row["split"]: row for row in evals if row["step"] == 300}
    for split in ("train", "val"):
        values = {k: v for k, v in final[split].items() if k not in ("step", "epoch", "phase", "split")}
        assert values == pytest.approx(summary["eval"][split])
        assert final[split]["frames"] == 4 * 16  # 4 windows of the clip
        for key in ("landmark_error_px", "mean_code_error_px", "still_error_px"):
            assert math.isfinite(final[split][key]) and 0 < final[split][key] < 20
    # the one training clip is learned: well below predicting the mean training code for every frame
    train_eval = final["train"]
    assert train_eval["landmark_error_px"] < 0.5 * train_eval["mean_code_error_px"]
    # that baseline, computed here from the shard: mean of the x5 codes of the trained target frames 4..67
    codes = shard_arrays(grid_dataset, "train")["pca"][:, :6].astype(np.float32) * np.float32(5.0)
    components6, px = pixels_per_unit(str(grid_dataset))
    mean_code = codes[4:68].astype(np.float64).mean(axis=0)
    expected = landmark_distances(mean_code - codes[4:68], components6, px).mean()
    assert train_eval["mean_code_error_px"] == pytest.approx(expected, rel=1e-4)
    # config printed and saved; checkpoint of the last step
    assert config["loop"] == "atnet" and config["settings"]["steps"] == 300 and config["settings"]["channels"] == 4
    assert config["dataset_version"] == json.loads((grid_dataset / "dataset.json").read_text())["version"]
    assert f"config (saved to {run / 'config.json'}):" in result.output and '"channels": 4' in result.output
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 300 and "lstm.weight_ih_l0" in checkpoint["model"]
    assert checkpoint["task"]["code_count"] == 300 * 4 * 16
    assert "train: landmark_error_px" in result.output and "beats the constant prediction" in result.output
    assert "step 150/300 loss" in result.output and str(run) in result.output
    assert not (run / "metrics.jsonl").exists() and not (run / "tensorboard").exists()


def test_facial_pose_with_deepspeech_learns_and_beats_the_mean_pose(ds_grid, tmp_path):
    run = tmp_path / "facial"
    result = train("facial-pose", "--data", str(ds_grid), "--steps", "300", "--out", str(run), "--no-progress",
                   "--set", "eval_splits=train,val", *SMALL_POSE)
    assert result.exit_code == 0, result.output
    rows, summary, config = read_run(run)
    losses = [row["loss"] for row in rows if row["phase"] == "train"]
    assert len(losses) == 300 and mean(losses[-10:]) <= 0.7 * mean(losses[:10])
    assert config["audio_features"] == "deepspeech"
    train_eval, val = summary["eval"]["train"], summary["eval"]["val"]
    # pose error in degrees, well below predicting the clip's mean pose on the trained clip
    assert train_eval["pose_error_deg"] < 0.5 * train_eval["mean_pose_error_deg"]
    for values in (train_eval, val):
        assert values["frames"] == 2 * 32  # 90 frames at 30 fps: sequences at 0 and 32
        assert math.isfinite(values["pose_error_deg"]) and 0 < values["pose_error_deg"] < 30
        assert values["pose_error_deg"] == pytest.approx(
            (values["pitch_error_deg"] + values["yaw_error_deg"] + values["roll_error_deg"]) / 3, rel=1e-5)
        assert 0 < values["mean_pose_error_deg"] < 30 and values["blink_error"] >= 0
    assert [(row["step"], row["split"]) for row in rows if row["phase"] == "eval"] == [(300, "train"), (300, "val")]
    assert (run / "checkpoint.pt").is_file()


@pytest.mark.parametrize("seed", ["0", "1"])
def test_atnet_beats_the_constant_prediction_on_the_validation_split(crema_heldout_dataset, tmp_path, seed):
    run = tmp_path / "atnet"
    result = train("atnet", "--data", str(crema_heldout_dataset), "--steps", "300", "--seed", seed, "--out", str(run),
                   "--no-progress", "--set", "eval_splits=val", *SMALL_ATNET)
    assert result.exit_code == 0, result.output
    val = read_run(run)[1]["eval"]["val"]
    assert val["frames"] == 2 * 16  # the held-out clip's 51 frames: windows at 4 and 20 (ATVG's context)
    # below predicting the mean training code for every frame, and below repeating the example frame
    assert val["landmark_error_px"] < 0.85 * val["mean_code_error_px"]
    assert val["landmark_error_px"] < val["still_error_px"]
    assert f"val: landmark_error_px {val['landmark_error_px']:.4g} beats the constant prediction" in result.output


@pytest.mark.parametrize("seed", ["0", "1"])
def test_facial_pose_beats_the_constant_prediction_on_the_validation_split(crema_heldout_dataset, tmp_path, seed):
    run = tmp_path / "facial"
    result = train("facial-pose", "--data", str(crema_heldout_dataset), "--steps", "300", "--seed", seed,
                   "--out", str(run), "--no-progress", "--set", "eval_splits=val", *SMALL_POSE)
    assert result.exit_code == 0, result.output
    summary, config = read_run(run)[1:]
    assert config["audio_features"] == "mfcc"
    val = summary["eval"]["val"]
    assert val["frames"] == 32  # 51 frames at 25 fps are 61 at 30 fps: one sequence of 32
    # below predicting the clip's mean pose (z-score 0) for every frame
    assert val["pose_error_deg"] < 0.85 * val["mean_pose_error_deg"]


def test_facial_pose_uses_mfcc_without_deepspeech(grid_dataset, tmp_path):
    result = train("facial-pose", "--data", str(grid_dataset), "--steps", "3", "--out", str(tmp_path / "r"),
                   "--set", "threads=1")
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "r")[2]["audio_features"] == "mfcc"
    # the progress bar (stderr) shows the loss; --no-progress hides it and prints step lines instead
    assert "3/3" in result.output and "loss=" in result.output and "step 3/3 loss" not in result.output
    quiet = train("facial-pose", "--data", str(grid_dataset), "--steps", "3", "--out", str(tmp_path / "q"),
                  "--set", "threads=1", "--no-progress")
    assert quiet.exit_code == 0, quiet.output
    assert "loss=" not in quiet.output and "step 3/3 loss" in quiet.output


def test_atnet_is_deterministic_for_a_seed(grid_dataset, tmp_path):
    def metrics(name: str, seed: str) -> str:
        result = train("atnet", "--data", str(grid_dataset), "--steps", "6", "--out", str(tmp_path / name),
                       "--seed", seed, "--no-progress", *SMALL_ATNET)
        assert result.exit_code == 0, result.output
        return (tmp_path / name / "metrics.csv").read_text()

    first = metrics("a", "0")
    assert first == metrics("b", "0")  # every loss and evaluation, to the last digit
    assert first != metrics("c", "1")


# ------------------------------------------------------------------------------------------- resume

LOOP_ARGS = {
    # stride 4: 13 ATVG windows (4 batches) per epoch, 15 FACIAL sequences (4 batches) per epoch, so
    # that the checkpoints fall inside an epoch and resuming must restore the data position
    "atnet": lambda grid, ds: ["atnet", "--data", str(grid), *SMALL_ATNET, "--set", "stride=4"],
    "facial-pose": lambda grid, ds: ["facial-pose", "--data", str(ds), *SMALL_POSE, "--set", "stride=4"],
}


def interrupt_after(monkeypatch, batches: int, error: type[BaseException]) -> None:
    """Make the next run's data stream raise ``error`` when asked for batch ``batches + 1``."""
    original = train_batches.batches

    def stream(*args, **kwargs):
        for count, item in enumerate(original(*args, **kwargs)):
            if count == batches:
                raise error()
            yield item

    monkeypatch.setattr(train_batches, "batches", stream)


def final_state(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def assert_same_run(run: Path, reference: Path) -> None:
    assert [row["step"] for row in train_rows(run)] == list(range(1, 61))
    assert train_rows(run) == train_rows(reference)  # every step's loss, bit for bit
    assert eval_rows(run) == eval_rows(reference)
    ours, theirs = final_state(run), final_state(reference)
    assert ours["step"] == theirs["step"] == 60
    assert ours["model"].keys() == theirs["model"].keys()
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in ours["model"])
    for a, b in zip(ours["optimizer"]["state"].values(), theirs["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(ours["rng"]["torch"], theirs["rng"]["torch"])


@pytest.mark.parametrize("loop", ["atnet", "facial-pose"])
def test_an_interrupted_run_resumes_to_the_same_result(loop, grid_dataset, ds_grid, tmp_path, monkeypatch):
    args = LOOP_ARGS[loop](grid_dataset, ds_grid) + ["--steps", "60", "--no-progress", "--set", "eval_every=20",
                                                     "--set", "eval_splits=train"]
    reference = tmp_path / "whole"
    result = train(*args, "--out", str(reference))
    assert result.exit_code == 0, result.output

    # Ctrl-C after step 30: a checkpoint of step 30 is written on the way out (inside epoch 7)
    ctrl_c = tmp_path / "ctrl-c"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 30, KeyboardInterrupt)
        result = train(*args, "--out", str(ctrl_c))
    assert result.exit_code == 130 and "interrupted after step 30" in result.output
    assert "run the same command again to resume" in result.output
    saved = final_state(ctrl_c)
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (30, 7, 2)
    assert not (ctrl_c / "metrics.json").exists()
    result = train(*args, "--out", str(ctrl_c), "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output and "resumed from step 30" in result.output
    assert json.loads((ctrl_c / "config.json").read_text())["resumed_from_step"] == 30
    assert_same_run(ctrl_c, reference)

    # a crash after step 33: the periodic checkpoint of step 25 is used and rows 26..33 are dropped
    crash = tmp_path / "crash"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 33, RuntimeError)
        result = train(*args, "--out", str(crash), "--set", "checkpoint_every=25")
    assert isinstance(result.exception, RuntimeError)
    assert final_state(crash)["step"] == 25 and train_rows(crash)[-1]["step"] == 33
    result = train(*args, "--out", str(crash), "--set", "checkpoint_every=25")  # the same command: resumes
    assert result.exit_code == 0, result.output
    assert "resumed from step 25" in result.output
    assert_same_run(crash, reference)

    # the same command once more: nothing left to train, the results stay
    before = (crash / "metrics.csv").read_text()
    result = train(*args, "--out", str(crash))
    assert result.exit_code == 0 and "nothing to train" in result.output
    assert (crash / "metrics.csv").read_text() == before


def test_resume_refuses_other_settings_and_a_missing_checkpoint(grid_dataset, tmp_path):
    run = tmp_path / "r"
    assert train("atnet", "--data", str(grid_dataset), "--steps", "2", "--out", str(run), *SMALL_ATNET).exit_code == 0
    result = train("atnet", "--data", str(grid_dataset), "--steps", "4", "--out", str(run), *SMALL_ATNET,
                   "--set", "hidden=64")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "was trained with hidden=32, this run asks for hidden=64" in result.output
    result = train("atnet", "--data", str(grid_dataset), "--steps", "4", "--out", str(run), *SMALL_ATNET, "--seed", "3")
    assert result.exit_code == 2 and "checkpoint of another run (seed 0" in result.output
    result = train("atnet", "--data", str(grid_dataset), "--out", str(tmp_path / "new"), "--resume", *SMALL_ATNET)
    assert result.exit_code == 2 and result.output == f"error: --resume: {tmp_path / 'new'} has no checkpoint.pt " \
                                                      "to resume from\n"


# -------------------------------------------------------------------------------------- TensorBoard


def test_without_tensorboard_nothing_is_written_or_said(grid_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as when `tensorboard` is missing
    with pytest.raises(ImportError):
        import torch.utils.tensorboard  # noqa: F401
    with _no_warnings():
        result = train("facial-pose", "--data", str(grid_dataset), "--steps", "2", "--out", str(tmp_path / "r"),
                       "--set", "threads=1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "tensorboard" not in result.output.replace(str(tmp_path), "").lower()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv",
                                                                  "metrics.json"]


class _no_warnings:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        assert [str(w.message) for w in self.caught] == []


def test_tensorboard_events_when_it_imports(grid_dataset, tmp_path, monkeypatch):
    writers = []

    class SummaryWriter:  # stands in for torch.utils.tensorboard's (which needs the tensorboard package)
        def __init__(self, log_dir, purge_step=None):
            self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
            writers.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, step, value))

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    run = tmp_path / "r"
    args = ["facial-pose", "--data", str(grid_dataset), "--out", str(run), "--set", "threads=1", "--no-progress",
            "--set", "eval_splits=train", "--set", "eval_every=2"]
    assert train(*args, "--steps", "3").exit_code == 0
    assert train(*args, "--steps", "4").exit_code == 0  # resumed: events after step 3 are purged first
    first, second = writers
    assert first.log_dir == str(run / "tensorboard") and first.purge_step is None and first.closed
    rows = read_metrics(run / "metrics.csv")
    losses = [(row["step"], row["loss"]) for row in rows if row["phase"] == "train"]
    logged = [(step, value) for tag, step, value in first.scalars + second.scalars if tag == "train/loss"]
    assert logged == losses and [step for step, _ in logged] == [1, 2, 3, 4]
    assert second.purge_step == 4
    tags = {(tag, step) for tag, step, _ in first.scalars + second.scalars}
    assert {("eval_train/pose_error_deg", 2), ("eval_train/mean_pose_error_deg", 3), ("eval_train/loss", 4)} <= tags


# ------------------------------------------------------------------------------------------ errors


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
        (["atnet", "--data", str(grid_dataset), "--set", "eval_splits=dev"], "eval_splits takes train, val, test"),
        (["atnet", "--data", str(tmp_path / "none")], "dataset folder not found"),
        # the CREMA-D samples have no val clip
        (["atnet", "--data", str(crema_dataset)], "split val of"),
        (["facial-pose", "--data", str(crema_dataset)], "--set eval_splits=... (e.g. train)"),
    ]
    for args, message in cases:
        result = train(*args, "--out", str(tmp_path / "r"))
        assert result.exit_code == 2, result.output
        assert message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------- metric definitions


def test_atnet_landmark_error_is_in_pixels_of_the_128_region(grid_dataset):
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
    from scipy.signal import savgol_filter

    import talkdata
    from talkdata.train.facial_pose import PoseNet, Settings, evaluate

    class MeanPose(PoseNet):  # predicts z = 0: the clip's mean pose
        def forward(self, audio):
            return torch.zeros(audio.shape[0], audio.shape[1], 4)

    val = talkdata.load(grid_dataset, profile="facial", features="mfcc", window=32, split="val", shuffle=False)
    result = evaluate(MeanPose(16, 52, Settings(hidden=8)), val, torch.device("cpu"), 4)
    pose = shard_arrays(grid_dataset, "val")["pose"][:, [1, 0, 2]].astype(np.float64)
    at30 = np.stack([np.interp(np.arange(90) / 30, np.arange(75) / 25, pose[:, a]) for a in range(3)], axis=1)
    at30 = savgol_filter(at30, 5, 3, axis=0)  # the facial profile smooths the pose as FACIAL does
    deviation = np.abs(at30 - at30.mean(axis=0))[:64]  # sequences 0..31 and 32..63
    assert result["frames"] == 64
    assert result["pose_error_deg"] == pytest.approx(deviation.mean(), rel=1e-4)
    assert result["yaw_error_deg"] == pytest.approx(deviation[:, 1].mean(), rel=1e-4)
    assert result["mean_pose_error_deg"] == pytest.approx(result["pose_error_deg"], rel=1e-5)


def test_prefetched_keeps_order_raises_where_the_stream_failed_and_stops_its_thread():
    import threading

    assert list(train_batches.prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield from range(5)
        raise UserError("shard s.tar is truncated")

    got = []
    with pytest.raises(UserError, match="truncated"):
        for item in train_batches.prefetched(failing()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stream = train_batches.prefetched(endless())
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # what `del stream` does in fit
    assert closed.is_set()
    assert not any(t.name == "talkdata-prefetch" and t.is_alive() for t in threading.enumerate())


def test_training_batches_are_read_ahead_only_when_the_step_leaves_the_cpu_to_the_reader(grid_dataset):
    import threading

    dataset = talkdata.load(grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"], split="all", shuffle=False)
    reference = [batch for _, _, batch in itertools.islice(train_batches.batches(dataset, 4, 0, "windows"), 5)]

    def readers() -> int:
        return sum(t.name == "talkdata-prefetch" and t.is_alive() for t in threading.enumerate())

    for workers, read_ahead in ((0, False), (1, True)):
        stream = train_batches.training_batches(dataset, 4, workers, "windows", torch.device("cpu"))
        got = [next(stream)[2] for _ in range(5)]
        assert readers() == int(read_ahead), workers
        assert all(torch.equal(a["mfcc"], b["mfcc"]) and torch.equal(a["target_pca"], b["target_pca"])
                   for a, b in zip(got, reference))
        stream.close()
    assert readers() == 0
