"""Indexing VoxCeleb2 at scale: driver memory per clip and index time per clip, projected to 1.09 M clips.

A synthetic VoxCeleb2 tree is written for each N: ``dev/mp4/idNNNNN/YOUTUBEID/NNNNN.mp4`` (empty
files: the index never opens the videos) and ``txt/idNNNNN/YOUTUBEID/NNNNN.txt`` face tracks in the
real format (the documented header with its tabs and padding, then one ``FRAME X Y W H`` row per
frame; 200 frames, an 8 s clip, the VoxCeleb2 mean), about 180 clips per speaker and 7.5 per
YouTube video as in VoxCeleb2 dev (1,092,009 clips, 5,994 speakers), speakers from the real
``vox2_meta.csv``. Each N is indexed in a fresh process as a build does (``voxceleb2.index``, a
generator, packed into ``RecordList`` in key order) that reports its resident memory before and
after, its peak, the bytes the compact list holds per clip, and the wall time. The tree is on a
warm page cache (just written), so the time is the parsing, not the disk.

The parsing child also stores the index as a build does (``corpora/index_cache.py``: records in
one buffer, keyed by the tree's fingerprint); a second fresh process then does what a rebuild on
an unchanged tree does: fingerprint the tree (list it, stat every file) and load the stored index,
reporting its time and resident memory per clip.

    python benchmarks/index_scale.py                 # N = 1000, 10000, 50000
    python benchmarks/index_scale.py --n 1000 5000   # other sizes

The last line says whether the goals are met: driver memory beyond the records under 1 KB per clip,
the projected index time for 1,092,009 clips under 10 min, and the projected time to reuse the
index of an unchanged tree under 2 min with under 1 KB of memory per clip.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
META = REPO / "tests" / "data" / "voxceleb2_like" / "vox2_meta.csv"
VOX2_DEV_CLIPS = 1_092_009
CLIPS_PER_SPEAKER = 182
CLIPS_PER_VIDEO = 7
FRAMES = 200
HEADER = ("Identity  : \t{speaker}\nReference : \t{video}\nOffset    : \t{offset}\nFV Conf   : \t{fv:.3f}\t(1)\n"
          "ASD Conf  : \t{asd:.3f}\n\nFRAME \tX \tY \tW \tH \n")


def write_tree(root: Path, n: int) -> None:
    speakers = [line.split(",")[0].strip() for line in META.read_text(encoding="utf-8-sig").splitlines()[1:]
                if ",dev" in line.replace(" ", "")]
    (root).mkdir(parents=True)
    shutil.copy(META, root / "vox2_meta.csv")
    for i in range(n):
        speaker = speakers[(i // CLIPS_PER_SPEAKER) % len(speakers)]
        video = f"yt{(i // CLIPS_PER_VIDEO):09d}"
        clip = f"{i % CLIPS_PER_VIDEO + 1:05d}"
        mp4 = root / "dev" / "mp4" / speaker / video
        txt = root / "txt" / speaker / video
        if i % CLIPS_PER_VIDEO == 0:
            mp4.mkdir(parents=True, exist_ok=True)
            txt.mkdir(parents=True, exist_ok=True)
        (mp4 / f"{clip}.mp4").write_bytes(b"")
        start = 100 + 37 * i % 5000
        rows = "".join(f"{start + f:06d} \t{0.300 + 0.001 * (f % 50):.3f} \t0.067 \t0.424 \t0.753 \n" for f in range(FRAMES))
        (txt / f"{clip}.txt").write_text(HEADER.format(speaker=speaker, video=video, offset=i % 7 - 3,
                                                       fv=15 + i % 10, asd=2 + i % 3 / 10) + rows)


def rss_bytes(field: str = "VmRSS:") -> int:
    """Resident memory of this process now (``VmHWM:``: its peak so far)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def reuse_child(root: str, store: str) -> None:
    """Fingerprint the tree and load its stored index (a rebuild on an unchanged tree)."""
    import gc

    from talkdata.corpora import index_cache
    from talkdata.recipe import load_recipe

    recipe = load_recipe("voxceleb2").data
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    fingerprint = index_cache.tree_fingerprint(Path(root), recipe)
    listed = time.perf_counter() - started
    records = index_cache.load(Path(store), fingerprint)
    seconds = time.perf_counter() - started
    assert records is not None, "the stored index was not found for the unchanged tree"
    gc.collect()
    print(json.dumps({"n": len(records), "reuse_s": seconds, "list_s": listed, "reuse_rss": rss_bytes() - before}))


