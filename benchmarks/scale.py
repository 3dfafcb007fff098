"""Dataset-level stages at corpus scale: index, submit, fit, pack, manifest and card.

Synthesizes N clips' per-clip outputs (cache entries as the clip workers write them: every npy
field at T frames, a video of VIDEO bytes, a wav, VoxCeleb2-style metadata) without running the
face pipeline, and a synthetic VoxCeleb2 tree (folders, mp4 placeholders, per-clip face-track txt
files, vox2_meta.csv) for the index stage. For each N and each worker count it prints, per stage,
the wall time, the driver's peak RSS (growth over the stage) and the bytes on disk; then the growth
per clip, a projection for VoxCeleb2 dev (1,092,009 clips) on one 64-core node, and a last line
``GOAL ... met`` / ``not met`` covering:

- driver RSS growth under 1 KB per clip between the smallest and the largest N (the driver's peak
  RSS of the whole run: index, keys, submission, fit, pack, release, card), and its projection to
  VoxCeleb2 dev at most 4 GB;
- driver RSS at the largest N within 1.2x of the one before;
- fit peak RSS independent of N (within 1.2x + 50 MB);
- pack scaling efficiency >= 0.8 from 1 to 2 workers (t1 / (2 t2));
- projected dataset-level stages for VoxCeleb2 dev under 1 h on 64 cores;
- OUT at most 1.1x the shard bytes after the build.

    python benchmarks/scale.py [--sizes 1000,10000,30000] [--frames 200] [--video-kb 300] [--max-frames 20000]

Each (N, workers) runs in a fresh process, so peak RSS is that run's own, on a hard-linked copy of
the same synthesized cache entries, so every worker count does the same work (release included).
Driver memory alone: ``--sizes 2000,16000 --frames 10 --video-kb 1`` (the cheapest payload; the
per-clip growth does not depend on the payload sizes). The driver has bounded buffers that are not
full at such N (``index.parquet``'s row group: 65,536 rows; the frame sampler's slack: 65,536
frames), so part of the growth between two small N is those buffers filling up, which stops at a
corpus of about 65,536 clips. ``--small-buffers`` cuts them to 1,024 (the outputs are the same bytes),
so that they are full at the smallest N and the growth is what the driver keeps per clip.

Where the growth comes from: the table gives the peak RSS and the RSS held as each stage (and each
of the pack's own stages) ends; ``--trace DEPTH`` also runs tracemalloc in each run and prints, per
stage, the Python allocations whose live bytes grow per clip, by file:line. ``--root DIR
--keep-corpus`` keeps each N's synthesized corpus in DIR for the next invocation with the same
payload settings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOX_DEV_CLIPS = 1_092_009
CORES = 64
SINGLE_TASKS = 300  # one-item tasks timed to show what a dask task costs the driver
CLIP_SECONDS = 5.0  # assumed per-clip processing time, for the batch size the executor picks for real clips


def _status_mb(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in MB; None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Peak RSS of this process so far (MB): ``VmHWM`` of its own memory (``ru_maxrss`` keeps, across the exec
    of a run's process, the RSS its parent had when it forked, here the synthesis of the corpus)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- synthesis


def vox_tree(root: Path, n: int, frames: int) -> None:
    """A VoxCeleb2-layout tree of n clips: 100 clips per speaker, 10 per YouTube video."""
    (root / "txt").mkdir(parents=True)
    speakers = []
    for i in range(n):
        speaker, video, clip = f"id{i // 100:05d}", f"yt{i // 10:09d}", f"{i % 10 + 1:05d}"
        if not speakers or speakers[-1] != speaker:
            speakers.append(speaker)
        mp4 = root / "dev" / "mp4" / speaker / video / f"{clip}.mp4"
        mp4.parent.mkdir(parents=True, exist_ok=True)
        mp4.write_bytes(b"")
        txt = root / "txt" / speaker / video / f"{clip}.txt"
        txt.parent.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{1000 + t:06d} \t0.412 \t0.203 \t0.198 \t0.352 \n" for t in range(frames))
        txt.write_text(f"Identity  \t: {speaker} \nReference \t: {video} \nOffset  \t: 1 \nFV Conf   \t: 17.5\t(1)\n"
                       f"ASD Conf  \t: 6.1 \n\nFRAME \tX \tY \tW \tH \n{rows}")
    (root / "vox2_meta.csv").write_text("\ufeffVoxCeleb2 ID,VGGFace2 ID,Gender,Set\n"
                                        + "".join(f"{s} ,n{s[2:]} ,m ,dev \n" for s in speakers))


def synth_video(frames: int, size: int) -> bytes:
    """A real H.264 mp4 of ``frames`` frames, padded with an mp4 ``free`` box to ``size`` bytes."""
    import numpy as np

    from talkdata.media.encode import H264Writer

    writer = H264Writer(64, 64, 25, 30, "ultrafast")
    for t in range(frames):
        writer.write(np.full((64, 64, 3), (t * 3) % 255, dtype=np.uint8))
    data = writer.finish()
    pad = max(size - len(data), 8)
    return data + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8)


def synth_entries(records, keys, work: Path, frames: int, video_bytes: int, seed: int = 0) -> None:
    """Cache entries as the clip workers write them (all npy fields at ``frames`` frames)."""
    import numpy as np

    from talkdata.face.template import mean_face_2d
    from talkdata.media.encode import encode_wav
    from talkdata.pipeline.cache import ClipCache
    from talkdata.pipeline.clip import npy_bytes
    from talkdata.pipeline.outcome import Done

    cache = ClipCache(work)
    face = (mean_face_2d() * 120 + 112).astype(np.float32)
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    video = synth_video(frames, video_bytes)
    for n, (record, key) in enumerate(zip(records, keys)):
        rng = np.random.default_rng([seed, n])
        motion = np.sin(t / (5 + n % 7) + rng.uniform(0, 6, (1, 68, 2))).astype(np.float32) * 2
        lmk = face[None] * (1 + 0.05 * rng.standard_normal()) + motion + rng.normal(0, 0.3, (frames, 68, 2)).astype(np.float32)
        audio = (rng.standard_normal(frames * 640) * 1000).astype(np.int16)
        files = {
            "video.mp4": video,
            "audio.wav": encode_wav(audio, 16000),
            "lmk.npy": npy_bytes(lmk.astype(np.float32)),
            "lmk_src.npy": npy_bytes(lmk.astype(np.float32)),
            "affine.npy": npy_bytes(rng.standard_normal((frames, 2, 3)).astype(np.float32)),
            "bbox.npy": npy_bytes(rng.standard_normal((frames, 4)).astype(np.float32)),
            "pose.npy": npy_bytes(rng.standard_normal((frames, 3)).astype(np.float32)),
            "blink.npy": npy_bytes(rng.standard_normal(frames).astype(np.float32)),
            "mfcc.npy": npy_bytes(rng.standard_normal((frames, 4, 13)).astype(np.float32)),
        }
        meta = {
            "dataset": record.dataset, "key": record.key, "speaker": record.speaker, "clip": record.clip,
            "source": {"path": record.relpath, "sha256": hashlib.sha256(record.relpath.encode()).hexdigest(),
                       "bytes": video_bytes},
            "fps_in": 25.0, "fps": 25, "frames": frames, "duration": frames / 25, "source_frames": frames,
            "dropped_frames": 0, "source_size": [224, 224], "rotation": 0, "audio_rate": 16000,
            "audio_samples": frames * 640, "audio_padded_s": 0.0, "crop_size": 224,
            "face": {"frames_found": frames, "frames_interpolated": 0, "detector_runs": 1, "hint_seeds": 1},
            "backends": {"detector": "dlib-hog", "landmarks": "dlib", "audio_features": ["mfcc"]},
            **record.meta,
        }
        cache.store(key, Done(record.key, record.relpath), files, meta)


def _noop(config: dict, item) -> int:
    return len(item[1])


# --------------------------------------------------------------------------- one run


def synth_cache(root: Path, frames: int, video_kb: int, max_frames: int) -> None:
    """The cache entries of the tree's clips in ``root/pristine`` (made once per N; each run links a copy)."""
    from talkdata.config import pinned, resolve
    from talkdata.pipeline.build import index_clips
    from talkdata.pipeline.cache import KeyList, cache_key
    from talkdata.recipe import load_recipe

    recipe = load_recipe("voxceleb2")
    config = resolve(recipe.defaults, recipe.name, {"shape.max_frames": max_frames})
    records = index_clips(recipe, root / "tree", config)
    synth_entries(records, KeyList(cache_key(r, pinned(config).config) for r in records), root / "pristine",
                  frames, video_kb * 1000)


