"""``talkdata build``: index -> split -> process clips -> fit shape model -> pack shards -> manifest.

Data flows one way. Per-clip results come from the cache (``OUT/.work``), so a re-run only
processes clips that have no entry yet, and the packing stage reads entries in key order: the
output does not depend on worker count or finishing order.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..config import resolve
from ..errors import REASONS, UserError
from ..face.shape import load_shape_model, shape_model_bytes
from ..manifest import canonical_json, sha256_file, write_atomic, write_manifest
from ..recipe import Recipe, load_recipe
from ..sample_meta import normalize as normalize_meta
from ..shards import ShardWriter, sample_hash
from ..corpora.records import ClipRecord
from ..acquire.resolve import check_source
from ..corpora.splits import SPLITS, assign_splits
from .cache import ClipCache, cache_key
from .card import write_card
from .clip import npy_bytes
from .executor import run_tasks
from .stats import fit_shape_model, shape_fields

WORK_DIR = ".work"
SHAPE_MODEL = "stats/shape_model.npz"


@dataclass
class BuildReport:
    out: Path
    clips_seen: int
    samples: dict[str, int]
    rejects: dict[str, int]
    manifest: dict = field(repr=False)
    statuses: list[dict] = field(repr=False, default_factory=list)

    def summary(self) -> str:
        lines = [f"clips seen: {self.clips_seen}"]
        lines.append("samples written: " + ", ".join(f"{s} {n}" for s, n in self.samples.items()))
        if self.rejects:
            lines.append("rejected: " + ", ".join(f"{reason} {n}" for reason, n in sorted(self.rejects.items())))
            lines.append(f"reject list: {self.out / 'rejects.parquet'}")
        else:
            lines.append("rejected: none")
        lines.append(f"dataset {self.manifest['name']} version {self.manifest['version']} in {self.out}")
        return "\n".join(lines)


def prepare_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to the output folder {out}: {err.strerror or err}") from None


def lock_output(work: Path):
    """Hold an exclusive lock on OUT for this build (released when the process ends, even by kill -9)."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    handle = open(work / "build.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"another talkdata build is writing to {work.parent}; wait for it to finish") from None
    return handle


def remove_leftovers(out: Path, work: Path) -> None:
    """Temporary files of an interrupted build (safe: this build holds the lock on OUT)."""
    import shutil

    for path in list(out.glob("*.tmp")) + list((out / "stats").glob("*.tmp")):
        path.unlink()
    for path in (work / "clips").glob("*/.tmp-*"):  # cache entries being staged (folders)
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def preflight(config: dict) -> None:
    """Load the configured models once here, so a missing model stops the build before any clip."""
    from ..face.detect import detector_backend
    from ..face.landmarks import landmark_backend
    from ..acquire.models import ensure_for_config

    ensure_for_config(config)  # downloads and verifies missing weights with a published URL and checksum
    detector_backend(config["face"]["detector"])
    landmark_backend(config["face"]["backend"], config["face"]["fan_device"])
    if config["audio"]["deepspeech_model"]:
        from ..audio.deepspeech import load_deepspeech

        load_deepspeech(config["audio"]["deepspeech_model"])


def index_clips(recipe: Recipe, source: Path, config: dict, exclude: tuple[Path, ...] = ()) -> list[ClipRecord]:
    """The corpus's clip records; ``exclude``: folders the index never enters (the output, when inside the source)."""
    if not source.exists():
        raise UserError(f"source folder not found: {source}")
    if not source.is_dir():
        raise UserError(f"source is not a folder: {source}")
    if not any(source.iterdir()):
        raise UserError(f"source folder is empty: {source}")
    check_source(recipe, source)  # the dataset module's own checks (e.g. CREMA-D git-lfs pointer files)
    records = recipe.indexer()(source, config, exclude=exclude)
    keys: dict[str, ClipRecord] = {}
    for record in records:
        if record.key in keys:
            raise UserError(f"two clips map to the key {record.key!r}: {keys[record.key].relpath} and {record.relpath}")
        keys[record.key] = record
    assign_splits(records, config["split"], recipe.protocols)
    return sorted(records, key=lambda r: r.key)


