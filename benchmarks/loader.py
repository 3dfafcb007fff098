"""Loader throughput: windows (items) per second of every profile through
``torch.utils.data.DataLoader`` with 0, 1 and 2 workers, next to a per-file baseline that reads the
same data the way the published systems' loaders do; then the reference training loops' steps per
second with and without data loading.

Usage::

    python benchmarks/loader.py [--data DATASET] [--copies 128] [--seconds 1.5] [--repeat 2]
                                [--workers 0 1 2] [--batch-size 8] [--train-steps 30] [--skip-train]
                                [--only NAME]

About 10 minutes on 2 cores with the defaults.

Data. ``DATASET`` is a folder built by ``talkdata build``. Default: the GRID sample clips of
``tests/data/grid`` (3 clips of 75 frames, 256 x 256 crops, 25 fps, one per split) built once into
``benchmarks/.cache/loader-grid``, then repeated ``--copies`` times into
``benchmarks/.cache/loader-grid-x{copies}``: every sample is written ``copies`` times under new keys
(``KEY-r000`` ...) into shards of 64 samples by talkdata's shard writer, so an epoch has as many
clips as a small corpus in shards like a built corpus's (a loop's epoch then spans several batches,
and DataLoader workers have shards to share).
``benchmarks/.cache`` is ignored by git.

Per-file baseline. Once per dataset version, every sample is written to
``benchmarks/.cache/{dataset}-perfile/{split}/{key}/`` as separate files - ``video.mp4``,
``audio.wav``, ``mfcc.npy``, ``pca.npy``, ``lmk.npy``, ``pose.npy``, ``blink.npy`` (and
``deepspeech.npy``), ``meta.json`` - the layout of ATVG (``landmark1d/.../clip.npy``,
``mfcc/.../clip.npy``), Diffused Heads (``video/``, ``audio/``, ``lmks/``) and FOMM-style loaders.
The baseline is a map-style ``Dataset`` over the same items (the same clips and window starts as
the profile: the list comes from one un-timed pass of the loader); its ``__getitem__`` does what a
typical published ``__getitem__`` does: open the clip's files, ``np.load`` the whole arrays, read
the whole wav, decode the **whole** mp4 from its file (PyAV, every frame converted to RGB, as
``torchvision.io.read_video`` does), cut the one window it returns and transform only that window's
frames (the same resize / normalise / audio windowing functions as the profile, so the items are
equal: checked on one item per profile before timing). Random choices (Diffused Heads' identity
frame, vid2vid's pair) are drawn per item. It is read with ``shuffle`` (random access) and torch's
``default_collate``; the loader with ``resampled=True`` (shards drawn with replacement; streams never
end, worker start-up is paid once) and ``talkdata.loader.collate`` (the same batches, see
tests/test_loader_internals.py; the ``default_collate`` column shows the loader with torch's). The
first ``--warmup`` batches are not timed, then batches are taken for ``--seconds``; each cell is
measured ``--repeat`` times, interleaved with the other reader's cells, and the best kept (the
machine may be shared). The ``ceiling`` columns are the windows per second of a DataLoader whose
dataset only hands out copies of one finished item, batched by ``talkdata.loader.collate``: the
cost of moving batches from worker processes to the main one, the loader's limit with that many
workers.

Goals (printed as met / NOT met): the loader delivers at least 3x the baseline's windows per second,
for every profile and worker count, and comparing each reader at its best worker count; and data
loading is never the bottleneck of the reference loops: a loop fed from the loader (its own
``training_batches()``, as ``fit`` reads them: epochs, persistent workers, read ahead in a thread
when there are workers) runs
at least 90 % of the steps per second of the same loop fed from a list of batches materialised
beforehand, with the same torch threads (best of ``--repeat`` interleaved rounds; ``atnet`` at
ATVG's sizes times a tenth of ``--train-steps``, at least 3). Two set-ups: the step on all cores
with 0 and 2 workers (the loader then shares the cores with the step), and the step on one thread
with 1 worker (the loader has a core of its own, as beside a GPU). Loops timed: ``atnet`` at ATVG's sizes (the default), ``atnet`` at
the small size of the tests, ``facial-pose`` at its defaults (``window=32``, MFCC, when the dataset
has no DeepSpeech features).

Numbers depend on the machine and its load (the load average is printed): compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache"
sys.path.insert(0, str(REPO))

GOAL_SPEEDUP = 3.0
GOAL_LOOP_SHARE = 0.9


# ------------------------------------------------------------------------------------- datasets


def default_dataset(copies: int) -> Path:
    base = CACHE / "loader-grid"
    if not (base / "dataset.json").is_file():
        from talkdata.pipeline.build import build

        print(f"building the GRID samples into {base} (once)")
        build("grid", REPO / "tests" / "data" / "grid", base)
    return replicate(base, copies) if copies > 1 else base


def replicate(base: Path, copies: int, per_shard: int = 64) -> Path:
    """``base`` with every sample written ``copies`` times (keys ``KEY-rNNN``) into shards of
    ``per_shard`` samples by talkdata's own shard writer (a built corpus has up to 500 per shard);
    written once per version of ``base``."""
    from talkdata.shards import ShardWriter, read_shard

    manifest = json.loads((base / "dataset.json").read_text())
    out = CACHE / f"{base.name}-x{copies}"
    done = out / "dataset.json"
    if done.is_file():
        written = json.loads(done.read_text())
        if written.get("version") == manifest["version"] and written.get("replicated") == [copies, per_shard]:
            return out
    shutil.rmtree(out, ignore_errors=True)
    for path in base.rglob("*"):
        relative = path.relative_to(base)
        if path.is_file() and not relative.parts[0].startswith(".") and relative.parts[0] != "shards" \
                and path.name != "dataset.json":
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            os.link(path, out / relative)
    shards, splits = [], {}
    for name, split in manifest["splits"].items():
        samples = {}
        for entry in manifest["shards"]:
            if entry["split"] == name:
                samples.update(read_shard(base / entry["path"]))
        writer = ShardWriter(out, manifest["name"], name, per_shard, 1 << 40)
        for key in sorted(f"{key}-r{copy:03d}" for key in samples for copy in range(copies)):
            writer.write(key, samples[key.rpartition("-r")[0]])
        written = writer.close()
        shards += [info.manifest_entry() for info in written]
        splits[name] = {**split, "samples": split["samples"] * copies, "shards": len(written)}
    done.write_text(json.dumps({**manifest, "shards": shards, "splits": splits, "replicated": [copies, per_shard]},
                               indent=2))
    return out


def per_file_copy(data: Path) -> Path:
    """Every sample of ``data`` as separate files in a folder per sample (written once per version)."""
    from talkdata.loader.shard_list import open_dataset
    from talkdata.shards import read_shard

    manifest = open_dataset(data).manifest
    out = CACHE / f"{data.name}-perfile"
    stamp, version = out / "VERSION", json.dumps([manifest["version"], manifest.get("replicated")])
    if stamp.is_file() and stamp.read_text() == version:
        return out
    shutil.rmtree(out, ignore_errors=True)
    for entry in manifest["shards"]:
        for key, files in read_shard(data / entry["path"]).items():
            folder = out / entry["split"] / key
            folder.mkdir(parents=True, exist_ok=True)
            for name, payload in files.items():
                (folder / ("meta.json" if name == "json" else name)).write_bytes(payload)
    stamp.write_text(version)
    return out


# ---------------------------------------------------------------------------- per-file baseline


def read_video(path: Path) -> np.ndarray:
    """The whole clip as (T, H, W, 3) RGB: PyAV, every frame converted (torchvision.io.read_video's way)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def read_wav(path: Path) -> np.ndarray:
    from talkdata.media.encode import decode_wav

    return decode_wav(path.read_bytes())[0]


def raw_item(folder: Path, meta: dict, start: int, rng, fields: tuple[str, ...]) -> dict:
    from talkdata.loader.windows import cut_audio, sample_span

    item = {"__key__": meta["key"], "start": start}
    for name in fields:
        if name.endswith(".npy"):
            item[name[:-4]] = np.load(folder / name)[start : start + 16]
    if "audio.wav" in fields:
        item["audio"] = cut_audio(read_wav(folder / "audio.wav"), *sample_span(start, 16, meta["fps"], 16000))
    if "video.mp4" in fields:
        item["video"] = read_video(folder / "video.mp4")[start : start + 16]
    return item


def atvg_item(folder: Path, meta: dict, start: int, rng, video: bool, scale: float) -> dict:
    from talkdata.loader.frames import resize, to_signed
    from talkdata.loader.windows import atvg_mfcc_windows

    codes = np.load(folder / "pca.npy")[:, :6].astype(np.float32) * np.float32(scale)
    targets = list(range(start, start + 16))
    item = {"__key__": meta["key"], "start": start, "example_index": start - 1, "example_pca": codes[start - 1],
            "target_pca": codes[start : start + 16],
            "mfcc": atvg_mfcc_windows(np.load(folder / "mfcc.npy"), targets, 3, 3, drop_c0=True)}
    if video:
        frames = to_signed(resize(read_video(folder / "video.mp4")[start - 1 : start + 16], 128, 128))
        item["example_frame"], item["frames"] = frames[0], frames[1:]
    return item


def sda_windows(audio: np.ndarray, frames: list[int], fps: float) -> np.ndarray:
    from talkdata.loader.windows import cut_audio

    stride = int(16000 / fps)
    return np.stack([cut_audio(audio, t * stride - 1280, 3200) for t in frames])


def sda_item(folder: Path, meta: dict, start: int, rng) -> dict:
    from talkdata.loader.frames import crop_width, resize, to_signed

    frames = list(range(start, start + 16))
    video = read_video(folder / "video.mp4")
    picked = to_signed(resize(crop_width(video[[0] + frames], 96 / 128), 96, 128))
    return {"__key__": meta["key"], "start": start,
            "audio": sda_windows(read_wav(folder / "audio.wav"), frames, meta["fps"]),
            "frames": picked[1:], "identity": picked[0]}


def diffused_item(folder: Path, meta: dict, t: int, rng) -> dict:
    from talkdata.loader.diffused_heads import lip_box, other_frame
    from talkdata.loader.frames import resize, to_gray_signed, to_signed
    from talkdata.loader.windows import clamp

    video = read_video(folder / "video.mp4")
    total = len(video)
    identity = other_frame(int(rng.integers(total - 1)), t)
    past = [identity] * max(2 - t, 0) + list(range(max(t - 2, 0), t))
    rgb = resize(video[[t, identity] + past], 128, 128)
    signed, gray = to_signed(rgb[:2]), to_gray_signed(rgb[2:])
    lips = np.load(folder / "lmk.npy")[identity, 48:68].astype(np.float32) * np.float32(128 / video.shape[1])
    audio = sda_windows(read_wav(folder / "audio.wav"), list(clamp(range(t - 2, t + 3), total)), meta["fps"])
    return {"__key__": meta["key"], "index": t, "identity_index": identity, "frame": signed[0],
            "identity": signed[1], "motion": gray, "audio": audio, "lips": lips, "lip_box": lip_box(lips, 128)}


def facial_item(folder: Path, meta: dict, start: int, rng, feature: str, window: int) -> dict:
    from talkdata.loader.facial import FACIAL_SIGNS, PITCH_YAW_ROLL, zscore
    from talkdata.loader.windows import facial_window_view, logits_at_fps, resample_frames

    fps = meta["fps"]
    features = np.load(folder / f"{feature}.npy")
    if feature == "deepspeech":  # 50 Hz logits, interpolated to the 30 fps frames of the clip
        frames = len(np.load(folder / "pose.npy"))
        features = logits_at_fps(features, int(round(frames / fps * 30.0)), 30.0)
    else:
        features = resample_frames(features.reshape(len(features), -1).astype(np.float32), fps, 30.0)
    from scipy.signal import savgol_filter

    pose, mean, std = zscore(savgol_filter(resample_frames(np.load(folder / "pose.npy")[:, PITCH_YAW_ROLL]
                                                           .astype(np.float64) * FACIAL_SIGNS, fps, 30.0), 5, 3, axis=0))
    blink = resample_frames(np.load(folder / "blink.npy").astype(np.float32), fps, 30.0)
    return {"__key__": meta["key"], "start": start,
            "audio": facial_window_view(features, 16, 8)[start : start + window].copy(),
            "pose": pose[start : start + window], "pose_mean": mean, "pose_std": std,
            "blink": blink[start : start + window]}


def vid2vid_item(folder: Path, meta: dict, _: int, rng) -> dict:
    from talkdata.loader.frames import to_unit
    from talkdata.loader.vid2vid import hopenet_pose

    video = read_video(folder / "video.mp4")
    source, driving = np.sort(rng.choice(len(video), size=2, replace=True))
    frames = to_unit(video[[source, driving]])
    return {"__key__": meta["key"], "source_index": int(source), "driving_index": int(driving), "source": frames[0],
            "driving": frames[1], "driving_pose": hopenet_pose(np.load(folder / "pose.npy")[driving])}


class PerFileDataset:
    """Map-style dataset: item ``i`` opens and decodes the files of its clip (see the module docstring)."""

    def __init__(self, root: Path, entries: list[tuple[str, str, int]], make):
        self.entries = entries
        self.root = root
        self.make = make

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        split, key, start = self.entries[index]
        folder = self.root / split / key
        meta = json.loads((folder / "meta.json").read_text())
        meta = {"key": key, "fps": float(meta["fps"])}
        return self.make(folder, meta, start, np.random.default_rng(index))


# ------------------------------------------------------------------------------------ configurations


def configurations(data: Path) -> list[tuple[str, dict, object]]:
    """(name, load() arguments, baseline item function)."""
    from functools import partial

    from talkdata.loader.shard_list import open_dataset

    manifest = open_dataset(data).manifest
    has_ds = "deepspeech" in manifest.get("audio_features", [])
    scale = 5.0 / float(manifest["shape_model"]["settings"].get("scale", 1.0))
    facial = ({"profile": "facial"} if has_ds else {"profile": "facial", "features": "mfcc", "window": 32}) | {
        "fields": ["deepspeech.npy" if has_ds else "mfcc.npy", "pose.npy", "blink.npy"]}
    all_fields = ("video.mp4", "audio.wav", "lmk.npy", "lmk_norm.npy", "pca.npy", "mfcc.npy", "pose.npy", "blink.npy")
    no_video = ("audio.wav", "mfcc.npy", "pca.npy", "pose.npy")
    return [
        ("raw, all fields", {"fields": list(all_fields)}, partial(raw_item, fields=all_fields)),
        ("raw, no video", {"fields": list(no_video)}, partial(raw_item, fields=no_video)),
        ("atvg", {"profile": "atvg"}, partial(atvg_item, video=True, scale=scale)),
        ("atvg, no video (atnet)", {"profile": "atvg", "fields": ["pca.npy", "mfcc.npy"]},
         partial(atvg_item, video=False, scale=scale)),
        ("sda", {"profile": "sda"}, sda_item),
        ("diffused_heads", {"profile": "diffused_heads"}, diffused_item),
        ("facial" + ("" if has_ds else " (mfcc, window 32)"), facial,
         partial(facial_item, feature="deepspeech" if has_ds else "mfcc", window=128 if has_ds else 32)),
        ("vid2vid 256", {"profile": "vid2vid"}, vid2vid_item),
    ]


def enumerate_items(data: Path, kwargs: dict) -> tuple[list[tuple[str, str, int]], float, dict]:
    """The profile's items of one pass (split, key, start), items per clip, and the first item."""
    import talkdata
    from talkdata.loader.shard_list import open_dataset
    from talkdata.shards import read_shard

    manifest = open_dataset(data).manifest
    splits = {}
    for entry in manifest["shards"]:
        for key in read_shard(data / entry["path"]):
            splits[key] = entry["split"]
    entries, first = [], None
    for item in talkdata.load(data, split="all", shuffle=False, **kwargs):
        entries.append((splits[item["__key__"]], item["__key__"], int(item.get("start", item.get("index", 0)))))
        first = first or item
    clips = sum(s["samples"] for s in manifest["splits"].values())
    return entries, len(entries) / max(1, clips), first


def check_same_items(root: Path, entries, make, theirs: dict, exact: bool) -> None:
    """The baseline's first item equals the loader's (exact profiles) or has its keys and shapes."""
    ours = PerFileDataset(root, [entries[0]], make)[0]
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for name, value in theirs.items():
        if isinstance(value, np.ndarray):
            assert value.shape == ours[name].shape and value.dtype == ours[name].dtype, name
            if exact:
                assert np.array_equal(value, ours[name]), name


# ----------------------------------------------------------------------------------------- timing


def rate(batches, batch_size: int, seconds: float, warmup: int) -> float:
    """Items per second, steady state."""
    for _ in range(warmup):
        next(batches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(batches)
        count += len(batch["__key__"])
    return count / (time.perf_counter() - start)


def loader_rate(data: Path, kwargs: dict, workers: int, batch_size: int, seconds: float, warmup: int,
                fast_collate: bool = True) -> float:
    import talkdata
    from talkdata.loader import collate as talkdata_collate
    from torch.utils.data import DataLoader, default_collate

    dataset = talkdata.load(data, split="all", resampled=True, **kwargs)
    collate = talkdata_collate if fast_collate else default_collate
    batches = iter(DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate))
    try:
        return rate(batches, batch_size, seconds, warmup)
    finally:
        del batches


def baseline_rate(root: Path, entries, make, workers: int, batch_size: int, seconds: float, warmup: int) -> float:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    dataset = PerFileDataset(root, entries, make)
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9, generator=torch.Generator().manual_seed(0))
    batches = iter(DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers))
    try:
        return rate(batches, batch_size, seconds, warmup)
    finally:
        del batches


