"""``dataset.json``: what a built dataset holds, and checking a dataset against it.

The manifest has no timestamps or host names, so two builds of the same sources with the same
config and versions give the same bytes. Its ``version`` is the sha256 of :func:`version_body`:
the manifest's canonical JSON over what determines the data's bytes, which is

- the processing ``config`` (without model paths), the sha256 of every model used (``models``),
  the talkdata version (``toolkit``) and the versions of the packages that compute or write the
  data (``dependencies``: numpy, scipy, av, numba, ...; not webdataset, which only readers use);
- the recipe's fields that drive processing (``name``, ``index``, ``protocols``, ``defaults``);
  its prose (title, description, license, homepage, citation, size, access, layout, download
  notes) is recorded for the card but outside the version;
- every shard and artifact (path, bytes, sha256, samples), the split and reject counts, the
  source fingerprint, the audio features and the shape model summary; any other manifest field.

Outside the version: the card (``README.md``, ``card/``, ``croissant.json``: rewritten from the
manifest), ``build_info.json`` (timings, host) and the ``.work`` cache. Paths (of models) and
prose can move or be edited without changing the version.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from .config import BuildConfig, model_keys, model_paths
from .errors import UserError
from .files import read_parquet, sha256_file, write_atomic
from .shards import split_member
from .version import __version__

MANIFEST = "dataset.json"
FORMAT = "talkdata-dataset/1"

#: packages whose code computes or writes the bytes of a build
DEPENDENCIES = ("numpy", "scipy", "av", "opencv-python-headless", "dlib-bin", "numba", "python_speech_features",
                "onnxruntime", "pyarrow")
#: packages that compute the landmarks when ``face.backend`` is ``fan``
FAN_DEPENDENCIES = ("face-alignment", "torch")

#: recipe fields that drive processing (the rest is prose for the card, outside the version)
RECIPE_CONTENT = ("name", "index", "protocols", "defaults")

#: config keys that hold a model's path: the version takes the model's sha256 (``models``) instead
MODEL_PATH_KEYS = tuple(tuple(key.split(".", 1)) for key in model_keys())

#: manifest fields every talkdata manifest has (verify checks them before anything else)
REQUIRED = {"format": str, "name": str, "version": str, "recipe": dict, "config": dict, "splits": dict,
            "shards": list, "artifacts": dict}

#: files and folders in an output folder that are not part of the versioned content
UNVERSIONED = {".work", "build_info.json", "README.md", MANIFEST, "card", "croissant.json"}


def dependency_versions(config: BuildConfig | None = None) -> dict[str, str]:
    """Versions of the packages that compute the data (with ``config``: the landmark backend's too)."""
    names = DEPENDENCIES
    if config is not None and config.face.backend == "fan":
        names += FAN_DEPENDENCIES
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def canonical_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _without_model_paths(config: dict) -> dict:
    """``config`` with model paths removed: ``{"path", "sha256"}`` entries keep their sha256,
    the keys of :data:`MODEL_PATH_KEYS` go (their models enter through ``models``)."""

    def strip(node):
        if isinstance(node, dict):
            if "sha256" in node and "path" in node:
                return {k: strip(v) for k, v in node.items() if k != "path"}
            return {k: strip(v) for k, v in node.items()}
        return node

    config = strip(config)
    for section, key in MODEL_PATH_KEYS:
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if k != key}
    return config


def version_body(manifest: dict) -> dict:
    """The part of ``manifest`` the version id covers (see the module doc)."""
    body = {k: v for k, v in manifest.items() if k != "version"}
    if isinstance(body.get("recipe"), dict):
        body["recipe"] = {k: v for k, v in body["recipe"].items() if k in RECIPE_CONTENT}
    if isinstance(body.get("config"), dict):
        body["config"] = _without_model_paths(body["config"])
    if isinstance(body.get("models"), dict):
        body["models"] = {name: entry.get("sha256") if isinstance(entry, dict) else entry
                          for name, entry in body["models"].items()}
    return body


