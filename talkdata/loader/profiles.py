"""What a profile is, and the registry of profiles.

A profile turns one decoded clip into the training items of one published system. It declares

* the shard fields it needs (``required``) and those whose outputs can be left out (``optional``:
  ``load(..., fields=[...])`` picks among them, e.g. ATVG without ``video.mp4`` for AT-net);
* its options (keyword arguments of :func:`talkdata.load`) with their defaults;
* its default ``window`` (frames per item) or ``None`` when items are not frame windows;
* :meth:`Profile.setup`: dataset-level checks and constants, run once in :func:`load` (errors are
  ``UserError`` lines there, before any worker starts);
* :meth:`Profile.items`: a generator over one clip's items, a pure function of the clip and the
  :class:`ItemContext`.

The profile modules (``raw``, ``atvg``, ``sda``, ``diffused_heads``, ``facial``, ``vid2vid``) each
hold one profile; the docstring of each says which published code it follows.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..errors import UserError
from .decode import Clip
from .source import DatasetSource
from .stream import rng_for


@dataclass(frozen=True)
class ItemContext:
    """Everything :meth:`Profile.items` may depend on besides the clip."""

    fields: frozenset[str]
    window: int | None
    stride: int
    seed: int
    epoch: int
    options: dict[str, Any]
    setup: dict[str, Any] = field(default_factory=dict)

    def rng(self, clip: Clip, *extra) -> np.random.Generator:
        """Randomness of one clip in one epoch: the same whatever worker reads it."""
        return rng_for(self.seed, self.epoch, clip.key, *extra)


class Profile(abc.ABC):
    name = "None"
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    default_window: int | None = 16
    windowed = True  # False: items are not frame windows; load() refuses window / stride
    window_fixed = False  # True: the window is always default_window (load() refuses others)
    whole_clips = False  # True: window=None (load(whole_clips=True)) gives one item per clip
    options: dict[str, Any] = {}

    def field_sets(self, options: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) shard fields for these options."""
        return self.required, self.optional

    def default_fields(self, dataset: DatasetSource, options: dict[str, Any]) -> tuple[str, ...]:
        """The fields read when ``load`` gets ``fields=None``."""
        required, optional = self.field_sets(options)
        return required + optional

    def setup(self, dataset: DatasetSource, fields: frozenset[str], options: dict[str, Any]) -> dict[str, Any]:
        return {}

    @abc.abstractmethod
    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        """The profile's items (dicts of numpy arrays) cut from one decoded clip."""


def choose(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def registry() -> dict[str | None, Profile]:
    from .atvg import ATVG
    from .diffused_heads import DiffusedHeads
    from .facial import FACIAL
    from .raw import Raw
    from .sda import SDA
    from .vid2vid import Vid2Vid

    return {None: Raw(), "atvg": ATVG(), "sda": SDA(), "diffused_heads": DiffusedHeads(), "facial": FACIAL(),
            "vid2vid": Vid2Vid()}


def get_profile(name: str | None) -> Profile:
    profiles = registry()
    if name not in profiles:
        known = ", ".join(sorted(k for k in profiles if k))
        raise UserError(f"unknown profile {name!r}; known profiles: {known} (or None for plain windows)")
    return profiles[name]
