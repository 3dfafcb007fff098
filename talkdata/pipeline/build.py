"""``talkdata build``: index -> split -> process clips -> fit shape model -> pack shards -> manifest.

Orchestration only: every stage runs on one ``Executor`` (this process, a local cluster or
``--scheduler``) and the driver keeps no per-clip list a file can hold. Per-clip results come from
the cache (``OUT/.work``), so a re-run only processes clips that have no (intact) entry yet, and the
packing stage plans shards in key order: the output does not depend on worker count or finishing
order.
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import platform
import re
import socket
import sys
import time
import zipfile
from array import array
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import BuildConfig, Shape, pinned, resolve, to_dict
from ..errors import REASONS, UserError
from ..face.shape import ShapeModel, load_shape_model, shape_model_bytes
from ..shards import SPLITS
from ..files import sha256_file, write_atomic
from ..manifest import MANIFEST, canonical_json, write_manifest
from ..recipe import Recipe, load_recipe
from ..corpora import index_cache
from ..corpora.records import RecordList
from ..acquire.resolve import check_source
from ..corpora.splits import assign_splits
from .cache import GENERATION, ClipCache, KeyList, cache_key, read_generation
from .card import write_card
from .executor import Executor, run_clips
from .outcome import Done, Failed, reason
from .pack_stats import PackStats
from .pack import (INDEX_COLUMNS, REJECT_COLUMNS, ColumnTypes, Member, ShapeRef, TableWriter, measure,
                   plan_shards, shape_bytes, write_shard)
from .fingerprint import SourceFingerprint
from .shape_fit import FrameSampler, clip_groups, fit_basis, model_mismatch, sampled_frames
from .generations import KeyLookup, commit, drop_parked, park, release_shard
from .task import warm_up

WORK_DIR = ".work"
INDEX_DIR = "index"  # in WORK_DIR: the stored index (reused while the source tree is unchanged)
SHAPE_MODEL = "stats/shape_model.npz"
#: written into OUT/.work at the first build: this folder is talkdata's to manage
MARKER = "talkdata-output"

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    out: Path
    clips_seen: int
    samples: dict[str, int]
    rejects: dict[str, int]
    manifest: dict = field(repr=False)

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
    """Create OUT, or accept it when it is empty or holds a talkdata build; refuse any other folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and not is_talkdata_output(out) and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty and holds no talkdata build; give a new or empty folder "
                        "(talkdata never writes into, or deletes from, a folder it did not create)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to the output folder {out}: {err.strerror or err}") from None


def check_same_dataset(out: Path, name: str) -> None:
    """A finished build in OUT must be of the recipe ``name``: refused before indexing or processing,
    not after every clip ran (OUT holds one dataset; its shards are named after it)."""
    if not is_talkdata_output(out):
        return  # a new folder, or someone else's (refused by prepare_output)
    try:
        built = json.loads((out / MANIFEST).read_text()).get("name")
    except (OSError, ValueError, AttributeError):  # no manifest yet: a build stopped before its end
        built = marked_recipe(out)
    if isinstance(built, str) and built and built != name:
        raise UserError(f"--out {out} holds the {built} dataset; build {name} into another folder (one dataset "
                        "per output folder)")


def is_talkdata_output(out: Path) -> bool:
    """OUT was made by talkdata: its marker, or (builds before the marker) a talkdata manifest."""
    if (out / WORK_DIR / MARKER).is_file():
        return True
    try:
        return str(json.loads((out / MANIFEST).read_text()).get("format", "")).startswith("talkdata-dataset/")
    except (OSError, ValueError, AttributeError):
        return False


def mark_output(work: Path, name: str) -> None:
    """Write the marker with the recipe ``name`` of the first build (a folder holds one dataset)."""
    marker = work / MARKER
    if not marker.is_file():
        write_atomic(marker, f"This folder is the output of a talkdata build.\n{_MARKED_RECIPE}{name}\n".encode())


_MARKED_RECIPE = "recipe: "


def marked_recipe(out: Path) -> str | None:
    """The recipe OUT's marker records; None without a marker, or for one written before markers recorded it."""
    try:
        lines = (out / WORK_DIR / MARKER).read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line[len(_MARKED_RECIPE):].strip() or None for line in lines if line.startswith(_MARKED_RECIPE)), None)


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


#: files talkdata writes at the top of OUT and in stats/ (their ``.tmp`` are an interrupted build's)
_OWN_FILES = {"index.parquet", "rejects.parquet", MANIFEST, "README.md", "build_info.json"}


