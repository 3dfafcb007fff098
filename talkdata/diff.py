"""Compare two built dataset versions (``talkdata diff OUT_A OUT_B``).

Pure functions over the two datasets' ``dataset.json`` and ``index.parquet`` (each a folder or an
fsspec URL): no shard is opened, so comparing two large datasets is fast. :func:`diff_datasets` returns a :class:`DatasetDiff`;
:func:`render_text` writes the readable summary and :func:`to_json` the machine-readable form.

JSON format (``format: "talkdata-diff/1"``; every key is always present, lists are sorted):

``a``, ``b``
    ``{"path", "name", "version"}`` of each side (``path`` as given on the command line).
``identical``
    true when both version ids are equal and no artifact, shard or sample differs. Differences
    outside the version (the recipe's prose, a model's path) are still listed in the sections.
``same_inputs``
    true when recipe, config, models, toolkit and dependency versions and source files are all equal: two
    such builds should be identical, so ``same_inputs`` without ``identical`` means the build is
    not reproducible (or the code changed without a version bump).
``recipe``, ``config``, ``models``, ``toolkit``, ``dependencies``, ``source``, ``other``
    lists of ``{"key", "status", "a", "b"}``: flattened keys (``crop.size``,
    ``dependencies``' package names, ``download.access``) whose values differ; ``status`` is
    ``changed``, ``added`` (only in B; ``a`` is null) or ``removed`` (only in A; ``b`` is null).
    ``recipe`` is the recipe file's content (name, title, sources...), ``models`` the model files
    used (``dlib_landmarks.sha256``, ``dlib_landmarks.path``...), ``source`` the source
    fingerprint and clip count, ``other`` the remaining manifest fields (dataset name, format,
    split counts, reject counts, shape model summary, audio features).
``artifacts``, ``shards``
    lists of ``{"path", "status", "a", "b"}`` with ``a``/``b`` the file's sha256 on each side
    (null when absent): ``stats/shape_model.npz``, ``index.parquet``, ``rejects.parquet`` and
    every shard whose content differs.
``samples``
    ``{"splits": {split: {"added": [...], "removed": [...], "changed": [...], "unchanged": n}},
    "moved": [...], "counts": {"added", "removed", "changed", "moved", "unchanged"}}``, by sample
    key and per-sample content hash (``index.parquet``'s ``sha256``). ``added``/``removed``
    entries are ``{"key", "sha256"}``; ``changed`` entries ``{"key", "a", "b"}`` (the two
    hashes); a key whose split differs is listed once under ``moved`` as ``{"key", "a_split",
    "b_split", "a", "b"}`` (and counts as moved, whether its hash changed or not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .files import read_parquet
from .manifest import load_manifest
from .shards import SPLITS
from .store import Store

FORMAT = "talkdata-diff/1"

#: manifest fields with a section of their own; everything else but the version goes to ``other``
SECTIONS = ("recipe", "config", "models", "toolkit", "dependencies", "source")
_SPECIAL = set(SECTIONS) | {"version", "artifacts", "shards"}


@dataclass
class Side:
    path: str
    name: str
    version: str
    manifest: dict = field(repr=False)
    samples: dict[str, tuple[str, str]] = field(repr=False)  # key -> (split, sha256)


@dataclass
class DatasetDiff:
    a: Side
    b: Side
    sections: dict[str, list[dict]]  # recipe, config, models, toolkit, dependencies, source, other
    artifacts: list[dict]
    shards: list[dict]
    samples: dict

    @property
    def identical(self) -> bool:
        return (self.a.version == self.b.version and not self.artifacts and not self.shards
                and not any(self.samples["counts"][k] for k in ("added", "removed", "changed", "moved")))

    @property
    def same_inputs(self) -> bool:
        return not any(self.sections[name] for name in SECTIONS)

    def to_dict(self) -> dict:
        data = {
            "format": FORMAT,
            "a": {"path": self.a.path, "name": self.a.name, "version": self.a.version},
            "b": {"path": self.b.path, "name": self.b.name, "version": self.b.version},
            "identical": self.identical,
            "same_inputs": self.same_inputs,
            "artifacts": self.artifacts,
            "shards": self.shards,
            "samples": self.samples,
        }
        data.update(self.sections)
        return data


# --------------------------------------------------------------------------- reading


def _load_side(location: str | Path, storage_options: dict | None) -> Side:
    store = Store(location, storage_options if storage_options and "://" in str(location) else None)
    if not store.is_dir():
        if store.remote:
            raise UserError(f"{location} not found: give two datasets built by talkdata (folders or URLs)")
        raise UserError(f"{location} is not a folder: give two dataset folders built by talkdata")
    manifest = load_manifest(store)
    return Side(path=str(location), name=str(manifest.get("name", "")), version=str(manifest["version"]),
                manifest=manifest, samples=_read_index(store))


def _read_index(store: Store) -> dict[str, tuple[str, str]]:
    if not store.is_file("index.parquet"):
        raise UserError(f"{store.url('index.parquet')} not found: the dataset is incomplete "
                        f"(run `talkdata verify {store.location}`)")
    try:
        with store.open("index.parquet") as handle:
            table = read_parquet(handle, columns=["key", "split", "sha256"])
    except UserError:
        raise
    except Exception as err:  # pyarrow raises several types for damaged or foreign files
        raise UserError(f"cannot read {store.url('index.parquet')}: {err}") from None
    rows = table.to_pydict()
    return {key: (split, sha) for key, split, sha in zip(rows["key"], rows["split"], rows["sha256"])}


# --------------------------------------------------------------------------- comparing


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``; lists and scalars are leaves; an empty dict is a leaf."""
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix: tree}
    flat = {}
    for key in sorted(tree):
        flat.update(flatten(tree[key], f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _compare(a: Any, b: Any) -> list[dict]:
    flat_a, flat_b = flatten(a if a is not None else {}), flatten(b if b is not None else {})
    changes = []
    for key in sorted(set(flat_a) | set(flat_b)):
        if key not in flat_b:
            changes.append({"key": key, "status": "removed", "a": flat_a[key], "b": None})
        elif key not in flat_a:
            changes.append({"key": key, "status": "added", "a": None, "b": flat_b[key]})
        elif flat_a[key] != flat_b[key] or type(flat_a[key]) is not type(flat_b[key]):
            changes.append({"key": key, "status": "changed", "a": flat_a[key], "b": flat_b[key]})
    return changes


def _compare_files(a: dict[str, str], b: dict[str, str]) -> list[dict]:
    """``{path: sha256}`` on each side -> the paths that differ."""
    changes = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) == b.get(path):
            continue
        status = "added" if path not in a else "removed" if path not in b else "changed"
        changes.append({"path": path, "status": status, "a": a.get(path), "b": b.get(path)})
    return changes


def _split_sort(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def compare_samples(a: dict[str, tuple[str, str]], b: dict[str, tuple[str, str]]) -> dict:
    """Samples added, removed, changed per split, and moved between splits (see the module doc)."""
    splits = sorted({s for s, _ in a.values()} | {s for s, _ in b.values()} | set(SPLITS), key=_split_sort)
    per_split = {s: {"added": [], "removed": [], "changed": [], "unchanged": 0} for s in splits}
    moved = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            split, sha = b[key]
            per_split[split]["added"].append({"key": key, "sha256": sha})
        elif key not in b:
            split, sha = a[key]
            per_split[split]["removed"].append({"key": key, "sha256": sha})
        elif a[key][0] != b[key][0]:
            moved.append({"key": key, "a_split": a[key][0], "b_split": b[key][0], "a": a[key][1], "b": b[key][1]})
        elif a[key][1] != b[key][1]:
            per_split[a[key][0]]["changed"].append({"key": key, "a": a[key][1], "b": b[key][1]})
        else:
            per_split[a[key][0]]["unchanged"] += 1
    counts = {name: sum(len(v[name]) for v in per_split.values()) for name in ("added", "removed", "changed")}
    counts["moved"] = len(moved)
    counts["unchanged"] = sum(v["unchanged"] for v in per_split.values())
    return {"splits": per_split, "moved": moved, "counts": counts}


def diff_datasets(folder_a: str | Path, folder_b: str | Path, storage_options: dict | None = None) -> DatasetDiff:
    """Compare the dataset in ``folder_a`` (old) with the one in ``folder_b`` (new); each is a folder or
    an fsspec URL (``storage_options`` apply to the URLs)."""
    a, b = _load_side(folder_a, storage_options), _load_side(folder_b, storage_options)
    ma, mb = a.manifest, b.manifest
    sections = {name: _compare(ma.get(name), mb.get(name)) for name in SECTIONS}
    rest_a = {k: v for k, v in ma.items() if k not in _SPECIAL}
    rest_b = {k: v for k, v in mb.items() if k not in _SPECIAL}
    sections["other"] = _compare(rest_a, rest_b)

    def files(manifest: dict, name: str) -> dict[str, str]:
        entries = manifest.get(name) or {}
        if isinstance(entries, list):  # shards: a list of entries with a path
            return {e["path"]: e.get("sha256") for e in entries}
        return {path: e.get("sha256") for path, e in entries.items()}

    return DatasetDiff(a=a, b=b, sections=sections, artifacts=_compare_files(files(ma, "artifacts"), files(mb, "artifacts")),
                       shards=_compare_files(files(ma, "shards"), files(mb, "shards")),
                       samples=compare_samples(a.samples, b.samples))


# --------------------------------------------------------------------------- output


def to_json(result: DatasetDiff) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _value(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _key_changes(title: str, changes: list[dict]) -> list[str]:
    if not changes:
        return []
    lines = [f"{title} ({len(changes)} difference{'s' if len(changes) != 1 else ''}):"]
    for c in changes:
        if c["status"] == "added":
            lines.append(f"  {c['key']}: (absent) -> {_value(c['b'])}")
        elif c["status"] == "removed":
            lines.append(f"  {c['key']}: {_value(c['a'])} -> (absent)")
        else:
            lines.append(f"  {c['key']}: {_value(c['a'])} -> {_value(c['b'])}")
    return lines


def _file_changes(title: str, changes: list[dict], limit: int) -> list[str]:
    if not changes:
        return []
    lines = [f"{title} ({len(changes)} differ):"]
    for c in changes[:limit]:
        lines.append(f"  {c['status']:8s} {c['path']}  {_short(c['a'])} -> {_short(c['b'])}")
    if len(changes) > limit:
        lines.append(f"  ... and {len(changes) - limit} more (--json lists all)")
    return lines


def render_text(result: DatasetDiff, limit: int = 20) -> str:
    """Readable summary; at most ``limit`` lines per list (the JSON form lists everything)."""
    a, b = result.a, result.b
    lines = [f"A: {a.path}  ({a.name}, version {a.version})", f"B: {b.path}  ({b.name}, version {b.version})"]
    titles = {"recipe": "recipe", "config": "config", "models": "models", "toolkit": "toolkit",
              "dependencies": "dependencies",
              "source": "source files", "other": "manifest"}
    if result.identical:
        lines.append(f"identical: same version {a.version}, {result.samples['counts']['unchanged']} samples")
        outside = [line for name in (*SECTIONS, "other") for line in _key_changes(titles[name], result.sections[name])]
        if outside:  # same bytes: what differs is outside the version (recipe prose, model paths)
            lines += ["outside the version (no data byte differs):", *("  " + line for line in outside)]
        return "\n".join(lines) + "\n"
    for name in (*SECTIONS, "other"):
        lines += _key_changes(titles[name], result.sections[name])
    lines += _file_changes("artifacts", result.artifacts, limit)
    lines += _file_changes("shards", result.shards, limit)
    counts = result.samples["counts"]
    lines.append("samples: " + ", ".join(f"{counts[k]} {k}" for k in ("added", "removed", "changed", "moved", "unchanged")))
    marks = {"added": "+", "removed": "-", "changed": "~"}
    for split, info in result.samples["splits"].items():
        listed = [(kind, entry) for kind in ("added", "removed", "changed") for entry in info[kind]]
        if not listed:
            continue
        lines.append(f"  {split}: " + ", ".join(f"{len(info[k])} {k}" for k in ("added", "removed", "changed"))
                     + f", {info['unchanged']} unchanged")
        for kind, entry in listed[:limit]:
            hashes = (f"{_short(entry['a'])} -> {_short(entry['b'])}" if kind == "changed"
                      else _short(entry["sha256"]))
            lines.append(f"    {marks[kind]} {entry['key']}  {hashes}")
        if len(listed) > limit:
            lines.append(f"    ... and {len(listed) - limit} more (--json lists all)")
    if result.samples["moved"]:
        lines.append(f"  moved between splits: {len(result.samples['moved'])}")
        for entry in result.samples["moved"][:limit]:
            same = "same content" if entry["a"] == entry["b"] else f"{_short(entry['a'])} -> {_short(entry['b'])}"
            lines.append(f"    > {entry['key']}  {entry['a_split']} -> {entry['b_split']}  ({same})")
        if len(result.samples["moved"]) > limit:
            lines.append(f"    ... and {len(result.samples['moved']) - limit} more (--json lists all)")
    if result.same_inputs:
        lines.append("note: same recipe, config, versions and source files, yet different content: the build is not "
                     "reproducible, or the code changed without a version bump")
    lines.append(f"different: version {a.version} -> {b.version}")
    return "\n".join(lines) + "\n"
