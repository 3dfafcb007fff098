"""Peak memory of one worker processing a long 1280 x 720 clip: it must not grow with the clip's length.

Usage::

    python benchmarks/memory.py [--minutes 10]

A synthetic 1280 x 720, 25 fps clip with a real face is made from the GRID sample
``tests/data/grid/s1/bbaf2n.mpg``: its 75 frames are upscaled to 720 pixels high, placed in the
middle of a 1280 x 720 canvas and looped to the requested length, with the GRID audio looped too
(H.264 ``ultrafast`` + AAC 16 kHz mono, mp4). Clips are generated in a temporary folder and cached
in ``benchmarks/.cache/`` (ignored by git), so later runs reuse them.

``process_clip`` then runs on the 1-minute clip and on the ``--minutes`` clip, each in a fresh
subprocess (one worker) that prints its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, KiB on
Linux) after loading the models and after processing, and the wall time. The issue's requirement:
a 10-minute 720p clip in < 2 GB RSS per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID_CLIP = REPO / "tests" / "data" / "grid" / "s1" / "bbaf2n.mpg"
CACHE = Path(__file__).resolve().parent / ".cache"
WIDTH, HEIGHT, FPS, RATE = 1280, 720, 25, 16000
LIMIT_KB = 2 * 1024 * 1024  # 2 GiB


def clip_path(minutes: float) -> Path:
    return CACHE / f"grid_720p_{minutes:g}min.mp4"


def generate(minutes: float) -> Path:
    """The cached synthetic clip of ``minutes`` minutes (made now when missing)."""
    import av
    import cv2
    import numpy as np

    from talkdata.media.decode import VideoStats, align_audio, decode_audio, iter_frames

    final = clip_path(minutes)
    if final.is_file():
        return final
    started = time.perf_counter()
    stats = VideoStats()
    frames = list(iter_frames(GRID_CLIP, float(FPS), "rgb24", stats))
    track = decode_audio(GRID_CLIP, RATE)
    loop_audio, _ = align_audio(track, stats.start_time, len(frames), float(FPS))  # exactly len/FPS seconds

    # the looped frames, prepared once as yuv420p planes
    planes = []
    for rgb in frames:
        h, w = rgb.shape[:2]
        new_w = int(round(w * HEIGHT / h)) // 2 * 2
        face = cv2.resize(rgb, (min(new_w, WIDTH), HEIGHT), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((HEIGHT, WIDTH, 3), 96, dtype=np.uint8)
        x0 = (WIDTH - face.shape[1]) // 2
        canvas[:, x0 : x0 + face.shape[1]] = face
        planes.append(av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p").to_ndarray())

    n_frames = int(round(minutes * 60 * FPS))
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        temp = Path(tmp) / final.name
        with av.open(str(temp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "23"})
            video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            audio = container.add_stream("aac", rate=RATE)
            audio.layout = "mono"
            samples_per_frame = RATE // FPS
            audio_pts = 0
            for t in range(n_frames):
                frame = av.VideoFrame.from_ndarray(planes[t % len(planes)], format="yuv420p")
                frame.pts = t
                for packet in video.encode(frame):
                    container.mux(packet)
                i = t % len(planes)  # audio of the same 40 ms, interleaved with the video
                chunk = loop_audio[i * samples_per_frame : (i + 1) * samples_per_frame]
                aframe = av.AudioFrame.from_ndarray(chunk.reshape(1, -1).astype(np.float32), format="fltp", layout="mono")
                aframe.sample_rate = RATE
                aframe.pts = audio_pts
                audio_pts += len(chunk)
                for packet in audio.encode(aframe):
                    container.mux(packet)
            for stream in (video, audio):
                for packet in stream.encode(None):
                    container.mux(packet)
        staging = final.with_name(final.name + f".tmp-{os.getpid()}")
        shutil.move(str(temp), staging)
        os.replace(staging, final)
    print(f"  generated {final.relative_to(REPO)}: {n_frames} frames, {final.stat().st_size / 2**20:.1f} MiB "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    return final


def child(path: str) -> None:
    """Runs in the subprocess: load models, process the clip, print one JSON line."""
    started = time.perf_counter()
    from talkdata.config import BuildConfig
    from talkdata.face.detect import _dlib_detector
    from talkdata.face.landmarks import landmark_backend
    from talkdata.pipeline.clip import process_clip
    from talkdata.corpora.records import ClipRecord

    config = BuildConfig()
    _dlib_detector()
    landmark_backend(config.face.backend)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record = ClipRecord(dataset="videos", speaker="synthetic", clip=Path(path).stem, path=path,
                        relpath=Path(path).name)
    t0 = time.perf_counter()
    output = process_clip(record, config)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "frames": output.meta["frames"],
        "source_size": output.meta["source_size"],
        "face": output.meta["face"],
        "baseline_maxrss_kb": baseline,
        "peak_maxrss_kb": peak,
        "process_seconds": round(seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "timings": {k: round(v, 3) for k, v in output.timings.items()},
        "output_bytes": {k: len(v) for k, v in output.files.items()},
    }), flush=True)


def run_child(path: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(path)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["subprocess_wall_seconds"] = round(wall, 3)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long clip (default 10)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    lengths = [1.0] if args.minutes == 1.0 else [1.0, args.minutes]
    rows = []
    for minutes in lengths:
        path = generate(minutes)
        result = run_child(path)
        rows.append((minutes, result))
        print(f"  {minutes:g} min: {json.dumps(result)}", flush=True)

    print()
    print("clip                 frames  RSS after model load  peak RSS   process_clip  fps    subprocess wall")
    for minutes, r in rows:
        w, h = r["source_size"]
        print(f"{minutes:>5g} min {w}x{h}  {r['frames']:>7}  {r['baseline_maxrss_kb'] / 1024:>14.0f} MiB  "
              f"{r['peak_maxrss_kb'] / 1024:>6.0f} MiB  {r['process_seconds']:>10.1f} s  "
              f"{r['frames'] / r['process_seconds']:>5.1f}  {r['subprocess_wall_seconds']:>10.1f} s")
    longest = rows[-1][1]
    ok = all(r["peak_maxrss_kb"] < LIMIT_KB for _, r in rows)
    if len(rows) > 1:
        growth = (rows[-1][1]["peak_maxrss_kb"] - rows[0][1]["peak_maxrss_kb"]) / 1024
        print(f"peak RSS growth from {rows[0][0]:g} to {rows[-1][0]:g} min: {growth:+.0f} MiB")
    print(f"GOAL peak RSS < 2 GiB per worker for a {rows[-1][0]:g}-minute 720p clip: "
          f"{longest['peak_maxrss_kb'] / 1024:.0f} MiB -> {'met' if ok else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