def fresh_out(root: Path) -> None:
    """``root/out`` holding only a hard-linked copy of the pristine cache entries: every run does the same work
    (release included: it replaces a file by a new one, never writes into a linked one)."""
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    (out / ".work").mkdir(parents=True)
    subprocess.run(["cp", "-al", str(root / "pristine" / "clips"), str(out / ".work" / "clips")], check=True)


def current_rss_mb() -> float:
    """RSS of this process now (MB): ``VmRSS``."""
    return _status_mb("VmRSS") or 0.0


class Tracer:
    """``--trace``: after each stage (and each of ``pack``'s own stages), the RSS, tracemalloc's current and peak
    bytes within the stage, and the live Python allocations by file:line (those over ``MIN_BYTES``)."""

    MIN_BYTES = 16 * 1024

    def __init__(self, depth: int):
        import tracemalloc

        self.tracemalloc = tracemalloc
        self.points: list[dict] = []
        tracemalloc.start(depth)

    def mark(self, name: str) -> None:
        current, peak = self.tracemalloc.get_traced_memory()
        lines = {}
        for stat in self.tracemalloc.take_snapshot().statistics("lineno"):
            if stat.size >= self.MIN_BYTES:
                frame = stat.traceback[0]
                lines[f"{Path(frame.filename).name}:{frame.lineno}"] = stat.size
        self.points.append({"stage": name, "rss_mb": current_rss_mb(), "hwm_mb": rss_mb(), "traced": current,
                            "traced_peak": peak, "lines": lines})
        self.tracemalloc.reset_peak()


