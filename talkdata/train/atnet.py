"""``talkdata train atnet``: ATVG's audio transformation network (AT-net, Chen et al. CVPR 2019).

Data: ``load(data, profile="atvg", fields=["pca.npy", "mfcc.npy"])`` - the example frame's 6 PCA
codes (x5 scale), MFCC windows (16, 28, 12) and the 16 target codes.

Model, after ATVGnet's ``AT_net`` (the layer plan is described here, written for talkdata):

* audio encoder, per target frame: 5 conv 3x3 blocks (``c, 2c | maxpool 3 stride (1, 2) |
  4c, 4c, 8c | maxpool 3 stride 2``, batch norm + ReLU) over the 28 x 12 MFCC window, then
  ``fc`` -> ``audio_dim`` (ATVG: c = 64, 12288 -> 2048 -> 256);
* example-landmark encoder: 6 -> 256 -> ``example_dim`` (512);
* a ``layers``-layer LSTM (``hidden`` 256, ATVG: 3 layers) over the 16 frames of
  ``[audio features, example features]``, and a linear layer to the 6 codes.

Loss: MSE on the codes. Validation (the ``val`` split, all its windows): landmark error in pixels
of the 128 x 128 region: mean over frames and the 68 points of the distance between the landmarks
the predicted and the true codes reconstruct (through the dataset's PCA basis, in the procrustes
frame scaled to the template's size in a 128-px crop, ``crop.face_width * 128``). ``still_error_px``
is the same error for the model-free prediction "every frame looks like the example frame".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..loader import load
from ..loader.atvg import ATVG_SCALE, CODES
from ..loader.source import open_dataset
from .common import RunFolder, RunResult, batches, every, seed_everything

MFCC_ROWS, MFCC_COLS = 28, 12


@dataclass(frozen=True)
class Settings:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-4
    window: int = 16
    stride: int = 16
    channels: int = 64
    fc: int = 2048
    audio_dim: int = 256
    example_dim: int = 512
    hidden: int = 256
    layers: int = 3
    workers: int = 0
    shuffle_buffer: int = 256
    threads: int = 0  # CPU threads for torch (0: torch's default)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ATNet(nn.Module):
    """(B, 6) example codes + (B, T, 28, 12) MFCC windows -> (B, T, 6) codes."""

    def __init__(self, s: Settings):
        super().__init__()
        c = s.channels
        self.audio = nn.Sequential(
            *_conv(1, c), *_conv(c, 2 * c), nn.MaxPool2d(3, stride=(1, 2)),
            *_conv(2 * c, 4 * c), *_conv(4 * c, 4 * c), *_conv(4 * c, 8 * c), nn.MaxPool2d(3, stride=2),
        )
        with torch.no_grad():
            flat = self.audio(torch.zeros(1, 1, MFCC_ROWS, MFCC_COLS)).numel()
        self.audio_fc = nn.Sequential(nn.Linear(flat, s.fc), nn.ReLU(inplace=True), nn.Linear(s.fc, s.audio_dim),
                                      nn.ReLU(inplace=True))
        self.example = nn.Sequential(nn.Linear(CODES, 256), nn.ReLU(inplace=True), nn.Linear(256, s.example_dim),
                                     nn.ReLU(inplace=True))
        self.lstm = nn.LSTM(s.audio_dim + s.example_dim, s.hidden, s.layers, batch_first=True)
        self.out = nn.Linear(s.hidden, CODES)

    def forward(self, example: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        b, t = mfcc.shape[:2]
        audio = self.audio_fc(self.audio(mfcc.reshape(b * t, 1, MFCC_ROWS, MFCC_COLS)).flatten(1)).reshape(b, t, -1)
        example = self.example(example).unsqueeze(1).expand(b, t, -1)
        hidden, _ = self.lstm(torch.cat([audio, example], dim=2))
        return self.out(hidden)


def landmark_distances(code_difference: np.ndarray, components6: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Per-point distances (..., 68) in pixels between the shapes two x5 code sets reconstruct.

    ``codes = pca * 5 / scale`` and ``shape = (pca @ C + mean) / scale``, so a code difference
    ``d`` moves the shape by ``d @ C / 5`` whatever the build's ``shape.scale``.
    """
    flat = code_difference.astype(np.float64) / ATVG_SCALE @ components6
    return np.linalg.norm(flat.reshape(flat.shape[:-1] + (68, 2)), axis=-1) * px_per_unit