def remove_leftovers(out: Path, work: Path) -> None:
    """Temporary files of an interrupted build (safe: this build holds the lock on OUT); only names talkdata writes."""
    import shutil

    for path in out.glob("*.tmp"):
        if path.name[: -len(".tmp")] in _OWN_FILES:
            path.unlink()
    for path in (out / "stats").glob("*.tmp"):
        if path.name == Path(SHAPE_MODEL).name + ".tmp":
            path.unlink()
    for path in (work / "clips").glob("*/.tmp-*"):  # cache entries being staged (folders)
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def own_shards(out: Path, name: str) -> list[Path]:
    """Shard files (and their ``.tmp``) of earlier builds of this recipe in OUT; nothing else."""
    pattern = re.compile(rf"{re.escape(name)}-(?P<split>[a-z]+)-\d{{6}}\.tar(\.tmp)?")
    found = []
    for split in SPLITS:
        folder = out / "shards" / split
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir())
                      if p.is_file() and (m := pattern.fullmatch(p.name)) and m["split"] == split]
    return found


def fetch_models(config: BuildConfig) -> None:
    """Download and verify missing model weights that have a published URL and checksum (before any clip)."""
    from ..acquire.models import ensure_for_config

    ensure_for_config(config)


def index_clips(recipe: Recipe, source: Path, config: BuildConfig, exclude: tuple[Path, ...] = (),
                stored: Path | None = None) -> RecordList:
    """The corpus's clip records in key order; ``exclude``: folders the index never enters (the output,
    when inside the source). ``stored``: a folder of stored indexes (``corpora/index_cache.py``): the
    index stored there for an unchanged tree is reused instead of parsing the corpus again; the
    result's ``fingerprint`` names the tree (None without ``stored``) and ``reused`` says which it was."""
    if not source.exists():
        raise UserError(f"source folder not found: {source}")
    if not source.is_dir():
        raise UserError(f"source is not a folder: {source}")
    if not any(source.iterdir()):
        raise UserError(f"source folder is empty: {source}")
    check_source(recipe, source)  # the dataset module's own checks (e.g. CREMA-D git-lfs pointer files)
    fingerprint = index_cache.tree_fingerprint(source, recipe.data, exclude) if stored is not None else None
    records = index_cache.load(stored, fingerprint) if fingerprint else None
    reused = records is not None
    if records is None:  # the indexer's records, one at a time, straight into the compact list in key order
        records = RecordList.pack(recipe.indexer()(source, config, exclude=exclude), by_key=True)
    unsplit = records.unsplit()
    if len(unsplit):  # splits come from the config each time (a stored index keeps the indexer's own)
        speakers: dict[str, int] = {}  # one entry per speaker, not per record
        codes = np.fromiter((speakers.setdefault(records.speaker(int(i)), len(speakers)) for i in unsplit),
                            dtype=np.int64, count=len(unsplit))
        todo = [_Speaker(speaker) for speaker in speakers]
        del speakers
        assign_splits(todo, config.split, recipe.protocols)  # depends only on the set of speakers
        records.set_splits(unsplit, (todo[code].split for code in codes))
    records.fingerprint, records.reused = fingerprint, reused
    return records


class _Speaker:
    """What ``assign_splits`` reads and writes of a record (a few bytes, not the whole record)."""

    __slots__ = ("speaker", "split")

    def __init__(self, speaker: str):
        self.speaker, self.split = speaker, ""