def ceiling_rate(item: dict, workers: int, batch_size: int, seconds: float, warmup: int) -> float:
    """Windows per second of a DataLoader whose dataset does no work (copies of one finished item),
    batched by ``talkdata.loader.collate``: what the loader can reach at most with these workers and
    this batch size (the cost of moving batches between processes)."""
    import torch
    from torch.utils.data import DataLoader

    from talkdata.loader import collate

    class Repeat(torch.utils.data.IterableDataset):
        def __iter__(self):
            while True:
                yield dict(item)

    batches = iter(DataLoader(Repeat(), batch_size=batch_size, num_workers=workers, collate_fn=collate))
    try:
        return rate(batches, batch_size, seconds, warmup)
    finally:
        del batches


def loop_rates(data: Path, loop: str, overrides: dict, steps: int, workers_list: list[int], repeat: int) -> dict:
    """Steps per second of a reference loop fed from materialised batches and from the loader (its own
    ``training_batches()``, as ``fit`` reads them), and the share of the step time spent waiting for
    the next batch. ``repeat`` interleaved rounds, the best of each kept. ``overrides``
    may set ``threads`` (torch's CPU threads for the step)."""
    import importlib

    import torch

    from talkdata.train.batches import batches, training_batches
    from talkdata.train.settings import apply_overrides
    from talkdata.train.model_task import train_step

    module = importlib.import_module(f"talkdata.train.{loop.replace('-', '_')}")
    settings = apply_overrides(module.Settings(), {"eval_splits": "none", **overrides})
    task, model, optimizer, train_set, config = module.setup(str(data), settings, torch.device("cpu"), 0)

    def timed(source) -> tuple[float, float]:
        for _ in range(2):  # warm-up steps (allocations, worker start)
            train_step(task, model, optimizer, next(source)[2])
        waiting, start = 0.0, time.perf_counter()
        for _ in range(steps):
            asked = time.perf_counter()
            batch = next(source)[2]
            waiting += time.perf_counter() - asked
            train_step(task, model, optimizer, batch)
        total = time.perf_counter() - start
        return steps / total, waiting / total

    stream = batches(train_set, settings.batch_size, 0, "windows")
    materialised = [next(stream) for _ in range(steps + 2)]
    del stream
    out: dict = {"parameters": config["parameters"], "batch_size": settings.batch_size, "materialised": 0.0}
    for _ in range(repeat):
        out["materialised"] = max(out["materialised"], timed(iter(materialised))[0])
        for workers in workers_list:
            stream = training_batches(train_set, settings.batch_size, workers, "windows", torch.device("cpu"))
            speed, waiting = timed(stream)
            del stream
            if speed > out.get(workers, (0.0, 0.0))[0]:
                out[workers] = (speed, waiting)
    return out


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="a built dataset (default: the GRID samples)")
    parser.add_argument("--copies", type=int, default=128, help="repeat the default dataset's shards this many times")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=2,
                        help="measure each cell this many times (interleaved) and keep the best")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=30, help="timed steps per training-loop cell")
    parser.add_argument("--skip-train", action="store_true", help="only the loader table")
    parser.add_argument("--only", default=None, help="only profiles whose name contains this")
    args = parser.parse_args()

    import torch

    from talkdata.loader.shard_list import open_dataset

    data = args.data or default_dataset(args.copies)
    manifest = open_dataset(data).manifest
    root = per_file_copy(data)
    print(f"dataset {data}: {sum(s['samples'] for s in manifest['splits'].values())} clips, "
          f"{len(manifest['shards'])} shards, crop {manifest['config']['crop']['size']} px, "
          f"{manifest['config']['video']['fps']:g} fps; per-file copy {root}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"batch size {args.batch_size}; best of {args.repeat} x {args.seconds:g} s per cell\n")

    workers = args.workers
    piped = [w for w in workers if w > 0]
    header = (f"{'windows/s':26s} {'win/clip':>8s} | " + " ".join(f"{f'loader w={w}':>11s}" for w in workers) + " | "
              + " ".join(f"{f'per-file w={w}':>13s}" for w in workers) + " | "
              + " ".join(f"{f'x w={w}':>7s}" for w in workers) + f" | {'x best':>6s} | "
              + " ".join(f"{f'ceiling w={w}':>12s}" for w in piped) + f" | {'default_collate':>15s}")
    print(header)
    print("-" * len(header))
    speedups: dict[str, list[float]] = {}
    best: dict[str, float] = {}
    ceilings: dict[str, list[float]] = {}
    for name, kwargs, make in configurations(data):
        if args.only and args.only not in name:
            continue
        entries, per_clip, first = enumerate_items(data, kwargs)
        exact = not name.startswith(("diffused", "vid2vid"))  # their random draws differ from the loader's
        check_same_items(root, entries, make, first, exact)
        ours, base = [0.0] * len(workers), [0.0] * len(workers)
        ceiling = [0.0] * len(piped)
        plain = 0.0
        for _ in range(args.repeat):  # interleaved, so that both readers see the same machine load
            for i, w in enumerate(workers):
                ours[i] = max(ours[i], loader_rate(data, kwargs, w, args.batch_size, args.seconds, args.warmup))
                base[i] = max(base[i], baseline_rate(root, entries, make, w, args.batch_size, args.seconds,
                                                     args.warmup))
            for i, w in enumerate(piped):
                ceiling[i] = max(ceiling[i], ceiling_rate(first, w, args.batch_size, args.seconds, args.warmup))
            plain = max(plain, loader_rate(data, kwargs, workers[0], args.batch_size, args.seconds, args.warmup,
                                           fast_collate=False))
        speedups[name] = [a / b for a, b in zip(ours, base)]
        best[name] = max(ours) / max(base)
        ceilings[name] = ceiling
        print(f"{name:26s} {per_clip:8.1f} | " + " ".join(f"{r:11.1f}" for r in ours) + " | "
              + " ".join(f"{r:13.1f}" for r in base) + " | " + " ".join(f"{s:6.1f}x" for s in speedups[name])
              + f" | {best[name]:5.1f}x | " + " ".join(f"{c:12.0f}" for c in ceiling) + f" | {plain:15.1f}",
              flush=True)
    if speedups:
        worst = min((s, name, w) for name, values in speedups.items() for s, w in zip(values, workers))
        print(f"\nGOAL loader >= {GOAL_SPEEDUP:g}x the per-file baseline, every profile and worker count: "
              f"{'met' if worst[0] >= GOAL_SPEEDUP else 'NOT met'} (lowest {worst[0]:.1f}x: {worst[1]}, {worst[2]} workers)")
        for name, values in speedups.items():
            low = [f"{w} workers {s:.1f}x" for s, w in zip(values, workers) if s < GOAL_SPEEDUP]
            if low:
                print(f"  below: {name}: {', '.join(low)}")
        worst_best = min((s, name) for name, s in best.items())
        print(f"GOAL loader >= {GOAL_SPEEDUP:g}x the per-file baseline, each at its best worker count: "
              f"{'met' if worst_best[0] >= GOAL_SPEEDUP else 'NOT met'} (lowest {worst_best[0]:.1f}x: {worst_best[1]})")
        print("(loader: talkdata.load + talkdata.loader.collate; per-file: torch's default_collate, as published "
              f"loaders; default_collate: the loader with torch's default_collate, {workers[0]} workers")
        if piped:
            print(" ceiling: windows/s of a DataLoader over copies of one finished item, batched by talkdata's "
                  "collate - the inter-process transfer limit of the loader with that many workers)")

    if not args.skip_train:
        small = {"channels": 4, "fc": 64, "audio_dim": 32, "example_dim": 32, "hidden": 32, "layers": 1, "batch_size": 4}
        loops = [("atnet (ATVG sizes)", "atnet", {}, max(3, args.train_steps // 10)),
                 ("atnet (test size)", "atnet", small, args.train_steps),
                 ("facial-pose", "facial-pose", {}, args.train_steps)]
        from talkdata.train.device import torch_threads

        cores = os.cpu_count() or 1
        # (label, torch threads of the step, DataLoader workers): all cores for the step, the loader
        # in the same process or in workers that share those cores; then a worker on a core of its own
        setups = [(f"{cores} thr", cores, [0, 2]), ("1 thr", 1, [1])]
        columns = [(label, threads, w) for label, threads, workers in setups for w in ["mat", *workers]]
        print(f"\ntraining steps/s on the CPU ({cores} cores): fed from a list of batches made beforehand (mat) vs "
              "from the loader with w workers (% of mat with the same threads; wait: share of the time in "
              "next(batch)); 'thr': torch threads of the step")
        header = (f"{'loop':20s} {'params':>11s} {'batch':>5s} {'steps':>5s} | "
                  + " | ".join(f"{f'{label} ' + ('mat' if w == 'mat' else f'w={w}'):>24s}" for label, _, w in columns))
        print(header)
        print("-" * len(header))
        shares = []
        for label, loop, overrides, steps in loops:
            cells, info = [], None
            for setup_label, threads, workers in setups:
                with torch_threads():
                    rates = loop_rates(data, loop, {**overrides, "threads": threads}, steps, workers, args.repeat)
                info = rates
                cells.append(f"{rates['materialised']:8.2f}")
                for w in workers:
                    speed, waiting = rates[w]
                    share = speed / rates["materialised"]
                    shares.append((share, label, setup_label, w))
                    cells.append(f"{speed:8.2f} ({share:4.0%}) wait {waiting:3.0%}")
            print(f"{label:20s} {info['parameters']:11,d} {info['batch_size']:5d} {steps:5d} | "
                  + " | ".join(f"{c:>24s}" for c in cells), flush=True)
        for setup_label, _, workers in setups:
            for w in workers:
                worst = min(s for s in shares if s[2] == setup_label and s[3] == w)
                print(f"GOAL data loading is not the bottleneck, {setup_label}, {w} workers (loader-fed >= "
                      f"{GOAL_LOOP_SHARE:.0%} of mat): {'met' if worst[0] >= GOAL_LOOP_SHARE else 'NOT met'} "
                      f"(lowest {worst[0]:.0%}: {worst[1]})")

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: main process {own:.0f} MiB, largest worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