def trace_report(results: list[dict], sizes: list[int], workers: int, top: int = 12) -> None:
    """Per stage: RSS, traced bytes and their peak, and the file:lines whose live bytes grow most per clip,
    between the smallest and the largest N."""
    by = {(r["n"], r["workers"]): r for r in results}
    small, big = sizes[0], sizes[-1]
    a, b = by[(small, workers)]["trace"], by[(big, workers)]["trace"]
    per = (big - small)
    print(f"\ntrace (workers={workers}, N={small} -> {big}; bytes per clip):")
    for pa_, pb in zip(a, b):
        grow = {line: (pb["lines"].get(line, 0) - pa_["lines"].get(line, 0)) / per
                for line in set(pa_["lines"]) | set(pb["lines"])}
        print(f"  after {pb['stage']:14s} rss {(pb['rss_mb'] - pa_['rss_mb']) * 2**20 / per:+6.0f}  "
              f"hwm {(pb['hwm_mb'] - pa_['hwm_mb']) * 2**20 / per:+6.0f}  "
              f"traced {(pb['traced'] - pa_['traced']) / per:+6.0f}  "
              f"traced peak in stage {(pb['traced_peak'] - pa_['traced_peak']) / per:+6.0f}")
        for line, g in sorted(grow.items(), key=lambda kv: -abs(kv[1]))[:top]:
            if abs(g) >= 2:
                print(f"      {g:+7.1f}  {line}")


