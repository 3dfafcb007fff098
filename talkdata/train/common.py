"""What every reference training loop shares: torch / device checks, seeding, settings, the run
folder (``config.json``, ``metrics.jsonl``, ``metrics.json``, ``checkpoint.pt``) and batches.

Only this package imports torch, and only when a loop runs: ``import talkdata`` and the loader work
without it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UserError

INSTALL_HINT = "pip install 'talkdata[train]'"


def require_torch():
    """The torch module, or a ``UserError`` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise UserError(f"the training loops need PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


def pick_device(name: str):
    torch = require_torch()
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"--device cuda: CUDA is not available ({why}, torch {torch.__version__}); use --device cpu")
        return torch.device("cuda")
    raise UserError(f"unknown device {name!r}; use cpu or cuda")


def seed_everything(seed: int, device, threads: int = 0) -> None:
    """Same seed, same device, same losses: seeded RNGs and deterministic kernels (``threads`` > 0
    also fixes torch's CPU thread count, which helps small models on busy machines)."""
    torch = require_torch()
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def apply_overrides(settings, overrides: dict[str, Any]):
    """A copy of the ``settings`` dataclass with ``--set`` values (same types; unknown keys refused)."""
    known = {f.name: f for f in dataclasses.fields(settings)}
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise UserError(f"unknown training setting {key!r}; settings: {', '.join(sorted(known))}")
        current = getattr(settings, key)
        if isinstance(current, bool) or isinstance(value, bool):
            ok = isinstance(current, bool) and isinstance(value, bool)
        elif isinstance(current, float):
            ok = isinstance(value, (int, float))
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(current))
        if not ok:
            raise UserError(f"training setting {key!r} takes a {type(current).__name__}, got {value!r}")
        changes[key] = value
    return dataclasses.replace(settings, **changes)


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    losses: list[float] = field(repr=False)
    validation: dict[str, Any]

    def summary(self) -> str:
        head = sum(self.losses[:10]) / len(self.losses[:10])
        tail = sum(self.losses[-10:]) / len(self.losses[-10:])
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in self.validation.items() if isinstance(v, (int, float)))
        return (f"trained {self.steps} steps: loss {head:.4g} (first 10) -> {tail:.4g} (last 10)\n"
                f"validation: {metrics}\nrun folder: {self.run_dir}")


class RunFolder:
    """``config.json`` at the start, one ``metrics.jsonl`` line per step, then validation,
    ``metrics.json`` (summary) and ``checkpoint.pt``."""

    def __init__(self, path: str | Path, config: dict):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            self._metrics = open(self.path / "metrics.jsonl", "w")
        except OSError as err:
            raise UserError(f"cannot write the run folder {self.path}: {err.strerror or err}") from None

    def log(self, record: dict) -> None:
        self._metrics.write(json.dumps(record, sort_keys=True) + "\n")
        self._metrics.flush()

    def finish(self, summary: dict, checkpoint: dict) -> None:
        torch = require_torch()
        self._metrics.close()
        (self.path / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        torch.save(checkpoint, self.path / "checkpoint.pt")


def batches(dataset, batch_size: int, workers: int, what: str) -> Iterator[tuple[int, dict]]:
    """``(epoch, batch)`` forever: epoch after epoch of ``dataset`` (``set_epoch`` each time)."""
    torch = require_torch()
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        count = 0
        for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers):
            count += 1
            yield epoch, batch
        if count == 0:
            raise UserError(f"no {what} in {dataset.dataset.source}: every clip is shorter than one window "
                            "(lower --set window=...)")
        epoch += 1


def every(steps: int, parts: int = 10) -> Callable[[int], bool]:
    """True on about ``parts`` evenly spaced steps and on the last one (progress lines)."""
    interval = max(1, steps // parts)
    return lambda step: step % interval == 0 or step == steps
