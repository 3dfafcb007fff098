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

Loss: MSE on the codes. Evaluation (``eval_splits``, default ``val``; every window of each split,
every ``eval_every`` steps and at the end): landmark error in pixels of the 128 x 128 region
(``landmark_error_px``): mean over frames and the 68 points of the distance between the landmarks
the predicted and the true codes reconstruct (through the dataset's PCA basis, in the procrustes
frame scaled to the template's size in a 128-px crop, ``crop.face_width * 128``). Baselines on the
same windows: ``mean_code_error_px``, the constant prediction "the mean training code for every
frame" (the mean of every target code of the training batches the run has seen, i.e. the best
constant fit to the same training data; kept in the checkpoint), and ``still_error_px``,
"every frame looks like the example frame". ``loss`` of an evaluation row is the code MSE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..declare import setting
from ..errors import UserError
from ..loader import load
from ..loader.atvg import ATVG_SCALE, CODES
from ..loader.shard_list import open_dataset
from .batches import eval_batches, eval_dataset
from .fit import fit
from .result import RunResult
from .seeding import seed_everything
from .settings import LoopSettings, eval_split_names
from .model_task import Task

MFCC_ROWS, MFCC_COLS = 28, 12


@dataclass(frozen=True)
class Settings(LoopSettings):
    batch_size: int = setting(16, "windows per batch", ge=1, le=65_536)
    lr: float = setting(2e-4, "Adam learning rate", gt=0, le=10)
    window: int = setting(16, "frames per training window", ge=1, le=10_000)
    channels: int = setting(64, "channels of the MFCC encoder's first convolution", ge=1, le=4096)
    fc: int = setting(2048, "width of the MFCC encoder's fully connected layer", ge=1, le=65_536)
    audio_dim: int = setting(256, "audio embedding size", ge=1, le=65_536)
    example_dim: int = setting(512, "example-landmark embedding size", ge=1, le=65_536)
    hidden: int = setting(256, "LSTM hidden size", ge=1, le=65_536)
    layers: int = setting(3, "LSTM layers", ge=1, le=64)


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
    face_width = float(dataset.config.crop.face_width)
    return model.basis.components[:CODES], float(np.linalg.norm(template - template.mean(0)) * face_width * 128)


@torch.no_grad()
def evaluate(model: ATNet, dataset, device, components6: np.ndarray, px_per_unit: float, batch_size: int,
             mean_code: np.ndarray | None = None) -> dict:
    """Metrics over every window of ``dataset``: ``loss`` (code MSE), ``landmark_error_px``,
    ``mean_code_error_px`` (predicting ``mean_code`` for every frame, when given),
    ``still_error_px`` (predicting the example frame's codes) and ``frames``."""
    model.eval()
    errors, still, constant, squared = [], [], [], []
    for batch in eval_batches(dataset, batch_size):
        target = batch["target_pca"].numpy().astype(np.float64)
        pred = model(batch["example_pca"].to(device), batch["mfcc"].to(device)).cpu().numpy().astype(np.float64)
        errors.append(landmark_distances(pred - target, components6, px_per_unit).mean(axis=-1).ravel())
        example = batch["example_pca"].numpy().astype(np.float64)[:, None, :]
        still.append(landmark_distances(example - target, components6, px_per_unit).mean(axis=-1).ravel())
        if mean_code is not None:
            constant.append(landmark_distances(mean_code - target, components6, px_per_unit).mean(axis=-1).ravel())
        squared.append(((pred - target) ** 2).mean(axis=-1).ravel())
    model.train()
    if not errors:
        raise UserError("the evaluation split has no ATVG window (every clip is shorter than the window plus 8 frames "
                        "of example and MFCC context)")
    out = {"loss": float(np.concatenate(squared).mean()), "landmark_error_px": float(np.concatenate(errors).mean())}
    if constant:
        out["mean_code_error_px"] = float(np.concatenate(constant).mean())
    out["still_error_px"] = float(np.concatenate(still).mean())
    out["frames"] = int(np.concatenate(errors).size)
    return out


class ATNetTask(Task):
    """AT-net's loss, the running mean of the training codes (the constant baseline) and evaluation."""

    name = "atnet"
    columns = ("landmark_error_px", "mean_code_error_px", "still_error_px", "frames")
    headline = ("landmark_error_px", "mean_code_error_px")

    def __init__(self, eval_sets: dict, device, components6: np.ndarray, px_per_unit: float, batch_size: int):
        self.eval_sets = eval_sets
        self.device = device
        self.components6 = components6
        self.px_per_unit = px_per_unit
        self.batch_size = batch_size
        self.code_sum = torch.zeros(CODES, dtype=torch.float64)
        self.code_count = 0

    def loss(self, model, batch):
        target = batch["target_pca"]
        self.code_sum += target.double().sum(dim=(0, 1))
        self.code_count += target.shape[0] * target.shape[1]
        pred = model(batch["example_pca"].to(self.device, non_blocking=True),
                     batch["mfcc"].to(self.device, non_blocking=True))
        return nn.functional.mse_loss(pred, target.to(self.device, non_blocking=True))

    def mean_code(self) -> np.ndarray | None:
        return (self.code_sum / self.code_count).numpy() if self.code_count else None

    def evaluate(self, model, split):
        return evaluate(model, self.eval_sets[split], self.device, self.components6, self.px_per_unit,
                        self.batch_size, self.mean_code())

    def state_dict(self):
        return {"code_sum": self.code_sum.clone(), "code_count": self.code_count}

    def load_state_dict(self, state):
        self.code_sum = state["code_sum"].clone()
        self.code_count = int(state["code_count"])


def setup(data: str, settings: Settings, device, seed: int):
    """``(task, model, optimizer, train_set, config)`` of an AT-net run (also used by the benchmark)."""
    fields = ["pca.npy", "mfcc.npy"]
    train_set = load(data, profile="atvg", fields=fields, window=settings.window, stride=settings.stride,
                     split="train", seed=seed, shuffle_buffer=settings.shuffle_buffer)
    eval_sets = {split: eval_dataset(lambda: load(data, profile="atvg", fields=fields, window=settings.window,
                                                  stride=settings.window, split=split, shuffle=False), split)
                 for split in eval_split_names(settings)}
    components6, px_per_unit = pixels_per_unit(data)
    seed_everything(seed, device, settings.threads)
    model = ATNet(settings).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    config = {"loop": "atnet", "data": str(data), "dataset_version": train_set.dataset.manifest.get("version"),
              "seed": seed, "device": str(device), "torch": str(torch.__version__), "settings": asdict(settings),
              "px_per_unit": px_per_unit, "parameters": sum(p.numel() for p in model.parameters())}
    task = ATNetTask(eval_sets, device, components6, px_per_unit, settings.batch_size)
    return task, model, optimizer, train_set, config


def train(data: str, out, settings: Settings, device, seed: int, resume: bool | None = None) -> RunResult:
    task, model, optimizer, train_set, config = setup(data, settings, device, seed)
    return fit(task, model, optimizer, train_set, settings, config, out, device, seed, resume)
