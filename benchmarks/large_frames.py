"""Peak memory and time of the decoder on frames far larger than any talking-face corpus's.

Usage::

    python benchmarks/large_frames.py [--side 16000]

Two MJPEG clips of two mid-gray frames are written into a temporary folder (the JPEGs are coded
block by block without an image in memory, so a 16000 x 16000 frame is 2 MB on disk): one of
``--side`` x ``--side`` pixels, over the decoder's limit (``talkdata.media.decode.MAX_PIXELS``,
7680 x 4320), and one of exactly 7680 x 4320, the largest decoded. ``iter_frames`` runs on each in
a fresh subprocess that prints its peak RSS (``VmHWM``) and the seconds taken. Before the limit, a
16000 x 16000 MJPEG took a 2 GB peak and 13 s to decode its two frames (2.5 GB and 78 s through
the whole clip pipeline, to reject it as ``no_face``).

Goal: the over-limit clip is rejected as ``too_large`` with a peak RSS under 256 MB (one of its
frames as a gray plane alone would be 244 MB).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

GOAL_PEAK_MB = 256

_CHILD = textwrap.dedent(
    """
    import sys, time
    start = time.perf_counter()
    from talkdata.errors import ClipError
    from talkdata.media.decode import iter_frames
    try:
        outcome = f"{sum(1 for _ in iter_frames(sys.argv[1], 25.0, 'rgb24'))} frames"
    except ClipError as err:
        outcome = err.reason
    with open("/proc/self/status") as handle:
        peak = [int(line.split()[1]) for line in handle if line.startswith("VmHWM:")][0]
    print(outcome, peak // 1024, round(time.perf_counter() - start, 2))
    """
)


def measure(path: Path) -> tuple[str, int, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True,
                          timeout=600)
    outcome, peak, seconds = done.stdout.rsplit(maxsplit=2)
    return outcome, int(peak), float(seconds)


def main() -> None:
    import media_factory as mf

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=16000, help="the over-limit clip's width and height")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clips = {f"{args.side}x{args.side}": mf.write_mjpeg(Path(folder) / "huge.mkv", args.side, args.side),
                 "7680x4320 (the limit)": mf.write_mjpeg(Path(folder) / "limit.mkv", 7680, 4320)}
        results = {}
        print(f"{'clip':<24} {'outcome':<12} {'peak RSS MB':>11} {'seconds':>8}")
        for name, path in clips.items():
            results[name] = measure(path)
            outcome, peak, seconds = results[name]
            print(f"{name:<24} {outcome:<12} {peak:>11} {seconds:>8.2f}")
    outcome, peak, _ = results[f"{args.side}x{args.side}"]
    met = outcome == "too_large" and peak < GOAL_PEAK_MB
    print(f"GOAL {args.side}x{args.side} rejected as too_large under {GOAL_PEAK_MB} MB peak RSS: "
          f"{'met' if met else 'not met'} ({outcome}, {peak} MB)")


if __name__ == "__main__":
    main()
