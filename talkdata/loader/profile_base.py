"""What a profile is: the base class every profile module subclasses, and its option declarations.

A profile turns one decoded clip into the training items of one published system. It declares

* the shard fields it needs (``required``) and those whose outputs can be left out (``optional``:
  ``load(..., fields=[...])`` picks among them, e.g. ATVG without ``video.mp4`` for AT-net);
* its options (keyword arguments of :func:`talkdata.load`): name -> :func:`option` (type, default,
  range or choices and help, checked by :meth:`Profile.resolve_options` with the same mechanism as
  the build config, see :mod:`talkdata.declare`), or name -> a plain default for a value the
  declarations cannot type (ATVG's ``basis`` folder, a str or ``os.PathLike``);
* its default ``window`` (frames per item) or ``None`` when items are not frame windows;
* :meth:`Profile.setup`: what depends on the dataset or the chosen fields (options are already
  checked), run once in :func:`load` (errors are ``UserError`` lines there, before any worker
  starts), and the constants the items need;
* :meth:`Profile.items`: a generator over one clip's items, a pure function of the clip and the
  :class:`ItemContext`.

The registry of profiles is :mod:`talkdata.loader.profiles`; profile modules import this module,
never the registry (which imports them).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..declare import Spec, check_value, did_you_mean, setting
from ..errors import UserError
from .members import Clip
from .shard_list import DatasetSource
from .epoch_plan import rng_for


@dataclass(frozen=True)
class Option:
    """A declared profile option: its type (``int``, ``float | None``, ...), default and :class:`Spec`."""

    type: Any
    default: Any
    spec: Spec


def option(type_: Any, default: Any, help: str, **accepts: Any) -> Option:
    """Declare a profile option; ``accepts`` takes :func:`talkdata.declare.setting`'s keywords (ge, le,
    choices, ...)."""
    return Option(type_, default, setting(default, help, **accepts).metadata["spec"])


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
    #: option name -> an :func:`option` declaration (type, range or choices, help), or a plain default
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

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """The profile's defaults updated with ``given`` (keyword arguments of :func:`talkdata.load`).

        An unknown name is refused with a did-you-mean; a declared option's value is converted to its
        type and checked against its range or choices (one ``UserError`` line each).
        """
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UserError(f"profile {self.name!r} has no option {unknown[0]!r}"
                            f"{did_you_mean(unknown[0], self.options)} (its options: {known})")
        resolved = {}
        for name, declared in self.options.items():
            if not isinstance(declared, Option):
                resolved[name] = given.get(name, declared)
                continue
            value = given.get(name, declared.default)
            try:
                resolved[name] = check_value(name, declared.type, declared.spec, value)
            except UserError as err:
                raise UserError(str(err).replace(f"config key {name!r}", f"option {name!r} of profile {self.name!r}",
                                                 1)) from None
        return resolved

    def fewest_frames(self, window: int | None, options: dict[str, Any], fps: float) -> tuple[int, str]:
        """``(frames, why)``: the fewest frames a clip of a ``fps`` dataset needs to give one item
        (a lower bound where the exact count depends on more than the frames), and what asks for them."""
        if window is None:
            return 1, "whole clips"
        return window, "the window"

    @abc.abstractmethod
    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        """The profile's items (dicts of numpy arrays) cut from one decoded clip."""


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value, meaning: str = "") -> int:
    """``value`` as an int >= 0, else one ``UserError`` line naming ``name`` and the range
    (``meaning``: what the small values do, e.g. " (0 or 1: no shuffle buffer)")."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise UserError(f"{name} must be an integer >= 0{meaning}, got {value!r}")
    return int(value)
