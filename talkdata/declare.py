"""Declared settings: frozen dataclasses whose fields carry a type, a range or choices, and help.

One mechanism serves the build configuration (:mod:`talkdata.config`), the training loops'
``Settings`` (``talkdata train ... --set``) and the loader profiles' options. A field is declared
with :func:`setting`::

    @dataclass(frozen=True)
    class Crop:
        size: int = setting(256, "crops are S x S pixels", ge=16, le=2048)
        border: str = setting("replicate", "how pixels outside the frame are filled",
                              choices=("replicate", "constant", "reflect"))

Types come from the annotations: ``bool``, ``int``, ``float`` (finite; an int is accepted),
``str``, ``tuple[int, ...]`` / ``tuple[str, ...]`` (given as lists) and ``X | None``. A field
declared without :func:`setting` (plain default) is still type-checked. :func:`check_value` turns a
user's value into the field's type or raises :class:`~talkdata.errors.UserError` with one line
naming the key and what it accepts; :func:`replace_checked` does that for a whole dict of
overrides and suggests the closest key for an unknown one (:func:`did_you_mean`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import UserError


@dataclass(frozen=True)
class Spec:
    """What a field accepts besides its type (bounds are inclusive unless ``*_open``)."""

    help: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple | None = None
    pattern: str | None = None  # a str value must match this regex in full
    accepts: str | None = None  # what the pattern allows, in words (shown instead of the regex)
    item_lo: float | None = None  # tuple fields: bounds of every item
    item_hi: float | None = None
    item_choices: tuple | None = None  # tuple fields: allowed items
    min_items: int = 0
    model: bool = False  # a path to a model file: only its sha256 identifies it (see talkdata.config)

    def describe(self) -> str:
        """The range or choices as shown by ``--list-keys`` ('' when unconstrained)."""
        parts = []
        if self.lo is not None or self.hi is not None:
            left = "(" if self.lo_open else "["
            right = ")" if self.hi_open else "]"
            lo = "-inf" if self.lo is None else _num(self.lo)
            hi = "inf" if self.hi is None else _num(self.hi)
            if self.hi is None:
                right = ")"
            parts.append(f"{left}{lo}, {hi}{right}")
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(_show, self.choices)))
        if self.pattern is not None:
            parts.append(self.accepts or f"matching {self.pattern}")
        if self.item_lo is not None or self.item_hi is not None:
            parts.append(f"items in [{_num(self.item_lo)}, {_num(self.item_hi)}]")
        if self.item_choices is not None:
            parts.append("items from " + ", ".join(map(_show, self.item_choices)))
        if self.min_items:
            parts.append(f"at least {self.min_items} items")
        if self.model:
            parts.append("model file path, '' for none")
        return "; ".join(parts)


def setting(default: Any, help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, choices: Iterable | None = None, pattern: str | None = None,
            accepts: str | None = None,
            item_ge: float | None = None, item_le: float | None = None, item_choices: Iterable | None = None,
            min_items: int = 0, model: bool = False) -> Any:
    """A dataclass field with its default, one-line help and what it accepts."""
    spec = Spec(help=help, lo=gt if gt is not None else ge, hi=lt if lt is not None else le,
                lo_open=gt is not None, hi_open=lt is not None, choices=tuple(choices) if choices is not None else None,
                pattern=pattern, accepts=accepts, item_lo=item_ge, item_hi=item_le,
                item_choices=tuple(item_choices) if item_choices is not None else None, min_items=min_items,
                model=model)
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class Declared:
    """One declared field of a settings dataclass, as listed by ``--list-keys``."""

    name: str
    type: Any
    default: Any
    spec: Spec

    @property
    def type_name(self) -> str:
        return type_name(self.type)


def declared(cls) -> list[Declared]:
    """The fields of settings dataclass ``cls`` (class or instance), in declaration order."""
    return list(_declared(cls if isinstance(cls, type) else type(cls)))


@functools.cache
def _declared(cls: type) -> tuple[Declared, ...]:
    hints = typing.get_type_hints(cls)  # evaluates the annotations: once per class
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(Declared(f.name, hints[f.name], default, f.metadata.get("spec", Spec())))
    return tuple(out)


def type_name(tp: Any) -> str:
    optional, inner = _unwrap_optional(tp)
    if optional:
        return f"{type_name(inner)} or none"
    if typing.get_origin(tp) is tuple:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(tp, str(tp))


def _unwrap_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


_ARTICLE = {"bool": "true or false", "int": "an integer", "float": "a float", "string": "a string"}


def _convert(key: str, tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` (an int for a float, a list for a tuple), else a UserError."""
    optional, inner = _unwrap_optional(tp)
    if optional:
        return None if value is None else _convert(key, inner, value)
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key!r} takes a list of {type_name(typing.get_args(tp)[0])}, got {value!r}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(key, item_type, v) for v in value)
    name = type_name(tp)
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = not isinstance(value, bool) and isinstance(value, int) or _is_np_int(value)
        value = int(value) if ok else value
    elif tp is float:
        ok = not isinstance(value, bool) and (isinstance(value, (int, float)) or _is_np_number(value))
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise UserError(f"config key {key!r} takes a finite float, got {value!r}")
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a declaration error, not a user error
        raise TypeError(f"{key}: unsupported setting type {tp!r}")
    if not ok:
        raise UserError(f"config key {key!r} takes {_ARTICLE[name]}, got {value!r}")
    return value