def version_id(manifest: dict) -> str:
    return hashlib.sha256(canonical_json(version_body(manifest)).encode()).hexdigest()[:16]


def _whole_manifest_id(manifest: dict) -> str:
    """The version id of builds made before the version covered content only (the whole manifest)."""
    body = {k: v for k, v in manifest.items() if k != "version"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def model_files(config: BuildConfig) -> dict[str, dict]:
    """``{name: {"path", "sha256"}}`` of the model files the build uses (``path`` as configured;
    the version takes only the sha256)."""
    models = {}
    if config.face.backend == "dlib":
        from .face.landmarks import DLIB_MODEL_NAME, dlib_model_path

        models["dlib_landmarks"] = {"path": DLIB_MODEL_NAME, "sha256": sha256_file(dlib_model_path())}
    elif config.face.backend == "fan":
        from .face.landmarks import fan_weights_path

        weights = fan_weights_path()
        models["fan_landmarks"] = {"path": weights.name, "sha256": sha256_file(weights)}
    for key, path in model_paths(config).items():
        if path:
            models[key.rsplit(".", 1)[-1]] = {"path": path, "sha256": sha256_file(path)}
    return models


def write_manifest(out: Path, manifest: dict, config: BuildConfig) -> dict:
    """Write ``manifest`` (its ``config`` is ``to_dict(config)``) with the format, versions, models and
    version id added."""
    manifest = dict(manifest, format=FORMAT, toolkit={"talkdata": __version__},
                    dependencies=dependency_versions(config), models=model_files(config))
    manifest["version"] = version_id(manifest)
    write_atomic(out / MANIFEST, canonical_json(manifest).encode())
    return manifest


def parse_manifest(text: bytes | str, where: str) -> dict:
    """The manifest in ``text``; one UserError when it is not a talkdata manifest."""
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{where} is not valid JSON ({err}); restore it or rebuild the dataset") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{where} is not a talkdata manifest (a JSON {type(manifest).__name__}, not an object); "
                        "restore it or rebuild the dataset")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise UserError(f"{where} is not a talkdata manifest: missing {', '.join(missing)}; "
                        "restore it or rebuild the dataset")
    wrong = [k for k, kind in REQUIRED.items() if not isinstance(manifest[k], kind)]
    if wrong:
        raise UserError(f"{where} is damaged: {', '.join(wrong)} "
                        f"{'has' if len(wrong) == 1 else 'have'} the wrong type; restore it or rebuild the dataset")
    for entry in manifest["shards"]:
        if not isinstance(entry, dict) or not all(k in entry for k in ("path", "split", "samples", "bytes", "sha256")):
            raise UserError(f"{where} is damaged: a shard entry lacks path, split, samples, bytes or sha256")
    for path, entry in manifest["artifacts"].items():
        if not isinstance(entry, dict) or not all(k in entry for k in ("bytes", "sha256")):
            raise UserError(f"{where} is damaged: artifact {path} lacks bytes or sha256")
    return manifest


def load_manifest(out, storage_options: dict | None = None) -> dict:
    """``dataset.json`` of the dataset folder or URL ``out`` (a Store works too)."""
    from .store import as_store

    store = as_store(out, storage_options)
    try:
        data = store.read_bytes(MANIFEST)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UserError(f"{store.url(MANIFEST)} not found: is {store.location} a dataset built by talkdata?") from None
    return parse_manifest(data, store.url(MANIFEST))