def pixels_per_unit(data: str) -> tuple[np.ndarray, float]:
    """The first 6 PCA components and the size of one procrustes unit in 128-px region pixels."""
    dataset = open_dataset(data)
    model = dataset.shape_model()
    template = np.asarray(model.template, dtype=np.float64)
    face_width = float(dataset.manifest["config"]["crop"]["face_width"])
    return model.basis.components[:CODES], float(np.linalg.norm(template - template.mean(0)) * face_width * 128)


@torch.no_grad()
def evaluate(model: ATNet, dataset, device, components6: np.ndarray, px_per_unit: float, batch_size: int) -> dict:
    model.eval()
    errors, still, squared = [], [], []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        target = batch["target_pca"].numpy()
        pred = model(batch["example_pca"].to(device), batch["mfcc"].to(device)).cpu().numpy()
        errors.append(landmark_distances(pred - target, components6, px_per_unit).mean(axis=-1).ravel())
        example = batch["example_pca"].numpy()[:, None, :]
        still.append(landmark_distances(example - target, components6, px_per_unit).mean(axis=-1).ravel())
        squared.append(((pred - target) ** 2).mean(axis=-1).ravel())
    model.train()
    if not errors:
        raise UserError("the val split has no ATVG window (clips shorter than 23 frames)")
    return {"landmark_error_px": float(np.concatenate(errors).mean()), "still_error_px": float(np.concatenate(still).mean()),
            "code_mse": float(np.concatenate(squared).mean()), "frames": int(np.concatenate(errors).size)}


def train(data: str, out, settings: Settings, device, seed: int, log) -> RunResult:
    fields = ["pca.npy", "mfcc.npy"]
    train_set = load(data, profile="atvg", fields=fields, window=settings.window, stride=settings.stride,
                     split="train", seed=seed, shuffle_buffer=settings.shuffle_buffer)
    val_set = load(data, profile="atvg", fields=fields, window=settings.window, stride=settings.window,
                   split="val", shuffle=False)
    components6, px_per_unit = pixels_per_unit(data)
    seed_everything(seed, device, settings.threads)
    model = ATNet(settings).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    config = {"loop": "atnet", "data": str(data), "dataset_version": train_set.dataset.manifest.get("version"),
              "seed": seed, "device": str(device), "torch": torch.__version__, "settings": asdict(settings),
              "px_per_unit": px_per_unit, "parameters": sum(p.numel() for p in model.parameters())}
    run = RunFolder(out, config)
    losses: list[float] = []
    show = every(settings.steps)
    stream = batches(train_set, settings.batch_size, settings.workers, "ATVG training windows")
    for step in range(1, settings.steps + 1):
        epoch, batch = next(stream)
        pred = model(batch["example_pca"].to(device), batch["mfcc"].to(device))
        loss = nn.functional.mse_loss(pred, batch["target_pca"].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        run.log({"step": step, "epoch": epoch, "loss": losses[-1]})
        if log and show(step):
            log(f"step {step}/{settings.steps} loss {losses[-1]:.5g}")
    validation = evaluate(model, val_set, device, components6, px_per_unit, settings.batch_size)
    run.log({"step": settings.steps, "split": "val", **validation})
    run.finish({"steps": settings.steps, "first_loss": losses[0], "last_loss": losses[-1], "val": validation},
               {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": settings.steps,
                "config": config})
    return RunResult(run.path, settings.steps, losses, validation)
