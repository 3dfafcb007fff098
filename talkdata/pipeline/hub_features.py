"""The types of a build's sample fields, for readers that need them declared up front.

:class:`FieldTypes` takes the members of every sample as the pack writes them (each ``json``, and
the first member of every other field) and gives a small type tree per field;
:func:`hub_features_yaml` writes it as the card's ``dataset_info.features`` (Hugging Face
``datasets`` then loads without inferring types from the first samples) and
``talkdata.pipeline.croissant`` as Croissant fields.

Type trees: ``("value", dtype)`` with a ``datasets`` dtype (``string``, ``int64``, ``float64``,
``bool``, ``float32``..., ``null`` when every sample has null), ``("list", item)``,
``("struct", {name: tree})``, ``("audio",)``, ``("video",)``, ``("binary",)``.
"""

from __future__ import annotations

import io
import json

import numpy as np

Tree = tuple


def _json_type(value) -> Tree:
    if value is None:
        return ("value", "null")
    if isinstance(value, bool):
        return ("value", "bool")
    if isinstance(value, int):
        return ("value", "int64")
    if isinstance(value, float):
        return ("value", "float64")
    if isinstance(value, str):
        return ("value", "string")
    if isinstance(value, list):
        item: Tree = ("value", "null")
        for element in value:
            item = merge(item, _json_type(element))
        return ("list", item)
    if isinstance(value, dict):
        return ("struct", {str(k): _json_type(v) for k, v in value.items()})
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def merge(a: Tree, b: Tree) -> Tree:
    """The one type that holds values of ``a`` and of ``b`` (null gives way; int widens to float)."""
    if a == ("value", "null"):
        return b
    if b == ("value", "null") or a == b:
        return a
    if a[0] == b[0] == "value" and {a[1], b[1]} == {"int64", "float64"}:
        return ("value", "float64")
    if a[0] == b[0] == "list":
        return ("list", merge(a[1], b[1]))
    if a[0] == b[0] == "struct":
        names = list(a[1]) + [n for n in b[1] if n not in a[1]]
        return ("struct", {n: merge(a[1].get(n, ("value", "null")), b[1].get(n, ("value", "null"))) for n in names})
    raise ValueError(f"a sample field holds both {a} and {b}")


def _npy_type(data: bytes) -> Tree:
    array = np.load(io.BytesIO(data), allow_pickle=False)
    tree: Tree = ("value", array.dtype.name)
    for _ in range(array.ndim):
        tree = ("list", tree)
    return tree


def _member_type(field: str, data: bytes) -> Tree:
    extension = field.rsplit(".", 1)[-1]
    if extension == "npy":
        return _npy_type(data)
    if extension in ("wav", "flac", "mp3"):
        return ("audio",)
    if extension in ("mp4", "webm", "mkv"):
        return ("video",)
    return ("binary",)


class FieldTypes:
    """The types of the samples added so far: each ``json``'s tree merged in order, and the type of
    the first member of every other field. Mergeable shard by shard; a field seen with two types is
    kept as a conflict that :meth:`types` reports."""

    def __init__(self) -> None:
        self.json: Tree = ("value", "null")
        self.fields: dict[str, Tree] = {}
        self.conflict: str | None = None

    def _merge_json(self, tree: Tree) -> None:
        if self.conflict is None:
            try:
                self.json = merge(self.json, tree)
            except ValueError as err:
                self.conflict = str(err)

    def add(self, files: dict[str, bytes]) -> None:
        """One sample's members (``{field: bytes}``, as written to its shard)."""
        for name, data in files.items():
            if name == "json":
                self._merge_json(_json_type(json.loads(data)))
            elif name not in self.fields:
                self.fields[name] = _member_type(name, data)

    def merge(self, other: FieldTypes) -> None:
        """Then ``other``'s samples (in order, as if added one by one after these)."""
        self.conflict = self.conflict or other.conflict
        self._merge_json(other.json)
        for name, tree in other.fields.items():
            self.fields.setdefault(name, tree)

    def types(self) -> dict[str, Tree]:
        """``{field: type}``, fields in name order (ValueError when a field holds two types)."""
        if self.conflict is not None:
            raise ValueError(self.conflict)
        return dict(sorted({**self.fields, "json": self.json}.items()))


def _yaml_tree(tree: Tree, indent: str) -> list[str]:
    """The body of one feature (after its ``name``) in ``datasets``' YAML form."""
    kind = tree[0]
    if kind == "value":
        return [f"{indent}dtype: {json.dumps(tree[1])}"]
    if kind in ("audio", "video", "binary"):
        return [f"{indent}dtype: {kind}"]
    if kind == "list":
        if tree[1][0] == "value":
            return [f"{indent}list: {json.dumps(tree[1][1])}"]
        if tree[1][0] == "struct":
            return [f"{indent}list:"] + _yaml_struct(tree[1][1], indent)
        return [f"{indent}list:"] + _yaml_tree(tree[1], indent + "  ")
    if kind == "struct":
        return [f"{indent}struct:"] + _yaml_struct(tree[1], indent)
    raise ValueError(f"unknown type {tree!r}")


def _yaml_struct(fields: dict[str, Tree], indent: str) -> list[str]:
    lines = []
    for name, sub in fields.items():
        lines.append(f"{indent}- name: {json.dumps(name)}")
        lines += _yaml_tree(sub, indent + "  ")
    return lines


def hub_features_yaml(types: dict[str, Tree], indent: str = "  ") -> list[str]:
    """``features:`` lines for the card's ``dataset_info`` (``__key__`` and ``__url__`` first, as
    ``datasets``' WebDataset reader yields them)."""
    fields = {"__key__": ("value", "string"), "__url__": ("value", "string"), **types}
    return [f"{indent}features:"] + _yaml_struct(fields, indent)
