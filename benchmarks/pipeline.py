"""Throughput of one talkdata worker, per stage and end to end, next to the naive per-frame pipeline.

Usage::

    python benchmarks/pipeline.py [--clips DIR ...] [--repeat N] [--hd 720p 1080p 4k] [--hd-frames N]

``DIR`` is a corpus folder; its kind is guessed (``VideoFlash/`` -> CREMA-D, ``*.mpg`` / ``*.align``
-> GRID, anything else -> a folder of videos) or given as ``grid=DIR``, ``crema_d=DIR``,
``videos=DIR``. Default: the sample clips in ``tests/data``, plus (``--hd``) the VoxCeleb2-style
sample 00473 placed on plain 1280x720, 1920x1080 and 3840x2160 canvases with a face of about 110 px
(made at start-up from ``tests/face_placements``; the naive pipeline is not run on them: its HOG
with one upsampling step takes minutes per 4K frame). The last line is ``GOAL ... met`` when every
goal holds: >= 250 frames/s end to end on GRID, CREMA-D and the VoxCeleb2-style clips, >= 120 on
the 720p clip, >= 10x the naive pipeline on GRID. ``benchmarks/detectors.py`` gives the detector
table (recall, box error, ms per call of each ``face.detector``).

Everything runs in this process, one clip at a time (one worker). Models are loaded by a warm-up
run before any timing. Every number is a frame rate: output frames (25 fps, ``meta['frames']``)
divided by the seconds spent on all clips of a dataset in one repetition; the tables give the median
over the repetitions (shared machines have disturbed repetitions; each one is also printed). Within
a repetition the clips are run one after the other through talkdata, the naive pipeline and the
building blocks, so that a disturbance hits all of them alike.

What is measured, on the same clips:

- ``talkdata``: ``process_clip`` wall time, with its own per-stage timings (``audio``, ``track``,
  ``align``, ``encode``, ``features``), plus writing the outputs into WebDataset shards with
  ``ShardWriter``. *End to end* = ``process_clip`` + shard writing.
- building blocks, timed directly because ``track`` mixes decoding, detection and landmarks:
  decoding only (``iter_frames`` consumed), detection only (the configured ``FaceDetector`` on every
  ``face.detect_every``-th frame, as the tracker does), landmarks only (the dlib backend's
  ``predict``, which evaluates dlib's model with :mod:`talkdata.face.ert`, on every frame with a
  fixed box).
- ``naive``: the pipeline as published demo / preprocessing scripts write it (ATVGnet's
  ``demo.py``, and the many scripts derived from it): every frame is decoded, dlib's HOG detector
  runs with one upsampling step on every frame, the first face is taken, dlib's own 68-point
  ``shape_predictor`` runs on every frame, each frame gets its own similarity transform (no smoothing) and
  ``cv2.warpAffine`` to 256 x 256, each crop is written as a JPEG with ``cv2.imwrite`` into a
  temporary folder, and MFCCs come from ``python_speech_features.mfcc`` on the whole audio track.
  It uses talkdata only to decode frames and for the template / similarity helpers.

The machine's CPU count matters: PyAV decodes with threads and OpenCV uses its own pool, so a
"worker" may use more than one core. The ``cpu/wall`` column says how many cores it did use.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import dlib
import numpy as np
import python_speech_features

from talkdata.config import BuildConfig
from talkdata.errors import ClipError
from talkdata.face.align import similarity_transform
from talkdata.face.detect import make_detector
from talkdata.face.landmarks import landmark_backend
from talkdata.face.template import crop_template
from talkdata.media.decode import iter_frames
from talkdata.pipeline.clip import process_clip
from talkdata.shards import ShardWriter
from talkdata.corpora import crema_d, grid, videos

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DEFAULT_CLIPS = [f"grid={DATA / 'grid'}", f"crema_d={DATA / 'crema_d'}", f"videos={DATA / 'voxceleb2_like'}"]
INDEXERS = {"grid": grid.index, "crema_d": crema_d.index, "videos": videos.index}
LABELS = {"grid": "GRID", "crema_d": "CREMA-D", "videos": "videos"}
PIPELINE_STAGES = ("audio", "track", "align", "encode", "features")
NAIVE_STAGES = ("audio", "decode", "detect", "landmarks", "warp+jpeg", "mfcc")


# --------------------------------------------------------------------------------------------
# the naive pipeline (self-contained: what published scripts do)
# --------------------------------------------------------------------------------------------

def _dlib_model_file() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    return str(Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat")


class NaivePipeline:
    """Per frame: detect (upsample 1) -> first face -> 68 points -> similarity warp -> JPEG."""

    def __init__(self, size: int = 256, stable_points=(33, 36, 39, 42, 45)):
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(_dlib_model_file())
        self.size = size
        self.stable = list(stable_points)
        self.template = crop_template(size, 0.6, 0.55)[self.stable]

    @staticmethod
    def load_audio(path: str, rate: int = 16000) -> np.ndarray:
        # published scripts call ffmpeg to extract a wav, then librosa.load(wav, sr=16000)
        with av.open(path) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def run(self, path: str, out_dir: str, seconds: dict[str, float]) -> int:
        """Process one clip; adds seconds per stage into ``seconds``; returns the frames decoded."""
        clock = time.perf_counter
        t0 = clock()
        speech = self.load_audio(path)
        t1 = clock()
        seconds["audio"] += t1 - t0
        frames = iter_frames(path, 25.0, "bgr24")  # cv2-style BGR frames at 25 fps
        index = 0
        while True:
            t0 = clock()
            image = next(frames, None)
            t1 = clock()
            seconds["decode"] += t1 - t0
            if image is None:
                break
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            rects = self.detector(gray, 1)
            t2 = clock()
            seconds["detect"] += t2 - t1
            if len(rects) == 0:
                index += 1
                continue  # as the scripts do: frames without a face are skipped
            shape = self.predictor(gray, rects[0])
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
            t3 = clock()
            seconds["landmarks"] += t3 - t2
            matrix = similarity_transform(points[self.stable], self.template)
            crop = cv2.warpAffine(image, matrix, (self.size, self.size))
            cv2.imwrite(os.path.join(out_dir, f"{index:05d}.jpg"), crop)
            seconds["warp+jpeg"] += clock() - t3
            index += 1
        t0 = clock()
        # ATVGnet demo.py: pad 1920 samples on both sides, mfcc(speech, 16000, winstep=0.01)
        speech = np.concatenate([np.zeros(1920, np.float32), speech, np.zeros(1920, np.float32)])
        python_speech_features.mfcc(speech, 16000, winstep=0.01)
        seconds["mfcc"] += clock() - t0
        return index


# --------------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------------

@dataclass
class Rep:
    """Seconds and frames of one repetition over all clips of one dataset."""

    frames: int = 0  # output frames, summed over the clips
    process_wall: float = 0.0
    process_cpu: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in PIPELINE_STAGES})
    write: float = 0.0
    blocks: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "detect": 0.0, "landmarks": 0.0})
    detect_calls: int = 0
    naive_wall: float = 0.0
    naive_cpu: float = 0.0
    naive_frames: int = 0
    naive_stages: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in NAIVE_STAGES})

    @property
    def e2e(self) -> float:
        return self.process_wall + self.write


@dataclass
class Result:
    label: str
    clips: int = 0
    rejected: list[str] = field(default_factory=list)
    reps: list[Rep] = field(default_factory=list)

    def median(self, value) -> float:
        """Median over the repetitions of ``value(rep)`` (robust to a disturbed repetition)."""
        return float(np.median([value(rep) for rep in self.reps]))


def parse_clip_arg(text: str) -> tuple[str, Path]:
    kind, sep, rest = text.partition("=")
    if sep and kind in INDEXERS:
        return kind, Path(rest)
    root = Path(text)
    if (root / "VideoFlash").is_dir():
        return "crema_d", root
    if next(root.rglob("*.align"), None) is not None or next(root.rglob("*.mpg"), None) is not None:
        return "grid", root
    return "videos", root


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(kind: str, root: Path, repeat: int, naive: NaivePipeline | None, config: BuildConfig) -> Result:
    records = [r for r in INDEXERS[kind](root, config) if not r.skip]
    label = LABELS[kind] if kind != "videos" else f"{root.name}"
    result = Result(label=label)
    face = config.face

    # warm-up (model loading, decoder and encoder start-up), and drop clips the pipeline rejects
    usable = []
    for record in records:
        try:
            process_clip(record, config)
            usable.append(record)
        except ClipError as err:
            result.rejected.append(f"{record.key}: {err.reason}")
    with tempfile.TemporaryDirectory() as tmp:
        if usable and naive is not None:
            naive.run(usable[0].path, tmp, {s: 0.0 for s in NAIVE_STAGES})
    result.clips = len(usable)

    detector = make_detector(face)
    predictor = landmark_backend("dlib")
    clock = time.perf_counter
    for _ in range(repeat):
        rep = Rep()
        outputs = []
        # clip by clip, talkdata then naive then the building blocks, so that a disturbance of the
        # machine hits all of them alike
        for record in usable:
            c0, t0 = cpu_seconds(), clock()
            output = process_clip(record, config)
            rep.process_wall += clock() - t0
            rep.process_cpu += cpu_seconds() - c0
            for stage, seconds in output.timings.items():
                rep.stages[stage] = rep.stages.get(stage, 0.0) + seconds
            rep.frames += output.meta["frames"]
            outputs.append((record.key, output.files))

            if naive is not None:  # not on HD clips: HOG with one upsampling step takes minutes per 4K frame
                with tempfile.TemporaryDirectory() as tmp:
                    c0, t0 = cpu_seconds(), clock()
                    rep.naive_frames += naive.run(record.path, tmp, rep.naive_stages)
                    rep.naive_wall += clock() - t0
                    rep.naive_cpu += cpu_seconds() - c0

            t0 = clock()
            frames = [f for f in iter_frames(record.path, config.video.fps)]
            rep.blocks["decode"] += clock() - t0
            grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
            images = [detector.pick(g, f) for g, f in zip(grays[:: face.detect_every], frames[:: face.detect_every])]
            del frames
            box = None
            t0 = clock()
            for image in images:
                # as the tracker: the whole frame until a face is found, then a window around it
                found = detector.detect(image) if box is None else detector.detect_near(image, box)
                rep.detect_calls += 1
                if box is None and found:
                    box = found[0].box
            rep.blocks["detect"] += clock() - t0
            del images
            if box is None:  # no detection on key frames: a box in the frame centre
                h, w = grays[0].shape
                box = np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75])
            t0 = clock()
            for gray in grays:
                predictor.predict(gray, None, box)
            rep.blocks["landmarks"] += clock() - t0

        # shard writing of this repetition's outputs
        with tempfile.TemporaryDirectory() as tmp:
            t0 = clock()
            writer = ShardWriter(Path(tmp), "bench", "train", config.shards.max_samples, config.shards.max_bytes)
            for key, files in outputs:
                writer.write(key, files)
            writer.close()
            rep.write += clock() - t0
        del outputs
        result.reps.append(rep)
    return result


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def report(results: list[Result], load_at_start: float) -> None:
    repeat = max(len(r.reps) for r in results)
    print()
    print(f"End to end, one worker: output frames per second, median of {repeat} repetitions "
          "(talkdata e2e = process_clip + shard writing; cpu ms/frame = process_clip's CPU time per output "
          "frame, less disturbed by other load than wall time; cpu/wall = cores used)")
    rows = []
    for r in results:
        frames = r.reps[0].frames
        e2e = r.median(lambda p: rate(p.frames, p.e2e))
        naive_fps = r.median(lambda p: rate(p.naive_frames, p.naive_wall))
        speedup = r.median(lambda p: rate(p.frames, p.e2e) / rate(p.naive_frames, p.naive_wall))
        rows.append([r.label, str(r.clips), str(frames), f"{e2e:.1f}",
                     f"{r.median(lambda p: rate(p.frames, p.process_wall)):.1f}",
                     f"{r.median(lambda p: 1000 * p.process_cpu / p.frames):.2f}",
                     f"{r.median(lambda p: p.process_cpu / p.process_wall):.2f}",
                     f"{naive_fps:.1f}", f"{r.median(lambda p: p.naive_cpu / p.naive_wall if p.naive_wall else float('nan')):.2f}",
                     f"{speedup:.2f}x"])
    print(table(["dataset", "clips", "frames", "talkdata e2e fps", "process_clip fps", "cpu ms/frame", "cpu/wall",
                 "naive fps", "cpu/wall", "speedup"], rows))
    for r in results:
        print(f"  {r.label} per repetition: talkdata e2e "
              + ", ".join(f"{rate(p.frames, p.e2e):.1f}" for p in r.reps) + " fps; naive "
              + ", ".join(f"{rate(p.naive_frames, p.naive_wall):.1f}" for p in r.reps) + " fps")

    print()
    print("Per stage: frames per second of that stage alone (ms per output frame), median of repetitions")

    def cell(r: Result, frames, seconds) -> str:
        fps = r.median(lambda p: rate(frames(p), seconds(p)))
        return f"{fps:.1f} ({1000 / fps:.2f} ms)" if fps == fps else "n/a"

    out_frames = lambda p: p.frames
    naive_frames = lambda p: p.naive_frames
    spec = [(f"talkdata {s}", out_frames, (lambda s: lambda p: p.stages.get(s, 0.0))(s)) for s in PIPELINE_STAGES]
    spec += [
        ("talkdata write (ShardWriter)", out_frames, lambda p: p.write),
        ("talkdata end to end", out_frames, lambda p: p.e2e),
        ("block: decode (iter_frames 25 fps)", out_frames, lambda p: p.blocks["decode"]),
        (f"block: detect ({BuildConfig().face.detector}, every 10th frame)", out_frames, lambda p: p.blocks["detect"]),
        ("block: landmarks (dlib model, every frame)", out_frames, lambda p: p.blocks["landmarks"]),
        ("block: decode+detect+landmarks", out_frames, lambda p: sum(p.blocks.values())),
    ]
    spec += [(f"naive {s}", naive_frames, (lambda s: lambda p: p.naive_stages[s])(s)) for s in NAIVE_STAGES]
    spec += [("naive end to end", naive_frames, lambda p: p.naive_wall)]
    rows = [[name] + [cell(r, frames, seconds) for r in results] for name, frames, seconds in spec]
    print(table(["stage"] + [r.label for r in results], rows))

    print()
    print("Detector cost per call (ms): " + ", ".join(
        f"{r.label} {r.median(lambda p: 1000 * p.blocks['detect'] / max(p.detect_calls, 1)):.1f}" for r in results))
    for r in results:
        if r.rejected:
            print(f"{r.label}: left out (rejected by process_clip): " + "; ".join(r.rejected))
    by_label = {r.label: r for r in results}
    goals = []
    for label in ("GRID", "CREMA-D", "voxceleb2_like"):
        if label in by_label and by_label[label].reps:
            e2e = by_label[label].median(lambda p: rate(p.frames, p.e2e))
            goals.append((f"{label} >= 250 frames/s end to end", e2e, e2e >= 250))
    if "hd_720p" in by_label and by_label["hd_720p"].reps:
        e2e = by_label["hd_720p"].median(lambda p: rate(p.frames, p.e2e))
        goals.append(("720p clip >= 120 frames/s end to end", e2e, e2e >= 120))
    if "GRID" in by_label and by_label["GRID"].reps:
        speedup = by_label["GRID"].median(lambda p: rate(p.frames, p.e2e) / rate(p.naive_frames, p.naive_wall))
        goals.append(("GRID >= 10x the naive pipeline", speedup, speedup >= 10))
    print()
    for text, value, ok in goals:
        print(f"  {text}: {value:.2f} -> {'met' if ok else 'not met'}")
    print(f"GOAL (one worker, face.detector={BuildConfig().face.detector}, load average {load_at_start:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, on "
          f"{os.cpu_count()} CPUs): {'met' if goals and all(ok for _, _, ok in goals) else 'not met'} "
          f"({sum(ok for _, _, ok in goals)} of {len(goals)} goals)")


def make_hd_clips(folder: Path, frames: int, sizes: list[str]) -> list[str]:
    """The VoxCeleb2-style sample 00473 placed on plain 720p / 1080p / 4K canvases with a face of
    about 110 px (``tests/face_placements``), with its own audio; one folder per size."""
    sys.path.insert(0, str(REPO / "tests"))
    import face_placements as fp
    import media_factory as mf

    audio, _ = mf.read_audio(fp.CLIPS["vox473"])
    items = []
    for size in sizes:
        placement = fp.Placement("vox473", size, 110)
        target = folder / f"hd_{size}"
        target.mkdir(parents=True, exist_ok=True)
        mf.write_video(target / f"{placement.name}.mp4", fp.canvas_frames(placement, frames), 25.0,
                       audio=audio[: int(16000 * frames / 25)], crf=18)
        items.append(f"videos={target}")
    return items


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=DEFAULT_CLIPS, metavar="DIR",
                        help="corpus folders (optionally KIND=DIR, KIND in grid, crema_d, videos)")
    parser.add_argument("--repeat", type=int, default=3, help="times every clip is processed (default 3)")
    parser.add_argument("--hd", nargs="*", default=["720p", "1080p", "4k"], choices=["720p", "1080p", "4k"],
                        help="also measure the sample 00473 placed on these canvases, face ~110 px (default all)")
    parser.add_argument("--hd-frames", type=int, default=75, help="frames of each HD clip (default 75)")
    args = parser.parse_args(argv)
    config = BuildConfig()
    load_at_start = os.getloadavg()[0]  # the machine's other work: the GOAL line gives it at the start and the end
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"dlib {dlib.__version__}, opencv {cv2.__version__}, av {av.__version__}; "
          f"OpenCV threads {cv2.getNumThreads()}; repeat {args.repeat}")
    naive = NaivePipeline(config.crop.size, config.crop.stable_points)
    results = []
    hd_dir = tempfile.TemporaryDirectory()
    clips = list(args.clips) + (make_hd_clips(Path(hd_dir.name), args.hd_frames, args.hd) if args.hd else [])
    for item in clips:
        kind, root = parse_clip_arg(item)
        started = time.perf_counter()
        results.append(measure(kind, root, args.repeat, None if root.name.startswith("hd_") else naive, config))
        print(f"  measured {results[-1].label} ({root}): {results[-1].clips} clips in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    hd_dir.cleanup()
    report(results, load_at_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