def run_one(n: int, workers: int, frames: int, video_kb: int, root: Path, keep_cache: bool, max_frames: int,
            trace: int = 0) -> dict:
    """Index, submit, fit, pack, manifest and card for n synthetic clips with ``workers`` (in this process)."""
    from talkdata.config import pinned, resolve
    from talkdata.pipeline import build as build_module
    from talkdata.pipeline.build import index_clips, pack
    from talkdata.pipeline.cache import ClipCache, KeyList, cache_key
    from talkdata.pipeline.executor import Executor
    from talkdata.recipe import load_recipe

    stages = {}
    recipe = load_recipe("voxceleb2")
    config = resolve(recipe.defaults, recipe.name, {"shape.max_frames": max_frames})
    tree, out = root / "tree", root / "out"
    tracer = Tracer(trace) if trace else None
    if tracer:
        tracer.mark("start")
    timed, inner = build_module._timed, {}

    @contextlib.contextmanager
    def measured(timings, name):  # pack's own stages: the driver's peak RSS as each ends
        before = rss_mb()
        with timed(timings, name):
            yield
        inner[name] = {"peak_rss_mb": rss_mb(), "growth_mb": rss_mb() - before, "rss_now_mb": current_rss_mb()}
        if tracer:
            tracer.mark(name)
    build_module._timed = measured

    def stage(name, fn):
        before = rss_mb()
        start = time.perf_counter()
        result = fn()
        stages[name] = {"seconds": time.perf_counter() - start, "peak_rss_mb": rss_mb(), "growth_mb": rss_mb() - before,
                        "rss_now_mb": current_rss_mb()}
        if tracer:
            tracer.mark(name)
        return result

    records = stage("index", lambda: index_clips(recipe, tree, config))
    keys = stage("keys", lambda: KeyList(cache_key(r, pinned(config).config) for r in records))
    work = out / ".work"
    cache = ClipCache(work)
    with Executor(workers, None) as executor:
        if not executor.local:
            stage("cluster start", executor._connect)

        def submit():
            items = ((r.to_dict(), k) for r, k in zip(records, keys))
            return sum(executor.map(_noop, items, shared=(config,), total=len(records)))
        stage("submit", submit)
        if not executor.local:  # what one dask task costs the driver (batches of one item)
            from talkdata.pipeline.executor import BatchSizer

            single = min(len(records), SINGLE_TASKS)
            BatchSizer.MAX_BATCH, batch = 1, BatchSizer.MAX_BATCH
            try:
                stage("one-item tasks", lambda: sum(executor.map(_noop, ((records[i].to_dict(), keys[i])
                                                                          for i in range(single)),
                                                                 shared=(config,), total=single)))
            finally:
                BatchSizer.MAX_BATCH = batch
            stages["one-item tasks"]["tasks"] = single
        timings: dict = {}
        stage("dataset-level", lambda: pack(out, recipe, config, records, keys, cache, None, executor, keep_cache,
                                             timings))
    driver_peak = rss_mb()  # before this benchmark's own listing of OUT below
    for name, seconds in timings.items():
        stages[name] = {"seconds": seconds, **inner.get(name, {})}
    shards = du(out / "shards")
    total = du(out)
    return {"n": n, "workers": workers, "stages": stages, "shard_bytes": shards, "out_bytes": total,
            "work_bytes": du(out / ".work"), "peak_rss_mb": driver_peak, "trace": tracer.points if tracer else None}