def build(recipe_name: str, source: str | Path, out: str | Path, sets: dict | None = None, workers: int = 0,
          scheduler: str | None = None, limit: int | None = None, retry_failed: bool = False,
          shape_model: str | None = None, isolate: bool = True,
          clip_timeout: float = 120.0, keep_cache: bool = False) -> BuildReport:
    """``isolate``/``clip_timeout``: clips run in a supervised child process, rejected as
    ``decoder_crash`` when it dies and ``decode_timeout`` after ``clip_timeout`` seconds without
    progress (execution settings: they never change the output, so they are not part of the config).
    ``keep_cache``: keep a full copy of every sample in ``OUT/.work`` (by default, cache entries
    point into the shards after a successful build: the dataset is stored once)."""
    started = time.time()
    recipe = load_recipe(recipe_name)
    config = resolve(recipe.defaults, recipe.name, sets or {})
    given_model = read_given_model(shape_model, config.shape) if shape_model else None
    source, out = Path(source).expanduser(), Path(out).expanduser()
    work = out / WORK_DIR
    check_same_dataset(out, recipe.name)
    records = index_clips(recipe, source, config, exclude=(out,),
                          stored=work / INDEX_DIR if is_talkdata_output(out) or not out.exists() else None)
    prepare_output(out)
    fetch_models(config)
    warm_up(config)  # a missing model stops the build before any clip
    lock = lock_output(work)
    mark_output(work, recipe.name)
    remove_leftovers(out, work)
    reused = records.reused
    if records.fingerprint and not reused:
        index_cache.save(work / INDEX_DIR, records.fingerprint, records)
    if limit is not None:
        records = records[:limit]
    cache = ClipCache(work)
    keyed = pinned(config).config  # models by content, not by path
    keys = KeyList(cache_key(r, keyed) for r in records)

    def needs_processing(i: int) -> bool:
        outcome = cache.outcome(keys[i])
        if outcome is None or (retry_failed and isinstance(outcome, Failed)):
            return True
        return isinstance(outcome, Done) and cache.damage(keys[i]) is not None  # damaged entry: process again

    todo = np.fromiter((i for i in range(len(records)) if needs_processing(i)), dtype=np.int64)  # 8 bytes per clip
    logger.debug(f"{recipe.name}: {len(records)} clips indexed in {source}, {len(todo)} to process into {out}")
    with Executor(workers, scheduler) as executor:
        for _ in run_clips(executor, ((records[int(i)].to_dict(), keys[i]) for i in todo), len(todo), config, str(work),
                           isolate=isolate, stall_timeout=clip_timeout):
            pass
        manifest, rejects = pack(out, recipe, config, records, keys, cache, given_model, executor, keep_cache)
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
        "index": "reused" if reused else "parsed",
    }).encode())
    samples = {s: manifest["splits"][s]["samples"] for s in manifest["splits"]}
    lock.close()
    return BuildReport(out=out, clips_seen=len(records), samples=samples, rejects=rejects, manifest=manifest)


def fit_task(work_dir: str, settings: Shape, chunk: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Executor task: the sampled, identity-removed frames of a few clips (``(cache key, frames)``)."""
    from .executor import cap_blas_threads

    cap_blas_threads()
    cache = ClipCache(work_dir)
    parts = [sampled_frames(settings, np.load(io.BytesIO(cache.read(key, "lmk_src.npy"))), frames)
             for key, frames in chunk]
    return np.concatenate(parts) if parts else np.zeros((0, 68, 2))


FIT_CHUNK = 64  # clips per fit task
MEASURE_CHUNK = 512  # cache entries per measuring task


def _chunks(items, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_given_model(path: str, settings: Shape) -> ShapeModel:
    """The ``--shape-model`` file, read once before anything else: one ``UserError`` line when it cannot be
    read (missing, empty, truncated, not talkdata's) or was fitted with other shape settings than the
    build's (its samples would follow the model while the manifest's config says otherwise)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"cannot read shape model {path}: no such file")
    if file.stat().st_size == 0:
        raise UserError(f"cannot read shape model {path}: the file is empty")
    if not zipfile.is_zipfile(file):
        raise UserError(f"cannot read shape model {path}: not a .npz archive (truncated, or not a "
                        "stats/shape_model.npz)")
    try:
        model = load_shape_model(file)
    except Exception as err:  # noqa: BLE001 - any failure to read the user's file is one error line
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"cannot read shape model {path}: {reason} (a damaged or truncated stats/shape_model.npz?)"
                        ) from None
    mismatch = model_mismatch(model.settings, settings)
    if mismatch:
        name, fitted, given = mismatch
        raise UserError(f"--shape-model {path} was fitted with shape.{name}={fitted}, this build has "
                        f"shape.{name}={given}: give --set shape.{name}={fitted} to build with this model, or leave "
                        "out --shape-model to fit one with the build's settings")
    return model