def build(recipe_name: str, source: str | Path, out: str | Path, sets: dict | None = None, workers: int = 0,
          scheduler: str | None = None, limit: int | None = None, retry_failed: bool = False,
          shape_model: str | None = None, progress: bool = True, isolate: bool = True,
          clip_timeout: float = 120.0) -> BuildReport:
    """``isolate``/``clip_timeout``: clips run in a supervised child process, rejected as
    ``decoder_crash`` when it dies and ``decode_timeout`` after ``clip_timeout`` seconds without
    progress (execution settings: they never change the output, so they are not part of the config)."""
    started = time.time()
    recipe = load_recipe(recipe_name)
    config = resolve(recipe.defaults, recipe.name, sets or {})
    source, out = Path(source).expanduser(), Path(out).expanduser()
    records = index_clips(recipe, source, config, exclude=(out,))
    if limit is not None:
        records = records[:limit]
    prepare_output(out)
    preflight(config)
    work = out / WORK_DIR
    lock = lock_output(work)
    remove_leftovers(out, work)
    cache = ClipCache(work)

    keys = [cache_key(r, config) for r in records]
    todo = []
    for record, key in zip(records, keys):
        status = cache.status(key)
        if status is None or (retry_failed and status["status"] == "failed"):
            todo.append((record, key))
    run_tasks(todo, config, str(work), workers, scheduler, progress, isolate=isolate, stall_timeout=clip_timeout)
    statuses = [cache.status(key) for key in keys]

    manifest = pack(out, recipe, config, records, keys, statuses, cache, shape_model, progress)
    rejects: dict[str, int] = {}
    for status in statuses:
        if status["status"] != "done":
            rejects[status["reason"]] = rejects.get(status["reason"], 0) + 1
    write_atomic(out / "build_info.json", canonical_json({
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "source": str(source.resolve()),
        "workers": workers,
        "scheduler": scheduler,
        "clips_processed_now": len(todo),
    }).encode())
    samples = {s: manifest["splits"][s]["samples"] for s in manifest["splits"]}
    lock.close()
    return BuildReport(out=out, clips_seen=len(records), samples=samples, rejects=rejects, manifest=manifest,
                       statuses=statuses)


def _table_rows_meta(meta: dict) -> dict:
    """Corpus metadata columns for index.parquet: scalars as they are, the rest as JSON text."""
    skip = {"dataset", "key", "speaker", "clip", "source", "fps", "frames", "duration", "face", "backends", "split"}
    row = {}
    for name, value in meta.items():
        if name in skip:
            continue
        row[name] = value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value, sort_keys=True)
    return row


def _write_parquet(path: Path, rows: list[dict], columns: list[str]) -> None:
    names = list(columns)
    for row in rows:
        for name in row:
            if name not in names:
                names.append(name)
    table = pa.table({name: [row.get(name) for row in rows] for name in names}) if rows else pa.table(
        {name: pa.array([], pa.string()) for name in names})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=False)
    write_atomic(path, buffer.getvalue())


def _shape_model(out: Path, config: dict, done: list[tuple[ClipRecord, str]], cache: ClipCache, given: str | None):
    if given:
        try:
            return load_shape_model(given)
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"cannot read shape model {given}: {err}") from None
    split = config["shape"]["fit_split"]
    fitting = [(r, k) for r, k in done if split == "all" or r.split == split] or done
    clips = [np.load(io.BytesIO(cache.read(k, "lmk_src.npy"))) for _, k in fitting]
    return fit_shape_model(clips, config["shape"])


