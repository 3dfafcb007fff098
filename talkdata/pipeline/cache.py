"""Per-clip cache and ledger under ``OUT/.work/clips``.

Each clip's result lives in a folder named by its cache key (a hash of the clip record, its source
file's size and mtime, the processing config and the toolkit version). The folder holds the sample
files, ``meta.json`` and ``status.json``; it is written under a temporary name and renamed into
place, so an entry either exists whole or not at all, and a killed build resumes where it stopped.

The dataset is stored once: after a successful pack, each done entry's payload files are replaced
by ``packed.json``, a pointer to where they sit in the shards (``release``). Reading an entry
(``files``, ``read``) follows the pointer, so a re-fit or a re-pack reads samples from the existing
shards. Pointers name the generation of the shard set (the manifest version): ``GENERATION`` holds
the current one (``OUT/shards``), ``PREVIOUS_GENERATION`` the one moved to ``.work/previous-shards``
while a re-pack writes new shards. ``--keep-cache`` keeps full entries instead.

``status.json`` is the ledger: the clip's ``Outcome`` (``outcome.py``): ``done``, ``rejected``
(with reason code; stays rejected until the config changes, since the key changes with it) or
``failed`` (an unexpected error; retried by ``build --retry-failed``). A ``done`` entry also lists
its files and their sizes, so the packing stage plans shards without reading payloads, and a
damaged entry (a file missing or cut short, ``meta.json`` unreadable) is found before packing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..version import __version__
from ..config import config_hash, processing_config
from ..corpora.records import ClipRecord
from ..files import write_atomic
from .outcome import Done, Outcome, from_status, to_status

_LEDGER = ("meta.json", "status.json", "packed.json")
POINTER = "packed.json"
GENERATION = "generation"
PREVIOUS_GENERATION = "previous-generation"
PREVIOUS_SHARDS = "previous-shards"


def read_generation(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def cache_key(record: ClipRecord, config: dict) -> str:
    """The clip's cache entry name: its record, its source files' fingerprint, the per-clip sections of
    ``config`` (pinned: models by sha256, so moving a model file keeps the cache) and the toolkit version."""
    fields = record.to_dict()
    fields.pop("split", None)
    fields.pop("path", None)  # the same files moved elsewhere keep their cache (relpath + size + mtime)
    text = json.dumps(
        {"record": fields, "source": record.fingerprint(), "config": config_hash(processing_config(config)),
         "toolkit": __version__},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class KeyList(Sequence[str]):
    """Cache keys (sha256s, 64 hex digits each) held as their 32 raw bytes in one array: no object per key."""

    def __init__(self, keys: Iterable[str]):
        digests = bytearray()
        for key in keys:
            digests += bytes.fromhex(key)
        self._keys = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index):
        if isinstance(index, slice):
            part = KeyList(())
            part._keys = self._keys[index]
            return part
        return self._keys[index].tobytes().hex()


class ClipCache:
    def __init__(self, work_dir: str | Path):
        self.work = Path(work_dir)
        self.root = self.work / "clips"

    def pointer(self, key: str) -> dict | None:
        """Where a released entry's payload is: ``{"generation", "shard", "fields": {name: [offset, size]}}``."""
        try:
            return json.loads((self.entry(key) / POINTER).read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _shard_path(self, pointer: dict) -> Path:
        """The shard file a pointer names: in ``.work/previous-shards`` while a re-pack parks the
        generation there, else in ``OUT/shards``."""
        generation, relative = pointer["generation"], Path(pointer["shard"]).relative_to("shards")
        if generation == read_generation(self.work / PREVIOUS_GENERATION):
            parked = self.work / PREVIOUS_SHARDS / relative
            if parked.is_file():
                return parked
        if generation in (read_generation(self.work / GENERATION), read_generation(self.work / PREVIOUS_GENERATION)):
            return self.work.parent / "shards" / relative
        raise FileNotFoundError(f"the shards of generation {generation} are gone")

    def _read_packed(self, pointer: dict, names) -> dict[str, bytes]:
        files = {}
        with open(self._shard_path(pointer), "rb") as handle:
            for name in names:
                offset, size = pointer["fields"][name]
                handle.seek(offset)
                files[name] = handle.read(size)
                if len(files[name]) != size:
                    raise OSError(f"shard {pointer['shard']} is shorter than its pointer says")
        return files

    def release(self, key: str, generation: str, shard: str, offsets: dict[str, tuple[int, int]]) -> None:
        """Point the entry at its sample in ``shard`` and delete the payload copy (idempotent)."""
        folder = self.entry(key)
        fields = {name: list(offsets[name]) for name in self.sizes(key)}
        data = json.dumps({"generation": generation, "shard": shard, "fields": fields}, sort_keys=True).encode()
        write_atomic(folder / POINTER, data, sync=False)
        for name in fields:
            (folder / name).unlink(missing_ok=True)

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _status(self, key: str) -> dict | None:
        try:
            return json.loads((self.entry(key) / "status.json").read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def outcome(self, key: str) -> Outcome | None:
        """The recorded outcome, or None when the clip has no (readable) entry."""
        status = self._status(key)
        if status is None:
            return None
        try:
            return from_status(status)
        except (KeyError, ValueError, TypeError):
            return None

    def sizes(self, key: str) -> dict[str, int]:
        """``{field: bytes}`` of a done entry's files, from its ledger (no payload is read)."""
        status = self._status(key) or {}
        if isinstance(status.get("fields"), dict):
            return dict(status["fields"])
        folder = self.entry(key)
        return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name not in _LEDGER}

    def damage(self, key: str) -> str | None:
        """Why a done entry cannot be packed (a file missing or of the wrong size, meta unreadable), or None."""
        folder = self.entry(key)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if not isinstance(meta, dict) or "frames" not in meta:
                return "meta.json is incomplete"
        except (OSError, ValueError) as err:
            return f"meta.json unreadable ({type(err).__name__})"
        try:
            pointer = self.pointer(key)
        except (OSError, ValueError) as err:
            return f"{POINTER} unreadable ({type(err).__name__})"
        sizes = self.sizes(key)
        if pointer is not None:
            try:
                length = self._shard_path(pointer).stat().st_size
                if any(pointer["fields"][n][1] != s or sum(pointer["fields"][n]) > length for n, s in sizes.items()):
                    return f"the shard {pointer['shard']} does not hold this sample any more"
            except (OSError, KeyError, TypeError, ValueError) as err:
                return f"the sample's shard cannot be read ({err})"
            return None
        for name, size in sizes.items():
            try:
                actual = (folder / name).stat().st_size
            except OSError:
                return f"{name} is missing"
            if actual != size:
                return f"{name} has {actual} bytes, the entry recorded {size}"
        return None

    def meta(self, key: str) -> dict:
        return json.loads((self.entry(key) / "meta.json").read_text())

    def files(self, key: str) -> dict[str, bytes]:
        names = sorted(self.sizes(key))
        pointer = self.pointer(key)
        if pointer is not None:
            return self._read_packed(pointer, names)
        folder = self.entry(key)
        return {name: (folder / name).read_bytes() for name in names}

    def read(self, key: str, name: str) -> bytes:
        pointer = self.pointer(key)
        if pointer is not None:
            return self._read_packed(pointer, [name])[name]
        return (self.entry(key) / name).read_bytes()

    def store(self, key: str, outcome: Outcome, files: dict[str, bytes] | None = None,
              meta: dict | None = None) -> None:
        """Write an entry atomically (temporary folder, then rename)."""
        final = self.entry(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        contents = dict(files or {})
        status = to_status(outcome)
        if isinstance(outcome, Done):
            status["fields"] = {name: len(data) for name, data in sorted(contents.items())}
        if meta is not None:
            contents["meta.json"] = json.dumps(meta, sort_keys=True).encode()
        contents["status.json"] = json.dumps(status, sort_keys=True).encode()
        try:
            for name, data in contents.items():
                try:
                    (staging / name).write_bytes(data)
                except OSError as err:  # name the file (a full disk says only "No space left")
                    raise OSError(err.errno, err.strerror, str(final / name)) from None
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