def verify(out, storage_options: dict | None = None) -> list[str]:
    """Problems found in a dataset folder or URL, one line each (empty when it matches its manifest).

    Checks the version id against the manifest's content, each split's sample and shard counts
    against the shard list and ``index.parquet``, every shard's and artifact's size and sha256, each
    shard's sample count, and that no unlisted file lies among the versioned content.
    """
    from .store import as_store

    store = as_store(out, storage_options)
    manifest = load_manifest(store)
    problems = []
    recomputed = version_id(manifest)
    if manifest["version"] not in (recomputed, _whole_manifest_id(manifest)):
        problems.append(f"version mismatch: the manifest's content hashes to {recomputed}, it says "
                        f"{manifest['version']} (dataset.json was edited)")
    problems += _check_counts(manifest)
    expected = {entry["path"]: entry for entry in manifest["shards"]}
    expected.update({path: entry for path, entry in manifest["artifacts"].items()})
    for path, entry in sorted(expected.items()):
        size = store.size(path)
        if size is None:
            problems.append(f"missing: {path}")
            continue
        if size != entry["bytes"]:
            problems.append(f"wrong size: {path} has {size} bytes, manifest says {entry['bytes']}")
            continue
        with store.open(path) as handle:
            digest = _sha256_stream(handle)
        if digest != entry["sha256"]:
            problems.append(f"checksum mismatch: {path} (sha256 differs from the manifest)")
        elif "samples" in entry and path.endswith(".tar"):
            with store.open(path) as handle:
                count = _count_samples(handle)
            if count != entry["samples"]:
                problems.append(f"wrong sample count: {path} has {count}, manifest says {entry['samples']}")
    if "index.parquet" in expected and store.size("index.parquet") == expected["index.parquet"]["bytes"]:
        problems += _check_index(store, manifest)
    for relative in store.files():
        if relative.split("/")[0] not in UNVERSIONED and relative not in expected:
            problems.append(f"extra file: {relative}")
    return problems


def _check_counts(manifest: dict) -> list[str]:
    """Each split's ``samples`` / ``shards`` against the shard list."""
    problems = []
    per_split: dict[str, list[int]] = {}
    for entry in manifest["shards"]:
        per_split.setdefault(str(entry["split"]), []).append(entry["samples"])
    for split in sorted(set(per_split) | set(manifest["splits"])):
        info = manifest["splits"].get(split)
        listed = per_split.get(split, [])
        if not isinstance(info, dict):
            problems.append(f"split {split}: has {len(listed)} shard(s) in the shard list but no entry in splits")
            continue
        if info.get("samples") != sum(listed):
            problems.append(f"split {split}: splits says {info.get('samples')} samples, its shards hold {sum(listed)}")
        if info.get("shards") != len(listed):
            problems.append(f"split {split}: splits says {info.get('shards')} shards, the shard list has {len(listed)}")
    return problems


def _check_index(store, manifest: dict) -> list[str]:
    """``index.parquet``'s rows per split and per shard against the manifest."""
    try:
        with store.open("index.parquet") as handle:
            rows = read_parquet(handle, columns=["split", "shard"]).to_pylist()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        return [f"index.parquet cannot be read: {err}"]
    problems = []
    by_split: dict[str, int] = {}
    by_shard: dict[str, int] = {}
    for row in rows:
        by_split[row["split"]] = by_split.get(row["split"], 0) + 1
        by_shard[row["shard"]] = by_shard.get(row["shard"], 0) + 1
    for split in sorted(set(by_split) | set(manifest["splits"])):
        listed = (manifest["splits"].get(split) or {}).get("samples", 0)
        if by_split.get(split, 0) != listed:
            problems.append(f"split {split}: index.parquet has {by_split.get(split, 0)} rows, splits says {listed}")
    shards = {entry["path"]: entry["samples"] for entry in manifest["shards"]}
    for shard in sorted(set(by_shard) | set(shards)):
        if by_shard.get(shard, 0) != shards.get(shard, 0):
            problems.append(f"index.parquet lists {by_shard.get(shard, 0)} samples in {shard}, "
                            f"the shard list says {shards.get(shard, 0)}")
    return problems


def _sha256_stream(handle) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _count_samples(handle) -> int:
    import tarfile

    keys = set()
    with tarfile.open(fileobj=handle, mode="r:") as tar:
        for member in tar:
            keys.add(split_member(member.name)[0])
    return len(keys)
