"""``checkpoint.pt``: written to a temporary file and renamed (never half-written), read with a clear
error when foreign or damaged, and checked against the run that wants to resume from it."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .device import require_torch

CHECKPOINT = "checkpoint.pt"
#: settings that may change when a run is resumed (the others must match the checkpoint's)
RESUMABLE_CHANGES = frozenset({"steps", "threads", "eval_every", "checkpoint_every", "eval_splits"})


def save_checkpoint(path: Path, state: dict) -> None:
    torch = require_torch()
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save(state, partial)
    except (OSError, RuntimeError) as err:  # torch's zip writer reports a short write as a RuntimeError
        partial.unlink(missing_ok=True)
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0][:200]
        raise UserError(f"cannot write the checkpoint {path} ({detail}); is the disk full? free space and run the "
                        "same command again (it resumes from the last checkpoint written)") from None
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict:
    torch = require_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a foreign or damaged file: say which, do not guess
        raise UserError(f"cannot read the checkpoint {path} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                        "move it away to start the run afresh") from None


def check_resumable(checkpoint: dict, config: dict, path: Path) -> None:
    """The checkpoint must come from the same loop, data version, seed and settings."""
    old = checkpoint.get("config", {})
    for key in ("loop", "dataset_version", "seed"):
        if old.get(key) != config.get(key):
            raise UserError(f"{path} is a checkpoint of another run ({key} {old.get(key)!r}, this run {config.get(key)!r}); "
                            "use another --out, or delete the folder to start again")
    for key, value in config["settings"].items():
        if key not in RESUMABLE_CHANGES and old.get("settings", {}).get(key) != value:
            raise UserError(f"{path} was trained with {key}={old.get('settings', {}).get(key)!r}, this run asks for "
                            f"{key}={value!r}; only {', '.join(sorted(RESUMABLE_CHANGES))} may change when resuming "
                            "(use another --out to start a new run)")
