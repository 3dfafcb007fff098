"""``dataset.json``: what a built dataset holds, and checking a dataset against it.

The manifest has no timestamps, host names or absolute paths, so two builds of the same sources
with the same config and versions give the same bytes. Its ``version`` is the sha256 of its own
canonical JSON without the ``version`` field: it changes exactly when some content changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from .version import __version__

MANIFEST = "dataset.json"
FORMAT = "talkdata-dataset/1"

#: packages whose versions can change the bytes of a build
DEPENDENCIES = ("numpy", "scipy", "av", "opencv-python-headless", "dlib-bin", "python_speech_features",
                "onnxruntime", "pyarrow", "webdataset")

#: files and folders in an output folder that are not part of the versioned content
UNVERSIONED = {".work", "build_info.json", "README.md", MANIFEST, "card"}


def dependency_versions() -> dict[str, str]:
    versions = {}
    for name in DEPENDENCIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def version_id(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "version"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def write_manifest(out: Path, manifest: dict) -> dict:
    manifest = dict(manifest, format=FORMAT, toolkit={"talkdata": __version__}, dependencies=dependency_versions())
    manifest["version"] = version_id(manifest)
    write_atomic(out / MANIFEST, canonical_json(manifest).encode())
    return manifest


def load_manifest(out: str | Path) -> dict:
    path = Path(out) / MANIFEST
    if not path.is_file():
        from .errors import UserError

        raise UserError(f"{path} not found: is {out} a dataset built by talkdata?")
    return json.loads(path.read_text())


def verify(out: str | Path) -> list[str]:
    """Problems found in a dataset folder, one line each (empty when it matches its manifest)."""
    out = Path(out)
    manifest = load_manifest(out)
    problems = []
    expected = {entry["path"]: entry for entry in manifest["shards"]}
    expected.update({path: entry for path, entry in manifest.get("artifacts", {}).items()})
    for path, entry in sorted(expected.items()):
        file = out / path
        if not file.is_file():
            problems.append(f"missing: {path}")
            continue
        size = file.stat().st_size
        if size != entry["bytes"]:
            problems.append(f"wrong size: {path} has {size} bytes, manifest says {entry['bytes']}")
        elif sha256_file(file) != entry["sha256"]:
            problems.append(f"checksum mismatch: {path} (sha256 differs from the manifest)")
        elif "samples" in entry and path.endswith(".tar"):
            count = _count_samples(file)
            if count != entry["samples"]:
                problems.append(f"wrong sample count: {path} has {count}, manifest says {entry['samples']}")
    for file in sorted(out.rglob("*")):
        relative = file.relative_to(out)
        if file.is_file() and relative.parts[0] not in UNVERSIONED and relative.as_posix() not in expected:
            problems.append(f"extra file: {relative.as_posix()}")
    return problems


def _count_samples(path: Path) -> int:
    import tarfile

    keys = set()
    with tarfile.open(path) as tar:
        for member in tar:
            folder, _, base = member.name.rpartition("/")
            keys.add(f"{folder}/{base.partition('.')[0]}")
    return len(keys)