# --------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--video-kb", type=int, default=300)
    parser.add_argument("--max-frames", type=int, default=20000,
                        help="shape.max_frames (default 20000: below N x frames for every N, so the fit works at its "
                             "cap as on a real corpus; the build's default is 100000)")
    parser.add_argument("--small-buffers", action="store_true",
                        help="the driver's bounded buffers (parquet row group, frame sampler slack) cut to 1,024 "
                             "rows/frames, full at the smallest N: the growth per clip without their filling up")
    parser.add_argument("--trace", type=int, default=0, metavar="DEPTH",
                        help="trace the driver's Python allocations (tracemalloc, DEPTH frames) after every stage and "
                             "print what grows per clip by file:line (slower; RSS then includes the tracing)")
    parser.add_argument("--root", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--keep-corpus", action="store_true",
                        help="with --root: keep each N's synthesized corpus there and reuse it when it was made with "
                             "the same --frames, --video-kb and --max-frames (the runs themselves start afresh)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one (n, workers) here
    args = parser.parse_args()
    if args.one:
        if args.small_buffers:
            from talkdata.pipeline import pack, shape_fit

            pack.ROW_GROUP, pack.ROWS_AS_DICTS, shape_fit.SLACK_FRAMES = 1024, 256, 1024
        n, workers, keep = (int(x) for x in args.one.split(","))
        print(json.dumps(run_one(n, workers, args.frames, args.video_kb, Path(args.root), bool(keep),
                                 args.max_frames, args.trace)))
        return

    sizes = [int(x) for x in args.sizes.split(",")]
    worker_counts = [int(x) for x in args.workers.split(",")]
    scratch = Path(args.root or tempfile.mkdtemp(prefix="talkdata-scale-"))
    results = []
    try:
        for n in sizes:
            root = scratch / f"n{n}"
            made = f"{n} {args.frames} {args.video_kb} {args.max_frames}\n"
            if not (args.keep_corpus and (root / "corpus").is_file() and (root / "corpus").read_text() == made):
                shutil.rmtree(root, ignore_errors=True)
                vox_tree(root / "tree", n, args.frames)
                synth_cache(root, args.frames, args.video_kb, args.max_frames)
                (root / "corpus").write_text(made)
            for workers in worker_counts:
                keep = 0  # every run releases the cache (stored once), so the runs do the same work
                fresh_out(root)
                proc = subprocess.run([sys.executable, __file__, "--one", f"{n},{workers},{keep}", "--root", str(root),
                                       "--frames", str(args.frames), "--video-kb", str(args.video_kb),
                                       "--max-frames", str(args.max_frames),
                                       *(["--small-buffers"] if args.small_buffers else []),
                                       *(["--trace", str(args.trace)] if args.trace else [])],
                                      capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
                if proc.returncode:
                    sys.exit(f"run n={n} workers={workers} failed:\n{proc.stderr[-3000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(result)
                line = "  ".join(f"{name} {s['seconds']:.2f}s" + (f" rss {s['peak_rss_mb']:.0f}MB(+{s['growth_mb']:.0f})"
                                                                  if "peak_rss_mb" in s else "")
                                 for name, s in result["stages"].items())
                print(f"N={n:>7} workers={workers}: {line}  shards {result['shard_bytes'] / 1e6:.1f}MB "
                      f"OUT {result['out_bytes'] / 1e6:.1f}MB .work {result['work_bytes'] / 1e6:.1f}MB", flush=True)
            if not args.keep_corpus:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.root:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.trace:
        for workers in worker_counts:
            trace_report(results, sizes, workers)
    report(results, sizes, worker_counts, args.small_buffers)


def _slope(by: dict, sizes: list[int], workers: int, stage: str) -> tuple[float, float]:
    """(seconds per clip, constant seconds) of a stage from the two largest sizes."""
    a, b = sizes[-2], sizes[-1]
    ta, tb = (by[(n, workers)]["stages"].get(stage, {}).get("seconds", 0.0) for n in (a, b))
    per_clip = max(tb - ta, 0.0) / (b - a)
    return per_clip, max(tb - per_clip * b, 0.0)


def report(results: list[dict], sizes: list[int], worker_counts: list[int], small_buffers: bool = False) -> None:
    by = {(r["n"], r["workers"]): r for r in results}
    w1, w2 = worker_counts[0], worker_counts[-1]
    big, prev = sizes[-1], sizes[-2]
    print(f"\nper-clip growth (driver peak RSS, workers={w2}):")
    for a, b in zip(sizes, sizes[1:]):
        grow = (by[(b, w2)]["peak_rss_mb"] - by[(a, w2)]["peak_rss_mb"]) * 1e6 / (b - a)
        print(f"  {a} -> {b} clips: {grow:.0f} bytes of driver RSS per clip")
    small = sizes[0]
    growth = {}  # bytes of driver peak RSS per clip between the smallest and the largest N, per worker count
    print(f"\ndriver peak RSS per stage (MB; growth {small} -> {big} clips in bytes per clip):")
    for workers in worker_counts:
        a, b = by[(small, workers)], by[(big, workers)]
        growth[workers] = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 2**20 / (big - small)
        cells = []
        for name, stage in b["stages"].items():
            if "peak_rss_mb" in stage and "peak_rss_mb" in a["stages"].get(name, {}):
                per_clip = (stage["peak_rss_mb"] - a["stages"][name]["peak_rss_mb"]) * 2**20 / (big - small)
                cells.append(f"{name} {a['stages'][name]['peak_rss_mb']:.0f}->{stage['peak_rss_mb']:.0f} ({per_clip:+.0f} B)")
        print(f"  workers={workers}: " + ", ".join(cells)
              + f"; whole run {a['peak_rss_mb']:.0f}->{b['peak_rss_mb']:.0f} MB: {growth[workers]:.0f} B/clip")
        now = [f"{name} {(stage['rss_now_mb'] - a['stages'][name]['rss_now_mb']) * 2**20 / (big - small):+.0f} B"
               for name, stage in b["stages"].items() if "rss_now_mb" in stage and "rss_now_mb" in a["stages"].get(name, {})]
        print(f"    RSS held as each stage ends (growth per clip): " + ", ".join(now))
    worst = max(growth, key=growth.get)
    per_clip_rss = max(growth[worst], 0.0)
    projected_rss = (by[(big, worst)]["peak_rss_mb"] * 2**20 + per_clip_rss * (VOX_DEV_CLIPS - big)) / 2**30
    print(f"driver RSS growth {per_clip_rss:.0f} B/clip (workers={worst}); projected driver peak for VoxCeleb2 dev "
          f"({VOX_DEV_CLIPS} clips): {projected_rss:.2f} GB")
    rss_ratio = by[(big, w2)]["peak_rss_mb"] / by[(prev, w2)]["peak_rss_mb"]
    fit_growth = [by[(n, w2)]["stages"]["dataset-level"]["growth_mb"] for n in sizes]
    # per clip, from the two largest sizes (constant costs such as the card and cluster start drop out)
    p1, _ = _slope(by, sizes, w1, "pack")
    p2, _ = _slope(by, sizes, w2, "pack")
    efficiency = p1 / (p2 * w2 / w1) if p2 > 0 and w2 != w1 else float("nan")
    projected = 0.0
    print(f"\nper clip (slope between N={prev} and N={big}); projection for VoxCeleb2 dev ({VOX_DEV_CLIPS} clips) "
          f"on {CORES} cores (Amdahl: serial + parallel / {CORES}):")
    for stage in ("index", "submit", "measure", "fit", "plan", "pack", "release", "card"):
        s1, c1 = _slope(by, sizes, w1, stage)
        s2, c2 = _slope(by, sizes, w2, stage)
        parallel = max((s1 - s2) / (1 / w1 - 1 / w2), 0.0) if w2 != w1 else 0.0
        serial = max(s1 - parallel / w1, 0.0)
        hours = (max(c1, c2) + VOX_DEV_CLIPS * (serial + parallel / CORES)) / 3600
        if stage != "index":  # the index is another stage's work (corpora); shown, not counted
            projected += hours
        print(f"  {stage:8s} {s1 * 1e6:9.1f} us/clip ({w1} w) {s2 * 1e6:9.1f} us/clip ({w2} w)  -> {hours:6.3f} h")
    single = by[(big, w2)]["stages"].get("one-item tasks")
    if single:
        from talkdata.pipeline.executor import BatchSizer

        per_task = single["seconds"] / single["tasks"]
        sizer = BatchSizer(CORES, VOX_DEV_CLIPS)
        sizer.observe(1, CLIP_SECONDS)
        batch = sizer.size(0)
        tasks = -(-VOX_DEV_CLIPS // batch)
        print(f"one dask task costs the driver {per_task * 1e3:.1f} ms ({w2} workers, one-item tasks); real clips of "
              f"~{CLIP_SECONDS:g} s go {batch} per task on {CORES} cores: {tasks} tasks, {tasks * per_task / 3600:.2f} h of "
              f"driver time, overlapped with {VOX_DEV_CLIPS * CLIP_SECONDS / CORES / 3600:.1f} h of clip work "
              f"(the driver needs {CORES / (batch * CLIP_SECONDS):.1f} tasks/s, sustains {1 / per_task:.0f})")
    out_ratio = by[(big, w2)]["out_bytes"] / max(by[(big, w2)]["shard_bytes"], 1)
    print(f"pack efficiency {w1}->{w2} workers (per-clip slopes): {efficiency:.2f}")
    print(f"projected dataset-level stages (submit, measure, fit, plan, pack, release, card): {projected:.2f} h")
    print(f"OUT / shards after the build: {out_ratio:.3f}")
    goals = [
        (f"driver RSS growth < 1 KB/clip ({per_clip_rss:.0f} B/clip, N={small} -> {big}"
         f"{', bounded buffers full (--small-buffers)' if small_buffers else ''}; projected "
         f"{projected_rss:.2f} GB at {VOX_DEV_CLIPS / 1e6:.2f} M clips <= 4 GB)", per_clip_rss < 1024 and projected_rss <= 4),
        (f"driver RSS N={big} vs N={prev} {rss_ratio:.2f}x <= 1.2x", rss_ratio <= 1.2),
        (f"dataset-level RSS growth {'/'.join(f'{p:.0f}' for p in fit_growth)} MB independent of N",
         max(fit_growth) <= 1.2 * min(fit_growth) + 50),
        (f"pack efficiency {efficiency:.2f} >= 0.8", efficiency >= 0.8),
        (f"projected {projected:.2f} h < 1 h", projected < 1),
        (f"OUT {out_ratio:.3f}x shards <= 1.1x", out_ratio <= 1.1),
    ]
    print("GOAL " + "; ".join(f"{text}: {'met' if ok else 'not met'}" for text, ok in goals)
          + f" -> {'met' if all(ok for _, ok in goals) else 'not met'}")


if __name__ == "__main__":
    main()
