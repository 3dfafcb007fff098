"""Where a built dataset lives: a local folder or an fsspec URL, its manifest and its shard list.

``source`` is the dataset folder (the one holding ``dataset.json``) given as a local path or as any
URL fsspec can open (``file://``, ``https://``, ``s3://``, ``gs://``, ``memory://``, ...). The shard
list of a split comes from ``dataset.json``, never from listing a folder, so a remote dataset needs
no directory listing and a half-written shard is never read. ``storage_options`` are fsspec's
options for the URL's filesystem (endpoint, credentials); an unreachable or denied store is one
``UserError`` (``talkdata.store``).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..config import BuildConfig, stored
from ..errors import UserError
from ..shards import SPLITS
from ..store import is_url, store_errors

MANIFEST = "dataset.json"


def join(source: str, relative: str) -> str:
    """``relative`` (a manifest path, always with ``/``) under the dataset ``source``."""
    if is_url(source):
        return source.rstrip("/") + "/" + relative
    return str(Path(source) / relative)


def open_binary(url: str, storage_options: dict | None = None) -> BinaryIO:
    """A readable binary stream for a local path or an fsspec URL (caller closes it)."""
    if is_url(url):
        import fsspec

        with store_errors(url):
            return fsspec.open(url, "rb", **(storage_options or {})).open()
    return open(url, "rb")


@dataclass
class Shard:
    url: str
    samples: int
    offset: int = 0  # samples before this shard in the split's shard list (manifest order)
    storage_options: dict = field(default_factory=dict)


@dataclass
class DatasetSource:
    """A dataset's location and manifest."""

    source: str
    manifest: dict = field(repr=False)
    storage_options: dict = field(default_factory=dict, repr=False)

    @property
    def audio_features(self) -> list[str]:
        return list(self.manifest.get("audio_features", []))

    @property
    def config(self) -> BuildConfig:
        """The build configuration the dataset was made with."""
        return stored(self.manifest["config"])

    @property
    def fps(self) -> float:
        return float(self.config.video.fps)

    def shards(self, splits: tuple[str, ...]) -> list[Shard]:
        """The shards of ``splits``, in manifest order, with each one's sample offset."""
        shards, offset = [], 0
        for entry in self.manifest["shards"]:
            if entry["split"] in splits:
                shards.append(Shard(join(self.source, entry["path"]), int(entry["samples"]), offset,
                                    self.storage_options))
                offset += int(entry["samples"])
        return shards

    def read_artifact(self, relative: str) -> bytes:
        with open_binary(join(self.source, relative), self.storage_options) as handle:
            return handle.read()

    def shape_model(self):
        """The dataset's ``stats/shape_model.npz``."""
        from ..face.shape import load_shape_model

        relative = (self.manifest.get("shape_model") or {}).get("path", "stats/shape_model.npz")
        data = self.read_artifact(relative)
        try:
            return load_shape_model(io.BytesIO(data))
        except (EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:  # empty, cut short, or not talkdata's
            detail = " ".join(str(err).split())[:160]
            raise UserError(f"cannot read {join(self.source, relative)} ({type(err).__name__}{': ' if detail else ''}"
                            f"{detail}; {len(data)} bytes): the file is truncated or damaged; run `talkdata verify "
                            f"{self.source}`") from None


def open_dataset(source: str | Path, storage_options: dict | None = None) -> DatasetSource:
    """Read ``dataset.json`` of ``source``; a ``UserError`` when it is not a talkdata dataset."""
    text = str(source)
    where = join(text, MANIFEST)
    if storage_options and not is_url(text):
        raise UserError(f"storage_options apply to URLs (s3://..., gs://...), not to the local folder {text}")
    if not is_url(text) and not Path(text).is_dir():
        if Path(text).exists():
            raise UserError(f"{text} is not a dataset folder (give the OUT folder of 'talkdata build', or its URL)")
        raise UserError(f"dataset folder not found: {text} (give the OUT folder of 'talkdata build', or its URL)")
    try:
        with open_binary(where, storage_options) as handle:
            manifest = json.loads(handle.read())
    except FileNotFoundError:
        raise UserError(f"{text} is not a talkdata dataset: it has no {MANIFEST} "
                        "(give the OUT folder of 'talkdata build')") from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {where}: {err}") from None
    if not isinstance(manifest, dict) or "shards" not in manifest or "splits" not in manifest:
        raise UserError(f"{where} is not a talkdata manifest (no 'shards' / 'splits')")
    problem = manifest_problem(manifest)
    if problem:
        raise UserError(f"{where} is damaged: {problem}; 'talkdata verify {text}' lists what is wrong")
    return DatasetSource(text, manifest, dict(storage_options or {}))


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the shard list and split counts the loader reads, or None."""
    shards, splits = manifest["shards"], manifest["splits"]
    if not isinstance(shards, list):
        return "'shards' is not a list"
    for number, entry in enumerate(shards):
        if not isinstance(entry, dict) or not {"path", "split", "samples"} <= set(entry):
            return f"shard entry {number} lacks path / split / samples"
        path = entry["path"]
        if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or ":" in path \
                or ".." in path.split("/"):
            return f"shard entry {number} has the path {path!r}, not one inside the dataset folder"
        if entry["split"] not in SPLITS or not _count(entry["samples"]):
            return f"shard entry {number} ({path}) has split {entry['split']!r} / samples {entry['samples']!r}"
    if not isinstance(splits, dict) or not all(isinstance(v, dict) and _count(v.get("samples")) for v in splits.values()):
        return "'splits' is not a sample count per split"
    return None


def resolve_splits(dataset: DatasetSource, split: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``split`` as a tuple of known, non-empty splits (``"all"`` = every split)."""
    names = SPLITS if split == "all" else ((split,) if isinstance(split, str) else tuple(split))
    for name in names:
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; choose from {', '.join(SPLITS)} or 'all'")
    counts = {name: dataset.manifest["splits"].get(name, {}).get("samples", 0) for name in names}
    if not any(counts.values()):
        raise UserError(f"split {'+'.join(names)} of {dataset.source} has no samples "
                        f"(samples per split: {json.dumps({k: v['samples'] for k, v in dataset.manifest['splits'].items()})})")
    return names
