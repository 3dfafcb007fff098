"""The settings every reference loop shares (:class:`LoopSettings`), ``--set`` overrides checked
against their declaration (:mod:`talkdata.declare`), and the ``eval_splits`` setting read as split names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..declare import replace_checked, setting
from ..errors import UserError
from ..shards import SPLITS


@dataclass(frozen=True)
class LoopSettings:
    """Settings every reference loop has (how it runs); each loop adds its model's and its defaults.

    Declared like the build config (:func:`talkdata.declare.setting`): ``--set`` values are checked
    against each field's type and range, and an unknown name gets a did-you-mean.
    """

    steps: int = setting(2000, "training steps", ge=1, le=10**9)
    stride: int = setting(16, "frames between the starts of consecutive training windows", ge=1, le=100_000)
    workers: int = setting(0, "DataLoader worker processes (0: read in the training process)", ge=0, le=256)
    shuffle_buffer: int = setting(256, "items in the loader's shuffle buffer (0 or 1: no shuffling)", ge=0,
                                  le=10**7)
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", ge=0, le=1024)
    eval_every: int = setting(500, "evaluate every N steps (0: only at the end)", ge=0, le=10**9)
    checkpoint_every: int = setting(500, "write checkpoint.pt every N steps (0: only at the end)", ge=0, le=10**9)
    eval_splits: str = setting("val", "splits to evaluate on, comma-separated (train,val) or none "
                               "(checked by eval_split_names when the loop starts)")


def apply_overrides(settings, overrides: dict[str, Any]):
    """A copy of the ``settings`` dataclass with ``--set`` values, each checked against its declaration."""
    return replace_checked(settings, overrides, "training setting")


def eval_split_names(settings) -> list[str]:
    """``eval_splits`` ("val", "train,val", "none") as a list of split names."""
    text = settings.eval_splits.strip()
    if text in ("", "none"):
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in SPLITS:
            raise UserError(f"eval_splits takes train, val, test (comma-separated) or none, got {settings.eval_splits!r}")
    return list(dict.fromkeys(names))
