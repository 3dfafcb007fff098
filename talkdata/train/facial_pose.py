"""``talkdata train facial-pose``: audio -> head pose + blink, FACIAL's audio2face pose targets.

Data: ``load(data, profile="facial", window=settings.window)`` - per frame a (16, C) window of
audio features at 30 fps, with DeepSpeech logits (C = 29) when the dataset has them and otherwise,
explicitly, MFCC rows (``features="mfcc"``, C = 52; the choice is written to ``config.json``);
targets pitch, yaw, roll z-scored per clip, and blink (eye aspect ratio).

Model: a per-frame encoder (layer norm, two linear + ReLU layers over the flattened window), a
temporal convolution stack (``layers`` x Conv1d, kernel ``kernel``, ReLU) over the sequence, and a
linear layer to 4 values per frame. Loss: MSE on (pitch, yaw, roll z-scores, blink).

Validation (the ``val`` split, all its sequences): pose error in degrees, the mean absolute error of
each angle after undoing the z-score with the clip's ``pose_std``; ``still_error_deg`` is the same
error for the model-free prediction "the clip's mean pose".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..loader import load
from ..loader.source import open_dataset
from .common import RunFolder, RunResult, batches, every, seed_everything

ANGLES = ("pitch", "yaw", "roll")


@dataclass(frozen=True)
class Settings:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    window: int = 32
    stride: int = 16
    hidden: int = 128
    layers: int = 3
    kernel: int = 5
    workers: int = 0
    shuffle_buffer: int = 256
    threads: int = 0  # CPU threads for torch (0: torch's default)


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
    return torch.cat([batch["pose"], batch["blink"].unsqueeze(-1)], dim=-1).to(device)


@torch.no_grad()
def evaluate(model: PoseNet, dataset, device, batch_size: int) -> dict:
    model.eval()
    errors, still, blink = [], [], []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        pred = model(batch["audio"].to(device)).cpu().numpy()
        pose, std = batch["pose"].numpy(), batch["pose_std"].numpy()[:, None, :]
        errors.append((np.abs(pred[..., :3] - pose) * std).reshape(-1, 3))
        still.append((np.abs(pose) * std).reshape(-1, 3))  # the mean pose is 0 in z-scores
        blink.append(np.abs(pred[..., 3] - batch["blink"].numpy()).ravel())
    model.train()
    if not errors:
        raise UserError("the val split has no FACIAL sequence (clips shorter than the window)")
    per_angle = np.concatenate(errors).mean(axis=0)
    return {"pose_error_deg": float(per_angle.mean()), **{f"{a}_error_deg": float(v) for a, v in zip(ANGLES, per_angle)},
            "still_error_deg": float(np.concatenate(still).mean()), "blink_error": float(np.concatenate(blink).mean()),
            "frames": int(np.concatenate(errors).shape[0])}


def train(data: str, out, settings: Settings, device, seed: int, log) -> RunResult:
    features = "deepspeech" if "deepspeech" in open_dataset(data).audio_features else "mfcc"
    common = dict(profile="facial", features=features, window=settings.window)
    train_set = load(data, split="train", stride=settings.stride, seed=seed, shuffle_buffer=settings.shuffle_buffer,
                     **common)
    val_set = load(data, split="val", stride=settings.window, shuffle=False, **common)
    seed_everything(seed, device, settings.threads)
    channels = 29 if features == "deepspeech" else 52
    model = PoseNet(16, channels, settings).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    config = {"loop": "facial-pose", "data": str(data), "dataset_version": train_set.dataset.manifest.get("version"),
              "audio_features": features, "seed": seed, "device": str(device), "torch": torch.__version__,
              "settings": asdict(settings), "parameters": sum(p.numel() for p in model.parameters())}
    run = RunFolder(out, config)
    losses: list[float] = []
    show = every(settings.steps)
    stream = batches(train_set, settings.batch_size, settings.workers, "FACIAL training sequences")
    for step in range(1, settings.steps + 1):
        epoch, batch = next(stream)
        loss = nn.functional.mse_loss(model(batch["audio"].to(device)), targets(batch, device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        run.log({"step": step, "epoch": epoch, "loss": losses[-1]})
        if log and show(step):
            log(f"step {step}/{settings.steps} loss {losses[-1]:.5g}")
    validation = evaluate(model, val_set, device, settings.batch_size)
    run.log({"step": settings.steps, "split": "val", **validation})
    run.finish({"steps": settings.steps, "first_loss": losses[0], "last_loss": losses[-1], "val": validation},
               {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": settings.steps,
                "config": config})
    return RunResult(run.path, settings.steps, losses, validation)
