"""Per-clip cache and ledger under ``OUT/.work/clips``.

Each clip's result lives in a folder named by its cache key (a hash of the clip record, its source
file's size and mtime, the processing config and the toolkit version). The folder holds the sample
files, ``meta.json`` and ``status.json``; it is written under a temporary name and renamed into
place, so an entry either exists whole or not at all, and a killed build resumes where it stopped.

``status.json`` is the ledger: ``done``, ``rejected`` (with reason code; stays rejected until the
config changes, since the key changes with it) or ``failed`` (an unexpected error; retried by
``build --retry-failed``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from ..version import __version__
from ..config import config_hash
from ..corpora.records import ClipRecord

#: config sections that do not change per-clip results (they act at the dataset level)
DATASET_LEVEL_SECTIONS = ("split", "shards", "shape")


def processing_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in DATASET_LEVEL_SECTIONS}


def cache_key(record: ClipRecord, config: dict) -> str:
    fields = record.to_dict()
    fields.pop("split", None)
    fields.pop("path", None)  # the same files moved elsewhere keep their cache (relpath + size + mtime)
    text = json.dumps(
        {"record": fields, "source": record.fingerprint(), "config": config_hash(processing_config(config)),
         "toolkit": __version__},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class ClipCache:
    def __init__(self, work_dir: str | Path):
        self.root = Path(work_dir) / "clips"

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def status(self, key: str) -> dict | None:
        path = self.entry(key) / "status.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def meta(self, key: str) -> dict:
        return json.loads((self.entry(key) / "meta.json").read_text())

    def files(self, key: str) -> dict[str, bytes]:
        folder = self.entry(key)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name not in ("meta.json", "status.json")}

    def read(self, key: str, name: str) -> bytes:
        return (self.entry(key) / name).read_bytes()

    def store(self, key: str, status: dict, files: dict[str, bytes] | None = None, meta: dict | None = None) -> None:
        """Write an entry atomically (temporary folder, then rename)."""
        final = self.entry(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        contents = dict(files or {})
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