def pack(out: Path, recipe: Recipe, config: dict, records: list[ClipRecord], keys: list[str], statuses: list[dict],
         cache: ClipCache, shape_model_path: str | None, progress: bool) -> dict:
    done = [(r, k) for r, k, s in zip(records, keys, statuses) if s["status"] == "done"]
    artifacts = {}
    model = None
    if done:
        model = _shape_model(out, config, done, cache, shape_model_path)
        (out / "stats").mkdir(exist_ok=True)
        write_atomic(out / SHAPE_MODEL, shape_model_bytes(model))
        artifacts[SHAPE_MODEL] = {"sha256": sha256_file(out / SHAPE_MODEL), "bytes": (out / SHAPE_MODEL).stat().st_size}
    elif (out / SHAPE_MODEL).exists():  # no sample: an earlier build's model must not stay (verify: extra file)
        (out / SHAPE_MODEL).unlink()

    # remove shards of an earlier build of this folder; new ones are written under temporary names
    old = sorted((out / "shards").rglob("*.tar*")) if (out / "shards").exists() else []
    for path in old:
        path.unlink()

    shards, index_rows = [], []
    splits = {}
    bar = tqdm(total=len(done), desc="pack shards", unit="sample", disable=not progress or not done)
    for split in SPLITS:
        members = [(r, k) for r, k in done if r.split == split]
        writer = ShardWriter(out, recipe.name, split, config["shards"]["max_samples"], config["shards"]["max_bytes"])
        for record, key in members:
            files = cache.files(key)
            meta = normalize_meta(dict(cache.meta(key), split=split))  # one type per field
            landmarks = np.load(io.BytesIO(files["lmk_src.npy"]))
            norm, codes = shape_fields(landmarks, model)
            files["lmk_norm.npy"] = npy_bytes(norm)
            files["pca.npy"] = npy_bytes(codes)
            meta["fields"] = sorted(files) + ["json"]
            meta["shape_model"] = {"sha256": artifacts[SHAPE_MODEL]["sha256"], "components": int(codes.shape[1])}
            files["json"] = canonical_json(meta).encode()
            shard = writer.write(record.key, files)
            index_rows.append({
                "key": record.key, "split": split, "shard": shard, "speaker": record.speaker, "clip": record.clip,
                "frames": meta["frames"], "fps": meta["fps"], "duration": meta["duration"],
                "sha256": sample_hash(files), "source": record.relpath, **_table_rows_meta(meta),
            })
            bar.update(1)
        written = writer.close()
        shards += written
        splits[split] = {"samples": len(members), "shards": len(written)}
    bar.close()

    _write_parquet(out / "index.parquet", index_rows,
                   ["key", "split", "shard", "speaker", "clip", "frames", "fps", "duration", "sha256", "source"])
    reject_rows = [{"key": s["key"], "source": s["source"], "split": r.split, "stage": s.get("stage", ""),
                    "reason": s["reason"], "message": s.get("message", "")}
                   for r, s in zip(records, statuses) if s["status"] != "done"]
    _write_parquet(out / "rejects.parquet", reject_rows, ["key", "source", "split", "stage", "reason", "message"])
    for name in ("index.parquet", "rejects.parquet"):
        artifacts[name] = {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}

    by_reason: dict[str, int] = {}
    for row in reject_rows:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    sources = sorted((r.relpath, cache.meta(k)["source"]["sha256"]) for r, k in done)
    fields = sorted({f for _, k in done for f in cache.meta(k).get("backends", {}).get("audio_features", [])})
    manifest = {
        "name": recipe.name,
        "recipe": recipe.data,
        "config": config,
        "source": {
            "clips_indexed": len(records),
            "fingerprint": hashlib.sha256(json.dumps(sources).encode()).hexdigest(),
        },
        "splits": splits,
        "shards": [s.manifest_entry() for s in shards],
        "artifacts": artifacts,
        "rejects": {"count": len(reject_rows), "by_reason": by_reason,
                    "reasons": {k: REASONS[k] for k in sorted(by_reason)}},
        "audio_features": fields,
        "shape_model": _shape_summary(model),
    }
    manifest = write_manifest(out, manifest)
    write_card(out, manifest, index_rows, model)
    return manifest


def _shape_summary(model) -> dict | None:
    if model is None:
        return None
    ratio = model.basis.explained_variance_ratio
    return {
        "path": SHAPE_MODEL,
        "components": int(model.basis.n_components),
        "explained_variance_ratio_first_6": round(float(ratio[:6].sum()), 6),
        "explained_variance_ratio_all": round(float(ratio.sum()), 6),
        "settings": model.settings,
    }