def _shape_model(config: BuildConfig, records: RecordList, keys: Sequence[str], done: np.ndarray, frames: np.ndarray,
                 cache: ClipCache, given: ShapeModel | None, executor: Executor):
    if given is not None:
        return given
    settings = config.shape
    split = settings.fit_split
    fitting = done if split == "all" else records.in_split(done, split)
    if not len(fitting):
        fitting = done
    sampler = FrameSampler(settings.max_frames, settings.seed)
    for i in fitting:  # the sample is chosen from frame counts alone, before any landmark is read
        sampler.add(records.key(i), int(frames[i]))
    numbers, chosen_frames = sampler.chosen()  # max_frames entries at most
    clips, count = int(np.count_nonzero(np.diff(numbers, prepend=-1))), len(numbers)
    tasks = _chunks(((keys[fitting[n]], frames) for n, frames in clip_groups(numbers, chosen_frames)), FIT_CHUNK)
    sample, position = np.zeros((0, 68, 2)), 0  # filled in (clip, frame) order as the tasks' frames come back
    for part in executor.map(fit_task, tasks, shared=(str(cache.root.parent), settings),
                             total=-(-clips // FIT_CHUNK), desc="fit shape model", unit="task"):
        if not position:
            sample = np.empty((count, *part.shape[1:]), dtype=part.dtype)
        sample[position:position + len(part)] = part
        position += len(part)
    if position != count:
        raise RuntimeError(f"the shape fit got {position} sampled frames back, {count} were chosen")
    return fit_basis(sample, settings, len(fitting))


def _release(executor: Executor, out: Path, cache: ClipCache, generation: str, keep: bool,
             shards: Iterable[tuple[str, dict[str, str] | None]], total: int, lookup: KeyLookup | None = None) -> None:
    """Point cache entries into the shards of ``generation`` (``release_shard`` per shard: its members as
    ``{key: cache key}``, or None to find them in ``lookup``, sent once)."""
    for _ in executor.map(release_shard, shards, shared=(str(out), str(cache.work), generation, keep, lookup),
                          total=total, desc="release cache", unit="shard"):
        pass


def return_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; nothing elsewhere). Called before the
    stages that peak: the memory the earlier stages freed (reading a million ledgers, decoding task results) would
    otherwise stay resident under the fit's and the card's own arrays."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextmanager
def _timed(timings: dict | None, name: str):
    """Seconds of a dataset-level stage into ``timings`` (for benchmarks/scale.py)."""
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def pack(out: Path, recipe: Recipe, config: BuildConfig, records: RecordList, keys: Sequence[str], cache: ClipCache,
         given_model: ShapeModel | None, executor: Executor, keep_cache: bool = False,
         timings: dict | None = None) -> tuple[dict, dict[str, int]]:
    """Fit the shape model (or use ``given_model``), write the shards, the index, the rejects, the manifest and the card."""
    rejects = TableWriter(out / "rejects.parquet", ColumnTypes(REJECT_COLUMNS).schema(REJECT_COLUMNS))
    by_reason: dict[str, int] = {}
    done_list = array("q")  # 8 bytes per clip
    for i, key in enumerate(keys):
        outcome = cache.outcome(key)
        if isinstance(outcome, Done):
            done_list.append(i)
            continue
        code = reason(outcome)
        by_reason[code] = by_reason.get(code, 0) + 1
        rejects.write({"key": outcome.key, "source": outcome.source, "split": records.split(i),
                       "stage": outcome.stage, "reason": code, "message": outcome.message})
    rejects.close()
    done = np.frombuffer(done_list, dtype=np.int64) if len(done_list) else np.zeros(0, dtype=np.int64)

    own = own_shards(out, recipe.name)
    foreign = sorted(p for p in (out / "shards").rglob("*") if p.is_file() and p not in set(own)) \
        if (out / "shards").is_dir() else []
    if foreign:
        raise UserError(f"{out / 'shards'} holds files talkdata did not write ({foreign[0].relative_to(out)}"
                        f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); move them out of the "
                        "output folder and run the same command again")

    def finish_release() -> None:  # a committed pack whose release was cut short: finish it first
        lookup = KeyLookup((records.key(int(i)) for i in done), (keys[int(i)] for i in done))
        shards = [(p.relative_to(out).as_posix(), None) for p in own if p.name.endswith(".tar")]
        _release(executor, out, cache, read_generation(cache.work / GENERATION), keep_cache, shards, len(shards),
                 lookup=lookup)

    park(out, cache.work, own, finish_release)

    # sizes, frame counts and index columns of every done entry, measured on the executor from ledgers and
    # meta.json (no payload read); the driver keeps 12 bytes per clip of it
    parts = [records.in_split(done, split) for split in SPLITS]
    order = np.concatenate(parts)  # the done records split by split, in key order within each
    ends = np.cumsum([0] + [len(part) for part in parts])
    del parts
    by_split = {split: order[ends[n]:ends[n + 1]] for n, split in enumerate(SPLITS)}  # views of ``order``
    base = np.zeros(len(records), dtype=np.int64)
    frames = np.zeros(len(records), dtype=np.int32)
    columns = ColumnTypes(INDEX_COLUMNS)
    fingerprint = SourceFingerprint()
    audio_features: set[str] = set()
    with _timed(timings, "measure"):
        batches = _chunks(order, MEASURE_CHUNK)
        results = executor.map(measure, ([(records.split(i), keys[i]) for i in batch] for batch in batches),
                               shared=(str(cache.work),), total=-(-len(order) // MEASURE_CHUNK),
                               desc="measure samples", unit="task")
        position = 0
        for measured in results:
            chunk = order[position:position + len(measured.bytes)]
            position += len(chunk)
            base[chunk], frames[chunk] = measured.bytes, measured.frames
            columns.merge(measured.columns)
            fingerprint.extend(measured.fingerprint)
            audio_features |= measured.audio_features
        source_sha256 = fingerprint.sha256()
        del fingerprint  # its pairs are not held through the fit (the driver's peak)
    return_free_memory()

    artifacts = {}
    model = None
    if len(done):
        with _timed(timings, "fit"):
            model = _shape_model(config, records, keys, done, frames, cache, given_model, executor)
        (out / "stats").mkdir(exist_ok=True)
        write_atomic(out / SHAPE_MODEL, shape_model_bytes(model))
        artifacts[SHAPE_MODEL] = {"sha256": sha256_file(out / SHAPE_MODEL), "bytes": (out / SHAPE_MODEL).stat().st_size}
    elif (out / SHAPE_MODEL).exists():  # no sample: an earlier build's model must not stay (verify: extra file)
        (out / SHAPE_MODEL).unlink()
    shape = ShapeRef(artifacts[SHAPE_MODEL]["sha256"], int(model.basis.n_components)) if model else None

    def members(named: bool = True):  # (split, Member) in plan order: the order of ``order``
        return ((split, Member(records.key(i) if named else "", keys[i] if named else "",
                               int(base[i]) + shape_bytes(int(frames[i]), shape)))
                for split in SPLITS for i in by_split[split])

    limits = config.shards.max_samples, config.shards.max_bytes
    with _timed(timings, "plan"):  # counted first (the plans themselves are made again as they are sent)
        shard_counts = {split: 0 for split in SPLITS}
        for plan in plan_shards(members(named=False), *limits):
            shard_counts[plan.split] += 1
    index = TableWriter(out / "index.parquet", columns.schema(["shard", "sha256"]))
    shards = []
    stats = PackStats()
    spans = array("q", [0])  # shard n holds the samples order[spans[n]:spans[n + 1]]
    results = executor.map(write_shard, plan_shards(members(), *limits),
                           shared=(str(out), recipe.name, str(cache.root.parent), model, shape),
                           total=sum(shard_counts.values()), desc="pack shards", unit="shard")
    with _timed(timings, "pack"):
        for result in results:
            shards.append(result.info.manifest_entry())
            spans.append(spans[-1] + len(result.rows))
            for row in result.rows:
                index.write(row)
            stats.merge(result.stats)
        index.close()
    for name in ("index.parquet", "rejects.parquet"):
        artifacts[name] = {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}

    splits = {split: {"samples": len(by_split[split]), "shards": shard_counts[split]} for split in SPLITS}
    del by_split, base, frames, done  # per-clip arrays the stages below do not need (the card is drawn with them gone)
    manifest = {
        "name": recipe.name,
        "recipe": recipe.data,
        "config": to_dict(config),
        "source": {
            "clips_indexed": len(records),
            "fingerprint": source_sha256,
        },
        "splits": splits,
        "shards": shards,
        "artifacts": artifacts,
        "rejects": {"count": sum(by_reason.values()), "by_reason": dict(sorted(by_reason.items())),
                    "reasons": {k: REASONS[k] for k in sorted(by_reason)}},
        "audio_features": sorted(audio_features),
        "shape_model": _shape_summary(model),
    }
    manifest = write_manifest(out, manifest, config)
    commit(cache.work, manifest["version"])  # entries may now point into these shards
    with _timed(timings, "release"):
        _release(executor, out, cache, manifest["version"], keep_cache,
                 ((entry["path"], {records.key(i): keys[i] for i in order[spans[n]:spans[n + 1]]})
                  for n, entry in enumerate(shards)), len(shards))
        drop_parked(cache.work)
    with _timed(timings, "card"):
        write_card(out, manifest, stats, model)
    return manifest, by_reason


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