def child(root: str, store: str) -> None:
    """Index as a build does (the records one at a time into the compact list, in key order) and store it."""
    import gc

    from talkdata.config import BuildConfig
    from talkdata.corpora import index_cache, voxceleb2
    from talkdata.corpora.records import RecordList
    from talkdata.recipe import load_recipe

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    records = RecordList.pack(voxceleb2.index(Path(root), BuildConfig()), by_key=True)
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    peak = rss_bytes("VmHWM:")
    parts = [records._blob, records._offsets, records._splits, *records._texts.arrays(),
             *([records._order] if records._order is not None else [])]
    held = sum(memoryview(part).nbytes for part in parts)
    row_bytes = len(json.dumps(records[0].meta))
    index_cache.save(Path(store), index_cache.tree_fingerprint(Path(root), load_recipe("voxceleb2").data), records)
    print(json.dumps({"n": len(records), "seconds": seconds, "rss_growth": after - before, "peak_growth": peak - before,
                      "record_bytes": held / len(records), "meta_json_bytes": row_bytes}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--reuse", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.reuse:
        reuse_child(*args.reuse)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="index-scale-") as tmp:
        for n in args.n:
            root = Path(tmp) / f"vox{n}"
            started = time.perf_counter()
            write_tree(root, n)
            written = time.perf_counter() - started
            store = Path(tmp) / f"index{n}"
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            out = subprocess.run([sys.executable, __file__, "--child", str(root), str(store)], check=True,
                                 capture_output=True, text=True, env=env).stdout
            row = json.loads(out.strip().splitlines()[-1])
            out = subprocess.run([sys.executable, __file__, "--reuse", str(root), str(store)], check=True,
                                 capture_output=True, text=True, env=env).stdout
            row.update(json.loads(out.strip().splitlines()[-1]))
            row["written_s"] = written
            rows.append(row)
            shutil.rmtree(root)
            shutil.rmtree(store)
    print(f"{'N':>8} {'index s':>8} {'us/clip':>8} {'RSS/clip':>9} {'peak/clip':>9} {'record':>8} {'beyond':>8} "
          f"{'meta json':>9} {'reuse s':>8} {'us/clip':>8} {'RSS/clip':>9}")
    for r in rows:
        per_clip = r["rss_growth"] / r["n"]
        print(f"{r['n']:>8} {r['seconds']:>8.2f} {1e6 * r['seconds'] / r['n']:>8.1f} {per_clip:>8.0f}B "
              f"{r['peak_growth'] / r['n']:>8.0f}B "
              f"{r['record_bytes']:>7.0f}B {per_clip - r['record_bytes']:>7.0f}B {r['meta_json_bytes']:>8}B "
              f"{r['reuse_s']:>8.2f} {1e6 * r['reuse_s'] / r['n']:>8.1f} {r['reuse_rss'] / r['n']:>8.0f}B")
    big = max(rows, key=lambda r: r["n"])
    beyond = big["rss_growth"] / big["n"] - big["record_bytes"]
    projected = big["seconds"] / big["n"] * VOX2_DEV_CLIPS
    print(f"projection for VoxCeleb2 dev ({VOX2_DEV_CLIPS:,} clips) from N={big['n']}: index {projected / 60:.1f} min, "
          f"driver RSS {big['rss_growth'] / big['n'] * VOX2_DEV_CLIPS / 1e9:.2f} GB")
    reuse = big["reuse_s"] / big["n"] * VOX2_DEV_CLIPS
    reuse_rss = big["reuse_rss"] / big["n"]
    print(f"reusing the stored index of an unchanged tree: {reuse / 60:.2f} min, {reuse_rss * VOX2_DEV_CLIPS / 1e9:.2f} GB "
          f"({reuse_rss:.0f} B/clip)")
    memory_ok, time_ok = beyond < 1024, projected < 600
    reuse_ok = reuse < 120 and reuse_rss < 1024
    print(f"GOAL index RSS beyond the record < 1 KB/clip ({beyond:.0f} B): {'met' if memory_ok else 'not met'}; "
          f"projected index time < 10 min ({projected / 60:.1f} min): {'met' if time_ok else 'not met'}; "
          f"reused index < 2 min and < 1 KB/clip ({reuse / 60:.2f} min, {reuse_rss:.0f} B): "
          f"{'met' if reuse_ok else 'not met'}{' -> met' if memory_ok and time_ok and reuse_ok else ' -> not met'}")


if __name__ == "__main__":
    main()
