"""``talkdata train facial-pose``: audio -> head pose + blink, FACIAL's audio2face pose targets.

Data: ``load(data, profile="facial", window=settings.window)`` - per frame a (16, C) window of
audio features at 30 fps, with DeepSpeech logits (C = 29) when the dataset has them and otherwise,
explicitly, MFCC rows (``features="mfcc"``, C = 52; the choice is written to ``config.json``);
targets pitch, yaw, roll z-scored per clip, and blink (eye aspect ratio).

Model: a per-frame encoder (layer norm, two linear + ReLU layers over the flattened window), a
temporal convolution stack (``layers`` x Conv1d, kernel ``kernel``, ReLU) over the sequence, and a
linear layer to 4 values per frame. Loss: MSE on (pitch, yaw, roll z-scores, blink).

Evaluation (``eval_splits``, default ``val``; every sequence of each split, every ``eval_every``
steps and at the end): pose error in degrees, the mean absolute error of each angle after undoing
the z-score with the clip's ``pose_std`` (``pose_error_deg``, and per angle); the constant baseline
``mean_pose_error_deg`` is the same error for predicting the clip's mean pose (z-score 0) for every
frame. ``blink_error`` is the mean absolute blink error; ``loss`` of an evaluation row is the same
MSE as in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..declare import setting
from ..errors import UserError
from ..loader import load
from ..loader.shard_list import open_dataset
from .batches import eval_batches, eval_dataset
from .fit import fit
from .result import RunResult
from .seeding import seed_everything
from .settings import LoopSettings, eval_split_names
from .model_task import Task

ANGLES = ("pitch", "yaw", "roll")


@dataclass(frozen=True)
class Settings(LoopSettings):
    batch_size: int = setting(8, "sequences per batch", ge=1, le=65_536)
    lr: float = setting(1e-3, "Adam learning rate", gt=0, le=10)
    window: int = setting(32, "frames per training sequence", ge=1, le=10_000)
    hidden: int = setting(128, "width of the per-frame encoder and the temporal convolutions", ge=1, le=65_536)
    layers: int = setting(3, "temporal convolution layers", ge=1, le=64)
    kernel: int = setting(5, "temporal convolution kernel (frames)", ge=1, le=255)


class PoseNet(nn.Module):
    """(B, L, 16, C) audio windows -> (B, L, 4): pitch, yaw, roll (z-scores), blink."""

    def __init__(self, window_rows: int, channels: int, s: Settings):
        super().__init__()
        size = window_rows * channels
        self.frame = nn.Sequential(nn.LayerNorm(size), nn.Linear(size, s.hidden), nn.ReLU(inplace=True),
                                   nn.Linear(s.hidden, s.hidden), nn.ReLU(inplace=True))
        temporal: list[nn.Module] = []
        for _ in range(s.layers):
            temporal += [nn.Conv1d(s.hidden, s.hidden, s.kernel, padding=s.kernel // 2), nn.ReLU(inplace=True)]
        self.temporal = nn.Sequential(*temporal)
        self.out = nn.Linear(s.hidden, 4)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = self.frame(audio.flatten(2))  # (B, L, H)
        return self.out(self.temporal(frames.transpose(1, 2)).transpose(1, 2))


def targets(batch: dict, device) -> torch.Tensor:
    return torch.cat([batch["pose"], batch["blink"].unsqueeze(-1)], dim=-1).to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: PoseNet, dataset, device, batch_size: int) -> dict:
    """Metrics over every sequence of ``dataset``: ``loss``, ``pose_error_deg`` (and per angle),
    ``mean_pose_error_deg`` (predicting each clip's mean pose), ``blink_error`` and ``frames``."""
    model.eval()
    errors, constant, blink, squared = [], [], [], []
    for batch in eval_batches(dataset, batch_size):
        out = model(batch["audio"].to(device))
        squared.append(float(nn.functional.mse_loss(out, targets(batch, device), reduction="sum")))
        pred = out.cpu().numpy().astype(np.float64)
        pose, std = batch["pose"].numpy().astype(np.float64), batch["pose_std"].numpy().astype(np.float64)[:, None, :]
        errors.append((np.abs(pred[..., :3] - pose) * std).reshape(-1, 3))
        constant.append((np.abs(pose) * std).reshape(-1, 3))  # the clip's mean pose is 0 in z-scores
        blink.append(np.abs(pred[..., 3] - batch["blink"].numpy()).ravel())
    model.train()
    if not errors:
        raise UserError("the evaluation split has no FACIAL sequence (clips shorter than the window)")
    per_angle = np.concatenate(errors).mean(axis=0)
    frames = int(np.concatenate(errors).shape[0])
    return {"loss": sum(squared) / (frames * 4), "pose_error_deg": float(per_angle.mean()),
            **{f"{a}_error_deg": float(v) for a, v in zip(ANGLES, per_angle)},
            "mean_pose_error_deg": float(np.concatenate(constant).mean()),
            "blink_error": float(np.concatenate(blink).mean()), "frames": frames}


class PoseTask(Task):
    name = "facial-pose"
    columns = ("pose_error_deg", "mean_pose_error_deg", "pitch_error_deg", "yaw_error_deg", "roll_error_deg",
               "blink_error", "frames")
    headline = ("pose_error_deg", "mean_pose_error_deg")

    def __init__(self, eval_sets: dict, device, batch_size: int):
        self.eval_sets = eval_sets
        self.device = device
        self.batch_size = batch_size

    def loss(self, model, batch):
        return nn.functional.mse_loss(model(batch["audio"].to(self.device, non_blocking=True)),
                                      targets(batch, self.device))

    def evaluate(self, model, split):
        return evaluate(model, self.eval_sets[split], self.device, self.batch_size)


def setup(data: str, settings: Settings, device, seed: int):
    """``(task, model, optimizer, train_set, config)`` of a facial-pose run (also used by the benchmark)."""
    features = "deepspeech" if "deepspeech" in open_dataset(data).audio_features else "mfcc"
    common = dict(profile="facial", features=features, window=settings.window)
    train_set = load(data, split="train", stride=settings.stride, seed=seed, shuffle_buffer=settings.shuffle_buffer,
                     **common)
    eval_sets = {split: eval_dataset(lambda: load(data, split=split, stride=settings.window, shuffle=False, **common),
                                     split)
                 for split in eval_split_names(settings)}
    seed_everything(seed, device, settings.threads)
    channels = 29 if features == "deepspeech" else 52
    model = PoseNet(16, channels, settings).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    config = {"loop": "facial-pose", "data": str(data), "dataset_version": train_set.dataset.manifest.get("version"),
              "audio_features": features, "seed": seed, "device": str(device), "torch": str(torch.__version__),
              "settings": asdict(settings), "parameters": sum(p.numel() for p in model.parameters())}
    return PoseTask(eval_sets, device, settings.batch_size), model, optimizer, train_set, config


def train(data: str, out, settings: Settings, device, seed: int, resume: bool | None = None) -> RunResult:
    task, model, optimizer, train_set, config = setup(data, settings, device, seed)
    return fit(task, model, optimizer, train_set, settings, config, out, device, seed, resume)
