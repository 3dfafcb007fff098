"""Loader throughput: clips (samples) per second and items (windows) per second for every profile,
through ``torch.utils.data.DataLoader`` with ``num_workers`` 0 and 2.

Usage::

    python benchmarks/loader.py [--data DATASET] [--seconds 3] [--workers 0 2] [--batch-size 8]

``DATASET`` is a folder built by ``talkdata build``. Default: the GRID sample clips of
``tests/data/grid`` built once into ``benchmarks/.cache/loader-grid`` (3 clips of 75 frames,
256 x 256 crops, 25 fps, one shard per split; ignored by git).

Each configuration streams ``split="all"`` with ``resampled=True`` (shards drawn with replacement,
so a tiny dataset does not end the stream and the workers' start-up is paid once). The first
``--warmup`` batches are not timed; then batches are consumed for ``--seconds``. A *sample* is one
decoded clip (all the fields the configuration reads, video decoded from the mp4 bytes in memory);
an *item* is what the profile yields (a window, a target frame, a pair); samples/s is items/s
divided by the items per clip, counted on one un-timed pass. Peak RSS is ``ru_maxrss`` of this
process and of its (waited-for) worker processes. ``facial`` uses ``features="mfcc"`` and
``window=32`` when the dataset has no DeepSpeech features (the default dataset has none) because
FACIAL's 128-frame sequences do not fit in a 3 s clip.

Numbers depend on the machine and its load (the load average is printed); compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache"
sys.path.insert(0, str(REPO))


def default_dataset() -> Path:
    out = CACHE / "loader-grid"
    if not (out / "dataset.json").is_file():
        from talkdata.pipeline.build import build

        print(f"building the GRID samples into {out} (once)")
        build("grid", REPO / "tests" / "data" / "grid", out, progress=False)
    return out


def configurations(has_deepspeech: bool) -> list[tuple[str, dict]]:
    facial = {"profile": "facial"} if has_deepspeech else {"profile": "facial", "features": "mfcc", "window": 32}
    return [
        ("raw, all fields", {}),
        ("raw, no video", {"fields": ["audio.wav", "mfcc.npy", "pca.npy", "pose.npy"]}),
        ("atvg", {"profile": "atvg"}),
        ("atvg, no video (atnet)", {"profile": "atvg", "fields": ["pca.npy", "mfcc.npy"]}),
        ("sda", {"profile": "sda"}),
        ("diffused_heads", {"profile": "diffused_heads"}),
        ("facial" + ("" if has_deepspeech else " (mfcc, window 32)"), facial),
        ("vid2vid 256", {"profile": "vid2vid"}),
    ]


def items_per_clip(data: Path, kwargs: dict) -> float:
    import talkdata

    dataset = talkdata.load(data, split="all", shuffle=False, **kwargs)
    keys = [item["__key__"] for item in dataset]
    return len(keys) / max(1, len(set(keys)))


def measure(data: Path, kwargs: dict, workers: int, batch_size: int, seconds: float, warmup: int) -> float:
    """Items per second, steady state."""
    import talkdata
    from torch.utils.data import DataLoader

    dataset = talkdata.load(data, split="all", resampled=True, **kwargs)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += len(next(batches)["__key__"])
    elapsed = time.perf_counter() - start
    del batches, loader
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import torch

    from talkdata.loader.source import open_dataset

    data = args.data or default_dataset()
    manifest = open_dataset(data).manifest
    has_deepspeech = "deepspeech" in manifest.get("audio_features", [])
    print(f"dataset {data}: {sum(s['samples'] for s in manifest['splits'].values())} clips, "
          f"{len(manifest['shards'])} shards, crop {manifest['config']['crop']['size']} px, "
          f"{manifest['config']['video']['fps']:g} fps")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"batch size {args.batch_size}, {args.seconds:g} s per row\n")
    header = f"{'profile':30s} {'items/clip':>10s}" + "".join(
        f" {f'w={w} samples/s':>15s} {f'w={w} items/s':>13s}" for w in args.workers)
    print(header)
    print("-" * len(header))
    for name, kwargs in configurations(has_deepspeech):
        per_clip = items_per_clip(data, kwargs)
        row = f"{name:30s} {per_clip:10.1f}"
        for workers in args.workers:
            rate = measure(data, kwargs, workers, args.batch_size, args.seconds, args.warmup)
            row += f" {rate / per_clip:15.1f} {rate:13.1f}"
        print(row, flush=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: main process {own:.0f} MiB, largest worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