def _is_np_int(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"


def _is_np_number(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"


def _in_bounds(value: float, lo, hi, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (value <= lo if lo_open else value < lo):
        return False
    if hi is not None and (value >= hi if hi_open else value > hi):
        return False
    return True


def check_value(key: str, tp: Any, spec: Spec, value: Any) -> Any:
    """``value`` converted to ``tp`` and checked against ``spec``; a one-line UserError otherwise."""
    value = _convert(key, tp, value)
    if value is None:
        return value
    what = spec.describe()
    if isinstance(value, tuple):
        if len(value) < spec.min_items:
            raise UserError(f"config key {key!r} takes a list with {what}, got {list(value)!r}")
        for item in value:
            bad_range = isinstance(item, (int, float)) and not _in_bounds(item, spec.item_lo, spec.item_hi,
                                                                           False, False)
            bad_choice = spec.item_choices is not None and item not in spec.item_choices
            if bad_range or bad_choice:
                raise UserError(f"config key {key!r} takes a list with {what}, got {list(value)!r}")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not _in_bounds(value, spec.lo, spec.hi, spec.lo_open, spec.hi_open):
            raise UserError(f"config key {key!r} must be in {what}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise UserError(f"config key {key!r} must be {what}, got {value!r}")
    if spec.pattern is not None and isinstance(value, str) and not re.fullmatch(spec.pattern, value):
        raise UserError(f"config key {key!r} takes {what}, got {value!r}")
    return value


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest known name, or '' when none is close."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:  # a key given without its section, or in the wrong one: match on the last part
        leaf = name.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def replace_checked(settings, overrides: dict[str, Any], what: str = "setting"):
    """A copy of dataclass instance ``settings`` with ``overrides`` checked against its declaration.

    Unknown names are refused with a did-you-mean suggestion; ``what`` names the kind of key in
    messages ("training setting", "option of profile 'atvg'").
    """
    fields = {d.name: d for d in declared(settings)}
    changes = {}
    for name, value in overrides.items():
        if name not in fields:
            raise UserError(f"unknown {what} {name!r}{did_you_mean(name, fields)} (known: {', '.join(sorted(fields))})")
        d = fields[name]
        try:
            changes[name] = check_value(name, d.type, d.spec, value)
        except UserError as err:
            raise UserError(str(err).replace("config key", what, 1)) from None
    return dataclasses.replace(settings, **changes)


def listing(rows: Iterable[tuple[str, Declared]]) -> list[str]:
    """``--list-keys`` lines: ``key = default  (type; range or choices)  help``."""
    lines = []
    for key, d in rows:
        default = list(d.default) if isinstance(d.default, tuple) else d.default
        shown = _toml(default)
        accepts = d.spec.describe()
        kind = d.type_name + (f"; {accepts}" if accepts else "")
        lines.append(f"{key} = {shown}  ({kind})  {d.spec.help}".rstrip())
    return lines


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def parse_value(text: str) -> Any:
    """The right-hand side of ``--set key=value`` as a TOML value, else the text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set_options(items: Iterable[str]) -> dict[str, Any]:
    """``["crop.size=128", ...]`` -> ``{"crop.size": 128, ...}``."""
    parsed = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, got {item!r}")
        parsed[key.strip()] = parse_value(text.strip())
    return parsed
