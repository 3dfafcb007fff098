"""The types of a build's sample fields, for readers that need them declared up front.

:func:`field_types` reads the ``json`` of every sample and one sample of every other field and
returns a small type tree per field; :func:`hub_features_yaml` writes it as the card's
``dataset_info.features`` (Hugging Face ``datasets`` then loads without inferring types from the
first samples) and ``talkdata.pipeline.croissant`` as Croissant fields.

Type trees: ``("value", dtype)`` with a ``datasets`` dtype (``string``, ``int64``, ``float64``,
``bool``, ``float32``..., ``null`` when every sample has null), ``("list", item)``,
``("struct", {name: tree})``, ``("audio",)``, ``("video",)``, ``("binary",)``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..shards import split_member

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


def _shard_members(out: Path, shard: str):
    """``(key, field, member, tar)`` for every file member of a shard, in order."""
    import tarfile

    with tarfile.open(Path(out) / shard) as tar:
        for member in tar:
            if member.isfile():
                yield (*split_member(member.name), member, tar)


def field_types(out: str | Path, rows: list[dict]) -> dict[str, Tree]:
    """``{field: type}`` of the build's samples (``rows``: its index rows), fields in name order.

    Every shard is read once: each sample's ``json``, and the first member of every other field.
    """
    wanted = {row["key"] for row in rows}
    json_type: Tree = ("value", "null")
    types: dict[str, Tree] = {}
    for shard in sorted({row["shard"] for row in rows}):
        for key, field, member, tar in _shard_members(Path(out), shard):
            if key not in wanted:
                continue
            if field == "json":
                json_type = merge(json_type, _json_type(json.loads(tar.extractfile(member).read())))
            elif field not in types:
                types[field] = _member_type(field, tar.extractfile(member).read())
    types["json"] = json_type
    return dict(sorted(types.items()))


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
