"""Corpus-scale behaviour of the build at small N (issue: corpus scale; reliability points on the
output folder, the cache and dask workers).

- the shape fit on a hash-chosen frame sample and the shards are the same bytes for 0, 1 and 2 workers;
- the dataset is stored once: after a build OUT is at most 1.1x its shards and the cache entries point
  into the shards; a rebuild changing only dataset-level settings processes no clip and reads the
  samples back from the shards;
- one outcome for a decoder crash on every path (isolated child in-process, isolated child on dask
  workers, dask worker without isolation);
- a non-talkdata ``--out`` is refused and left untouched; damaged cache entries are processed again;
  a full disk with dask workers is one ``error:`` line.

The synthetic corpus comes from ``benchmarks/scale.py`` (cache entries as the clip workers write
them; real H.264 video, every npy field), so the dataset-level stages run without the face pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from talkdata.manifest import verify
from talkdata.pipeline.shape_fit import FrameSampler, frame_hashes
from talkdata.shards import read_shard

from checks import pack_synthetic, synthetic_voxceleb2

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
GRID = DATA / "grid"


def versioned(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] not in (".work", "build_info.json")}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cli(out: Path, *extra: str, source: Path = GRID, recipe: str = "grid", env: dict | None = None,
        preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "talkdata.cli", "build", recipe, "--source", str(source), "--out",
                           str(out), "--no-progress", *extra], capture_output=True, text=True, timeout=900, env=env,
                          preexec_fn=preexec)


def processed_now(out: Path) -> int:
    return json.loads((out / "build_info.json").read_text())["clips_processed_now"]


# --------------------------------------------------------------------------- frame sample


def test_frame_sample_comes_from_counts_alone_and_is_bounded():
    counts = [(f"s{i % 7}/c{i}", 20 + (i * 37) % 50) for i in range(300)]
    total = sum(n for _, n in counts)
    every = FrameSampler(total, 0)
    for key, n in counts:
        every.add(key, n)
    chosen = every.selection()  # no more frames than max_frames: all of them, in order
    assert sorted(chosen) == list(range(300)) and all(np.array_equal(chosen[i], np.arange(counts[i][1])) for i in chosen)

    small = FrameSampler(500, 3)
    for key, n in counts:
        small.add(key, n)
        assert small._buffered <= 2 * 500 + 65536  # bounded whatever the number of clips
    picked = small.selection()
    assert sum(len(f) for f in picked.values()) == 500
    assert all(np.all(np.diff(f) > 0) and f.max() < counts[i][1] for i, f in picked.items())
    # the same frames whatever else is in the corpus order: a frame is chosen by its own hash
    threshold = max(frame_hashes(counts[i][0], counts[i][1], 3)[f].max() for i, f in picked.items())
    for i, (key, n) in enumerate(counts):
        expected = np.flatnonzero(frame_hashes(key, n, 3) <= threshold)
        assert np.array_equal(picked.get(i, np.zeros(0, dtype=np.int64)), expected)
    other_seed = FrameSampler(500, 4)
    for key, n in counts:
        other_seed.add(key, n)
    assert other_seed.selection().keys() != picked.keys() or any(
        not np.array_equal(other_seed.selection()[i], picked[i]) for i in picked)


def test_frame_sampler_holds_flat_arrays_not_an_object_per_clip(monkeypatch):
    """Sampling 2,000 of 20,000 one-frame clips peaks at a few times the sampler's three flat buffers (measured
    about 5x); buffering three small arrays per clip (as before) peaked at about 40x. The choice is the same as
    sorting every frame by (hash, clip, frame)."""
    import tracemalloc

    import talkdata.pipeline.shape_fit as shape_fit

    monkeypatch.setattr(shape_fit, "SLACK_FRAMES", 1024)
    buffers = 24 * (2 * 2000 + 1024)  # a uint64 hash, an int64 clip number and an int64 frame index per frame
    tracemalloc.start()
    try:
        sampler = FrameSampler(2000, 0)
        for i in range(20000):
            sampler.add(f"s/c{i}", 1)
        chosen = sampler.selection()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * buffers, f"{peak / buffers:.1f} x the buffers"
    hashes = np.array([frame_hashes(f"s/c{i}", 1, 0)[0] for i in range(20000)])
    assert sorted(chosen) == sorted(np.lexsort((np.arange(20000), hashes))[:2000].tolist())
    assert all(np.array_equal(f, [0]) for f in chosen.values())


# --------------------------------------------------------------------------- 0, 1, 2 workers on a synthetic corpus


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """30 synthetic VoxCeleb2 clips of 40 frames (real H.264 video padded to 200 kB), cache entries only."""
    return synthetic_voxceleb2(tmp_path_factory.mktemp("synthetic"), 30, 40, 200_000,
                               {"shape.max_frames": 300, "shards.max_samples": 4})


def _pack(synthetic: dict, out: Path, workers: int, keep_cache: bool) -> dict:
    return pack_synthetic(synthetic, out, workers, keep_cache=keep_cache)


def test_fit_and_shards_identical_for_0_1_2_workers_and_stored_once(synthetic, tmp_path):
    outs = {w: tmp_path / f"w{w}" for w in (0, 1, 2)}
    manifests = {w: _pack(synthetic, out, w, keep_cache=(w != 2)) for w, out in outs.items()}
    assert manifests[0]["shape_model"]["settings"]["frames_sampled"] == 300  # the hash sample, not every frame
    assert manifests[0]["shape_model"]["settings"]["clips"] == 30
    assert len(manifests[0]["shards"]) == 8  # 30 samples, 4 per shard
    reference = versioned(outs[0])
    assert {w: versioned(o) == reference for w, o in outs.items()} == {0: True, 1: True, 2: True}
    assert all(verify(o) == [] for o in outs.values())

    # with 2 workers the cache was released: OUT is stored once, entries point into the shards
    out = outs[2]
    shards = du(out / "shards")
    assert du(out) <= 1.1 * shards, (du(out), shards)
    entries = [p for p in (out / ".work" / "clips").glob("*/*")]
    assert len(entries) == 30 and all(sorted(p.name for p in e.iterdir()) == ["meta.json", "packed.json", "status.json"]
                                      for e in entries)
    kept = [p for p in (outs[1] / ".work" / "clips").glob("*/*/video.mp4")]
    assert len(kept) == 30  # --keep-cache keeps the full copy

    # a re-pack with other dataset-level settings reads every sample back from the shards
    from talkdata.pipeline.build import pack
    from talkdata.pipeline.cache import ClipCache
    from talkdata.pipeline.executor import Executor

    config = dataclasses.replace(synthetic["config"], shards=dataclasses.replace(synthetic["config"].shards, max_samples=7))
    with Executor(0, None) as executor:
        manifest, _ = pack(out, synthetic["recipe"], config, synthetic["records"], synthetic["keys"],
                           ClipCache(out / ".work"), None, executor, False)
    assert [s["samples"] for s in manifest["shards"]] == [7, 7, 7, 7, 2]
    assert verify(out) == []
    before = {k: v for s in (outs[0] / "shards").rglob("*.tar") for k, v in read_shard(s).items()}
    after = {k: v for s in (out / "shards").rglob("*.tar") for k, v in read_shard(s).items()}
    assert before == after  # the same samples, now in shards of 7
    assert not (out / ".work" / "previous-shards").exists()
    assert du(out) <= 1.1 * du(out / "shards")


# --------------------------------------------------------------------------- CLI builds of the GRID samples


def test_dataset_level_rebuild_processes_no_clip_and_reads_the_shards(grid_dataset, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid_dataset, out)  # a finished build: its cache points into its shards
    assert not list((out / ".work").rglob("video.mp4"))
    changed = cli(out, "--set", "shards.max_samples=1", "--set", "shape.n_components=5")
    assert changed.returncode == 0, changed.stderr
    assert processed_now(out) == 0
    assert json.loads((out / "build_info.json").read_text())["index"] == "reused"  # stored by the first build
    assert verify(out) == []
    sample = read_shard(next((out / "shards" / "train").glob("*.tar"))).popitem()[1]
    assert np.load(__import__("io").BytesIO(sample["pca.npy"])).shape[1] == 5
    again = cli(out)
    assert again.returncode == 0, again.stderr
    assert processed_now(out) == 0
    assert versioned(out) == versioned(grid_dataset)


def test_damaged_cache_entries_are_processed_again(grid_dataset, tmp_path):
    out = tmp_path / "out"
    kept = cli(out, "--keep-cache")
    assert kept.returncode == 0, kept.stderr
    entries = sorted(p for p in (out / ".work" / "clips").glob("*/*") if (p / "video.mp4").exists())
    assert len(entries) == 3
    (entries[0] / "mfcc.npy").unlink()  # a field deleted
    (entries[1] / "meta.json").write_text("")  # meta.json emptied
    video = entries[2] / "video.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])  # a cached video cut short
    rebuilt = cli(out)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert processed_now(out) == 3
    assert versioned(out) == versioned(grid_dataset)
    # released entries whose shard was damaged: the clips in it are processed again
    shard = next((out / "shards" / "val").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[:4096])
    again = cli(out)
    assert again.returncode == 0, again.stderr
    assert processed_now(out) == 1
    assert versioned(out) == versioned(grid_dataset)


def test_out_that_is_not_a_talkdata_folder_is_refused_and_untouched(tmp_path):
    out = tmp_path / "mine"
    files = {"keep.tar.gz": b"user archive", "shards/train/keep.tar": b"user tar", "notes.tmp": b"draft",
             "README.md": b"my readme", "index.parquet": b"not ours"}
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    result = cli(out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out") and "holds no talkdata build" in lines[0]
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_foreign_files_in_a_builds_shards_folder_are_never_deleted(grid_dataset, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid_dataset, out)
    (out / "shards" / "train" / "keep.tar.gz").write_bytes(b"user archive")
    (out / "notes.tmp").write_bytes(b"draft")
    result = cli(out, "--set", "shards.max_samples=2")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "keep.tar.gz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "shards" / "train" / "keep.tar.gz").read_bytes() == b"user archive"
    assert (out / "notes.tmp").read_bytes() == b"draft"
    (out / "shards" / "train" / "keep.tar.gz").unlink()  # moved away by the user: the build goes on
    again = cli(out)
    assert again.returncode == 0, again.stderr
    assert (out / "notes.tmp").read_bytes() == b"draft"
    assert versioned(out) == {**versioned(grid_dataset), "notes.tmp": b"draft"}


# --------------------------------------------------------------------------- one outcome per event, on every path

CRASH_HOOK = textwrap.dedent('''
    import os, signal
    _crash = os.environ.get("TALKDATA_TEST_CRASH_SOURCE", "")
    if _crash:  # the decoder dies by SIGSEGV on one clip, in whichever process processes it
        import talkdata.pipeline.clip as _clip
        _process = _clip.process_clip

        def _crashing(record, config):
            if record.relpath == _crash:
                os.kill(os.getpid(), signal.SIGSEGV)
            return _process(record, config)

        _clip.process_clip = _crashing
''')


def _no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.mark.parametrize("path", [(), ("--workers", "2"), ("--workers", "2", "--no-isolation")],
                         ids=["isolated-in-process", "isolated-on-dask", "dask-worker-without-isolation"])
def test_a_decoder_crash_is_the_same_outcome_on_every_path(tmp_path, path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(CRASH_HOOK)
    victim = sorted(p.relative_to(GRID).as_posix() for p in GRID.rglob("*.mpg"))[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])]),
               TALKDATA_TEST_CRASH_SOURCE=victim)
    out = tmp_path / "out"
    result = cli(out, *path, env=env, preexec=_no_core_dumps)
    assert result.returncode == 0, result.stderr
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert [(r["source"], r["stage"], r["reason"]) for r in rejects] == [(victim, "decode", "decoder_crash")]
    statuses = [json.loads(p.read_text()) for p in (out / ".work" / "clips").glob("*/*/status.json")]
    assert sorted(s["status"] for s in statuses) == ["done", "done", "rejected"]
    retried = cli(out, *path, "--retry-failed", env=env, preexec=_no_core_dumps)  # a reject, not a failure
    assert retried.returncode == 0, retried.stderr
    assert processed_now(out) == 0


def test_disk_full_with_dask_workers_is_one_line(tmp_path):
    """Every process of the build (the dask workers too) past a 60 KB file-size limit: one ``error:``
    line, none of dask's worker logging."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    result = cli(tmp_path / "out", "--workers", "2", preexec=limit)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left"), result.stderr
    assert "Traceback" not in result.stderr and "Compute Failed" not in result.stderr


def test_planned_shards_are_the_ones_a_single_writer_makes(synthetic, tmp_path):
    """Shard membership planned from the ledgers (no payload read) against ``ShardWriter`` rolling over
    on ``shards.max_bytes`` while it writes the same samples one by one."""
    from talkdata.shards import ShardWriter

    limit = 2_500_000  # about 5 samples of the synthetic corpus
    config = dataclasses.replace(synthetic["config"], shards=dataclasses.replace(synthetic["config"].shards, max_samples=1000, max_bytes=limit))
    planned = tmp_path / "planned"
    manifest = _pack(dict(synthetic, config=config), planned, 0, keep_cache=True)
    samples = {k: v for s in sorted((planned / "shards").rglob("*.tar")) for k, v in read_shard(s).items()}
    writer = ShardWriter(tmp_path / "single", manifest["name"], "train", 1000, limit)
    for key in sorted(samples):
        writer.write(key, samples[key])
    written = writer.close()
    assert len(written) > 3
    assert [s["samples"] for s in manifest["shards"]] == [s.samples for s in written]
    for info in written:
        assert (tmp_path / "single" / info.path).read_bytes() == (planned / info.path).read_bytes()
        assert info.sha256 == __import__("hashlib").sha256((planned / info.path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- index reuse


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_the_index_is_reused_while_the_source_tree_is_unchanged(tmp_path, monkeypatch):
    """A second index of an unchanged tree parses nothing; a file added, removed or rewritten is seen; the splits
    follow the config each time; the source tree is never written to."""
    import talkdata.corpora.grid as grid
    from talkdata.config import resolve
    from talkdata.pipeline.build import index_clips
    from talkdata.recipe import load_recipe

    source, stored = tmp_path / "grid", tmp_path / "out" / ".work" / "index"
    shutil.copytree(GRID, source)
    parses = []
    original = grid.index
    monkeypatch.setattr(grid, "index", lambda *a, **k: parses.append(1) or original(*a, **k))
    recipe = load_recipe("grid")
    config = resolve(recipe.defaults, recipe.name, {})

    def index(sets: dict | None = None):
        found = index_clips(recipe, source, resolve(recipe.defaults, recipe.name, sets or {}), stored=stored)
        if not found.reused:
            from talkdata.corpora import index_cache

            index_cache.save(stored, found.fingerprint, found)
        return found, [(r.key, r.relpath, r.split, r.meta) for r in found]

    before = _listing(source)
    first, rows = index()
    assert len(parses) == 1 and not first.reused and len(rows) == 3
    assert [p.name for p in stored.iterdir()] == [f"{first.fingerprint}.records.npz"]
    second, again = index()
    assert len(parses) == 1 and second.reused and again == rows
    assert [r.to_dict() for r in second] == [r.to_dict() for r in index_clips(recipe, source, config)]
    assert len(parses) == 2  # (without ``stored``: parsed)
    assert _listing(source) == before  # nothing written into the source tree

    # splits come from the config, not from the stored index
    lipnet, split_rows = index({"split.protocol": "lipnet-unseen"})
    assert lipnet.reused and len(parses) == 2
    assert {k: s for k, _, s, _ in split_rows} == {"s1/bbaf2n": "test", "s2/swwp2s": "test",
                                                   "unknown_speaker/lbbc2a": "train"}

    video = next(source.rglob("*.mpg"))
    added = video.with_name("zzzz9a.mpg")
    shutil.copy(video, added)
    grown, rows_added = index()
    assert not grown.reused and len(parses) == 3 and len(rows_added) == 4
    assert any(relpath.endswith("zzzz9a.mpg") for _, relpath, _, _ in rows_added)
    assert len(list(stored.iterdir())) == 1  # only the latest stored index is kept

    added.unlink()
    shrunk, rows_removed = index()
    assert not shrunk.reused and len(parses) == 4 and rows_removed == rows

    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))  # rewritten in place
    touched, _ = index()
    assert not touched.reused and len(parses) == 5
    assert index()[0].reused and len(parses) == 5


# --------------------------------------------------------------------------- batched submission


def test_batch_size_follows_the_measured_work_and_keeps_every_worker_busy():
    from talkdata.pipeline.executor import BatchSizer

    sizer = BatchSizer(workers=4, total=100_000)
    assert sizer.size(0) == 1  # nothing measured yet: one item per task
    sizer.observe(10, 0.01)  # 1 ms per item: 2 s of work is 2000 items, capped
    assert sizer.size(0) == BatchSizer.MAX_BATCH
    assert sizer.size(100_000 - 80) == 10  # the tail: at least 2 batches per worker for what is left
    assert sizer.size(100_000) == 1
    slow = BatchSizer(workers=4, total=100_000)
    slow.observe(2, 9.0)  # 4.5 s per clip: one clip per task
    assert slow.size(0) == 1
    medium = BatchSizer(workers=4, total=100_000)
    medium.observe(4, 1.0)  # 0.25 s per clip: 8 clips make the 2 s target
    assert medium.size(0) == 8
    big = BatchSizer(workers=64, total=10**6)
    big.observe(4, 1.0)  # on 64 workers a task is 12.8 s of work (5 tasks a second for the driver)
    assert big.size(0) == 51
    big.observe(10**6, 0.0)  # very short items: the items in flight bound the batch
    assert big.size(0) * big.window(big.size(0)) <= big.items_in_flight
    assert big.window(big.size(0)) >= 2 * 64


def test_a_failing_item_in_a_batch_reaches_only_its_own_result():
    """Items grouped into batches come back in order; the one that raises gets ``on_error``, its batch
    neighbours their own results."""
    import operator

    from talkdata.pipeline.executor import Executor

    items = [float(n + 1) for n in range(600)]
    items[450] = 0.0  # 1 / 0 raises, well after the first (single-item) tasks
    errors = []
    with Executor(1, None) as executor:
        results = list(executor.map(operator.truediv, items, shared=(1.0,), total=len(items),
                                    on_error=lambda item, err: errors.append((item, type(err).__name__)) or "error"))
    assert errors == [(0.0, "ZeroDivisionError")]
    assert results[450] == "error"
    assert results[:450] + results[451:] == [1.0 / x for x in items[:450] + items[451:]]


def test_the_local_cluster_leaves_the_dashboard_port_to_the_users_own_cluster(recwarn):
    """A user's own dask cluster on 127.0.0.1:8787: a ``--workers N`` build neither warns about the port
    nor takes it."""
    import socket
    import warnings

    from talkdata.pipeline.executor import Executor

    theirs = socket.socket()
    try:
        theirs.bind(("127.0.0.1", 8787))
        theirs.listen()
    except OSError:
        pass  # something on this machine holds it already: the condition the test sets up
    try:
        warnings.simplefilter("always")
        with Executor(1, None) as executor:
            assert list(executor.map(abs, [-1, -2], total=2)) == [1, 2]
    finally:
        theirs.close()
    assert not [w for w in recwarn if "8787" in str(w.message)]


def test_index_rows_are_buffered_columnar_and_written_as_one_table_would_be(tmp_path, monkeypatch):
    """``TableWriter`` keeps at most ``ROWS_AS_DICTS`` rows as dicts; its file is the bytes pyarrow writes for
    the whole table in row groups of ``ROW_GROUP`` rows."""
    import pyarrow as pa

    from talkdata.pipeline import pack

    monkeypatch.setattr(pack, "ROW_GROUP", 3000)
    monkeypatch.setattr(pack, "ROWS_AS_DICTS", 700)
    schema = pa.schema([("key", pa.string()), ("frames", pa.int64()), ("duration", pa.float64()),
                        ("speaker", pa.string())])
    rng = np.random.default_rng(0)
    rows = [{"key": f"s{n % 7}/clip{n:05d}", "frames": int(rng.integers(40, 400)), "duration": float(rng.random()),
             "speaker": None if n % 11 == 0 else f"s{n % 7}"} for n in range(10_000)]
    writer = pack.TableWriter(tmp_path / "index.parquet", schema)
    for row in rows:
        writer.write(row)
        assert len(writer._rows) < 700
    writer.close()
    whole = pa.table({f.name: [r[f.name] for r in rows] for f in schema}, schema=schema)
    pq.write_table(whole, tmp_path / "reference.parquet", compression="zstd", write_statistics=False,
                   row_group_size=3000)
    assert (tmp_path / "index.parquet").read_bytes() == (tmp_path / "reference.parquet").read_bytes()
    assert pq.read_metadata(tmp_path / "index.parquet").num_row_groups == 4


def test_record_list_gives_back_the_records_it_holds(tmp_path):
    """Records (a name that is not UTF-8 included) come back equal from the compact list, a slice of it and its
    stored bytes; splits set later are not part of what is stored."""
    from talkdata.corpora.records import ClipRecord, RecordList

    raw = os.fsdecode(b"caf\xe9.mp4")  # surrogate escapes: opens the file, not valid UTF-8
    records = [ClipRecord("videos", "s1", f"c{n}", f"/data/{raw if n == 1 else f'c{n}.mp4'}", f"c{n}.mp4",
                          split="val" if n == 2 else "", meta={"box": [0.1, 0.2], "n": n, "name": "é"})
               for n in range(4)]
    held = RecordList.pack(records)
    assert len(held) == 4 and [r.to_dict() for r in held] == [r.to_dict() for r in records]
    assert held[1].path == records[1].path and held[-1].key == "s1/c3"
    assert [r.to_dict() for r in held[1:3]] == [r.to_dict() for r in records[1:3]]
    assert list(held.unsplit()) == [0, 1, 3]
    held.set_splits([0, 1, 3], ["train", "test", "train"])
    assert [held.split(i) for i in range(4)] == ["train", "test", "val", "train"]
    stored = RecordList.from_bytes(held.to_bytes())
    assert [r.to_dict() for r in stored] == [r.to_dict() for r in records]  # the indexer's splits
    assert len(RecordList.pack([])) == 0


def test_record_list_stores_shared_folders_roots_and_field_names_once():
    """Every way ``path`` and ``relpath`` can relate (``relpath`` past a root, past an empty root, not a suffix of
    ``path``, a bare file name, a name that is not UTF-8), ``skip`` set or not, several ``meta`` layouts: the records,
    their keys and speakers come back equal, from the list and from its stored bytes. A VoxCeleb2 record is held in
    well under half the bytes of its JSON (the previous form): the folder, the root and the field names are not
    repeated per record."""
    from talkdata.corpora.records import ClipRecord, RecordList

    raw = os.fsdecode(b"caf\xe9")  # surrogate escapes: opens the file, not valid UTF-8
    records = [
        ClipRecord("videos", "s1", "a", "/data/corpus/s1/a.mp4", "s1/a.mp4"),
        ClipRecord("videos", "s1", "b", "/b.mp4", "b.mp4", meta={"n": 1}),  # the root is "/"'s left side: ""
        ClipRecord("videos", "s2", "c", "/data/corpus/s2/c.mp4", "elsewhere/c.mp4", skip="unreadable",
                   skip_message="the corpus lists it as broken"),  # relpath is not the end of path
        ClipRecord("videos", "s2", "d", "d.mp4", "d.mp4", meta={"box": [0.5, 0.25], "x": None}),  # no folder
        ClipRecord("videos", raw, raw, f"/data/{raw}/{raw}.mp4", f"{raw}/{raw}.mp4", meta={"name": "é"}),
        ClipRecord("videos", "s3", "e", "/data/corpus/s3/e.mp4", "corpus/s3/e.mp4", split="test"),  # another root
        ClipRecord("grid", "s3", "f", "/data/corpus/s3/f.mp4", "", meta={"n": 2, "m": 3}),  # empty relpath
    ]
    by_key = sorted(records, key=lambda r: r.key)
    for held, expected in ((RecordList.pack(records), records), (RecordList.pack(iter(records), by_key=True), by_key)):
        for got in (held, RecordList.from_bytes(held.to_bytes())):
            assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]  # ``path`` keeps the surrogates
            assert [got.key(i) for i in range(len(got))] == [r.key for r in expected]
            assert [got.speaker(i) for i in range(len(got))] == [r.speaker for r in expected]

    root = "/mnt/corpora/voxceleb2/vox2_dev_mp4_partaa_extracted"
    vox = []
    for n in range(300):
        speaker, video, clip = f"id{n // 50:05d}", f"yt{n // 5:09d}", f"{n % 5 + 1:05d}"
        relpath = f"dev/mp4/{speaker}/{video}/{clip}.mp4"
        vox.append(ClipRecord("voxceleb2", speaker, f"{video}_{clip}", f"{root}/{relpath}", relpath, split="train",
                              meta={"youtube_id": video, "clip_index": int(clip), "gender": "m", "vggface2_id": "n1",
                                    "vox2_set": "dev", "txt": f"txt/{speaker}/{video}/{clip}.txt", "av_offset": 1,
                                    "fv_conf": 17.5, "asd_conf": 6.1, "youtube_start_frame": 1000,
                                    "youtube_end_frame": 1200, "track_fps": 25, "face_box": [0.165, 0.098, 0.75, 0.656]}))
    held = RecordList.pack(vox)
    assert [r.to_dict() for r in held] == [r.to_dict() for r in vox]
    as_json = sum(len(json.dumps(r.to_dict(), separators=(",", ":"))) for r in vox)
    stored = len(held.to_bytes())  # entries, offsets, splits and the string table, with the npz framing
    assert stored < 0.45 * as_json, f"{stored / len(vox):.0f} bytes per record stored, {as_json / len(vox):.0f} as JSON"


def test_an_index_stored_in_an_earlier_format_is_parsed_again_and_replaced(tmp_path, monkeypatch):
    """The stored index's format is part of its fingerprint, and ``read`` refuses a file of another format: an index
    stored by the previous version (records as JSON objects) is never read as records; the tree is parsed again and
    the stored file replaced by one that the next build reuses."""
    import talkdata.corpora.grid as grid
    from talkdata.config import resolve
    from talkdata.corpora import index_cache
    from talkdata.corpora.records import RecordList
    from talkdata.pipeline.build import index_clips
    from talkdata.recipe import load_recipe

    source, stored = tmp_path / "grid", tmp_path / "out" / ".work" / "index"
    shutil.copytree(GRID, source)
    recipe = load_recipe("grid")
    config = resolve(recipe.defaults, recipe.name, {})
    fingerprint = index_cache.tree_fingerprint(source, recipe.data)
    monkeypatch.setattr(RecordList, "FORMAT", "talkdata-records/0")
    assert index_cache.tree_fingerprint(source, recipe.data) != fingerprint  # the format is part of the fingerprint
    monkeypatch.undo()

    fresh = index_clips(recipe, source, config)
    entries = [json.dumps({k: v for k, v in r.to_dict().items() if k != "split"}, separators=(",", ":")).encode()
               for r in fresh]
    blob = b"".join(entries)
    offsets = np.cumsum([0] + [len(e) for e in entries]).astype(np.int64)
    stored.mkdir(parents=True)
    for name in (fingerprint, "0" * 64):  # the previous form, under this tree's name and under another one
        np.savez(stored / f"{name}{index_cache.SUFFIX}", blob=np.frombuffer(blob, np.uint8), offsets=offsets,
                 splits=np.zeros(len(entries), np.uint8), split_names=np.array(""))
    with pytest.raises(ValueError, match="format"):
        RecordList.read(stored / f"{fingerprint}{index_cache.SUFFIX}")
    assert index_cache.load(stored, fingerprint) is None

    parses = []
    original = grid.index
    monkeypatch.setattr(grid, "index", lambda *a, **k: parses.append(1) or original(*a, **k))
    first = index_clips(recipe, source, config, stored=stored)
    assert not first.reused and len(parses) == 1 and first.fingerprint == fingerprint
    assert [r.to_dict() for r in first] == [r.to_dict() for r in fresh]
    index_cache.save(stored, first.fingerprint, first)
    assert [p.name for p in stored.iterdir()] == [f"{fingerprint}{index_cache.SUFFIX}"]
    again = index_clips(recipe, source, config, stored=stored)
    assert again.reused and len(parses) == 1 and [r.to_dict() for r in again] == [r.to_dict() for r in fresh]


# --------------------------------------------------------------------------- driver memory


def _records_out_of_order():
    from talkdata.corpora.records import ClipRecord

    # keys of different lengths (the fixed-width key arrays of two chunks differ in width), arrival order not key order
    names = ["zeta", "a", "mid-1", "a-b", "b", "a_c", "longer_name_here", "0"]
    return [ClipRecord("videos", f"s{n % 3}", name, f"/data/{name}.mp4", f"{name}.mp4",
                       split=("train", "", "val")[n % 3], meta={"n": n, "box": [0.5, n / 10]})
            for n, name in enumerate(names)]


def test_record_list_packs_a_generator_in_key_order(monkeypatch):
    """``RecordList.pack(generator, by_key=True)`` holds the records sorted by key as ``sorted`` does, with the
    indexer's splits; slices and the stored form keep that order."""
    from talkdata.corpora.records import RecordList

    monkeypatch.setattr(RecordList, "KEY_CHUNK", 3)  # keys gathered in several chunks of different widths
    records = _records_out_of_order()
    expected = sorted(records, key=lambda r: r.key)
    assert [r.key for r in expected] != [r.key for r in records]
    consumed = []
    held = RecordList.pack((consumed.append(r) or r for r in records), by_key=True)
    assert len(consumed) == len(records)  # one pass over the generator
    assert [r.to_dict() for r in held] == [r.to_dict() for r in expected]
    assert [held.split(i) for i in range(len(held))] == [r.split for r in expected]
    assert [held.speaker(i) for i in range(len(held))] == [r.speaker for r in expected]
    assert [r.to_dict() for r in held[2:6]] == [r.to_dict() for r in expected[2:6]]
    assert [r.to_dict() for r in held[2:6][1:3]] == [r.to_dict() for r in expected[3:5]]
    assert list(held.unsplit()) == [i for i, r in enumerate(expected) if not r.split]
    stored = RecordList.from_bytes(held.to_bytes())
    assert [r.to_dict() for r in stored] == [r.to_dict() for r in expected]
    assert [r.to_dict() for r in stored[1:4]] == [r.to_dict() for r in expected[1:4]]
    assert len(RecordList.pack(iter(()), by_key=True)) == 0


def test_record_list_names_the_first_duplicate_key_in_arrival_order():
    """Two records with one key: the line names the first record (in the order the indexer gave them) whose key
    came before, and the earlier one, as a check while indexing would."""
    from talkdata.corpora.records import ClipRecord, RecordList
    from talkdata.errors import UserError

    def record(clip: str, relpath: str) -> ClipRecord:
        return ClipRecord("videos", "s", clip, f"/d/{relpath}", relpath)

    arrival = [record("c", "c1.mp4"), record("a", "a1.mp4"), record("b", "b.mp4"), record("a", "a2.mp4"),
               record("c", "c2.mp4"), record("a", "a3.mp4")]
    with pytest.raises(UserError, match=r"^two clips map to the key 's/a': a1\.mp4 and a2\.mp4$"):
        RecordList.pack(iter(arrival), by_key=True)
    with pytest.raises(UserError, match=r"^two clips map to the key 's/c': c1\.mp4 and c2\.mp4$"):
        RecordList.pack(iter(arrival[:3] + arrival[4:5]), by_key=True)


def test_voxceleb2_index_holds_less_than_half_a_kb_per_clip(tmp_path, monkeypatch):
    """The index stage's peak Python memory (tracemalloc) grows by less than 512 bytes per clip between 300 and
    1,500 VoxCeleb2 clips (about 330): the walk keeps folders, not a path per file, the records go one at a time
    into the compact list, and an entry repeats neither its folder, its root nor its field names. Records held
    as their JSON (the list's previous form: about 770 bytes) break that bound, and so do records held as a list
    of ``ClipRecord`` objects first, then sorted and packed (as the index did before that: about 1,950)."""
    import gc
    import tracemalloc

    import talkdata.corpora.voxceleb2 as voxceleb2
    from talkdata.config import resolve
    from talkdata.corpora.records import RecordList
    from talkdata.pipeline.build import index_clips
    from talkdata.recipe import load_recipe

    from checks import scale_benchmark

    monkeypatch.setattr(voxceleb2, "READ_BATCH", 64)  # constants of a large corpus, reached at this small N
    monkeypatch.setattr(RecordList, "KEY_CHUNK", 64)
    bench = scale_benchmark()
    recipe = load_recipe("voxceleb2")
    config = resolve(recipe.defaults, recipe.name, {})

    def as_objects(root: Path) -> RecordList:
        found = list(voxceleb2.index(root, config))
        found.sort(key=lambda r: r.key)
        return RecordList.pack(found)

    def peak(fn) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed, objects = {}, {}
    for clips in (300, 1500):
        root = tmp_path / str(clips)
        bench.vox_tree(root, clips, 3)
        records = index_clips(recipe, root, config)
        assert len(records) == clips
        assert [r.to_dict() for r in records] == [r.to_dict() for r in as_objects(root)]  # same records, same order
        del records
        streamed[clips] = peak(lambda: index_clips(recipe, root, config))
        objects[clips] = peak(lambda: as_objects(root))
    per_clip = (streamed[1500] - streamed[300]) / 1200
    before = (objects[1500] - objects[300]) / 1200
    assert per_clip < 512 < 1024 < before, f"{per_clip:.0f} bytes per clip (records as objects first: {before:.0f})"


def test_a_release_cut_short_is_finished_by_the_next_build(grid_dataset, tmp_path, monkeypatch):
    """A rebuild killed after its manifest was committed but before its cache entries were re-pointed: the next
    build finishes the release (each shard's entries found by key, ``KeyLookup``), processes no clip and gives
    the bytes of a rebuild that was not interrupted; no payload copy and no parked shard is left."""
    import gc

    from talkdata.pipeline import build as build_module
    from talkdata.pipeline.cache import ClipCache

    reference, out = tmp_path / "reference", tmp_path / "out"
    shutil.copytree(grid_dataset, reference)
    shutil.copytree(grid_dataset, out)
    sets = {"shards.max_samples": 1}
    build_module.build("grid", GRID, reference, sets=sets)
    real = build_module._release
    calls = []

    def cut(*args, **kwargs):
        calls.append(kwargs.get("lookup"))
        raise RuntimeError("killed during the release")

    monkeypatch.setattr(build_module, "_release", cut)
    with pytest.raises(RuntimeError, match="killed during the release"):
        build_module.build("grid", GRID, out, sets=sets)
    gc.collect()  # the interrupted build's lock on OUT goes with its frames
    assert calls == [None] and (out / ".work" / "previous-shards").is_dir()
    finishing = []
    monkeypatch.setattr(build_module, "_release", lambda *a, **k: finishing.append(k.get("lookup")) or real(*a, **k))
    report = build_module.build("grid", GRID, out, sets=sets)
    assert isinstance(finishing[0], build_module.KeyLookup) and finishing[1:] == [None]
    assert processed_now(out) == 0 and report.samples == {"train": 1, "val": 1, "test": 1}
    assert versioned(out) == versioned(reference)
    assert not (out / ".work" / "previous-shards").exists()
    cache = ClipCache(out / ".work")
    entries = [p for p in (out / ".work" / "clips").glob("*/*") if (p / "status.json").is_file()]
    assert len(entries) == 3 and all(cache.pointer(p.name) for p in entries)
    assert not list((out / ".work" / "clips").rglob("video.mp4")) and verify(out) == []


def test_the_executor_window_is_bounded_in_bytes(monkeypatch):
    """Items travel pickled and the window holds at most ``BYTES_IN_FLIGHT`` of them (at least one batch):
    the driver never pulls more than that ahead of what it has given back, whatever the number of items."""
    from talkdata.pipeline.executor import BatchSizer, Executor

    monkeypatch.setattr(BatchSizer, "BYTES_IN_FLIGHT", 2**20)
    pulled = []
    ahead = []

    def items():
        for n in range(120):
            pulled.append(n)
            yield bytes([n]) * 100_000  # 100 KB each: 10 fit the window

    with Executor(1, None) as executor:
        results = []
        for result in executor.map(len, items(), total=120):
            results.append(result)
            ahead.append(len(pulled) - len(results))
    assert results == [100_000] * 120
    assert max(ahead) <= 2**20 // 100_000 + 1, max(ahead)


_KEPT_AFTER_TASKS = """
import gc, time, tracemalloc
from talkdata.pipeline.executor import Executor

with Executor(1, None) as executor:
    executor._connect()
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    results = list(executor.map(len, (bytes([n % 251]) * 100_000 for n in range(300)), total=300))
    # the client's release of the finished tasks reaches the scheduler (in this process) asynchronously:
    # wait until it has forgotten them, as it does in a build long before the end
    deadline = time.monotonic() + 120
    while executor._cluster.scheduler.tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not executor._cluster.scheduler.tasks, "the scheduler still holds the finished tasks"
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
assert results == [100_000] * 300
print(kept)
"""


def test_the_driver_keeps_no_copy_of_finished_tasks():
    """Once their results are given back, the driver holds nothing of the items it sent: distributed's message
    log (the last 1,000 messages of every stream, each task with its batch of items) is off. 30 MB of items
    pass through; less than 2 MB of Python memory stays. Measured in a fresh process (what other tests left
    in this one, and pytest's own bookkeeping, are not the driver's)."""
    done = subprocess.run([sys.executable, "-c", _KEPT_AFTER_TASKS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    kept = int(done.stdout.split()[-1])
    assert kept < 2 * 2**20, f"{kept / 2**20:.1f} MB kept"  # with the log on: about 7 MB


def test_source_fingerprint_is_the_hash_of_the_sorted_pairs():
    """``SourceFingerprint`` (paths in one buffer, sha256s as raw bytes) hashes exactly ``json.dumps(sorted(pairs))``:
    paths that are prefixes of others, non-ASCII paths, one path twice with two sha256s, a sha256 that is not hex."""
    import hashlib
    import json

    from talkdata.pipeline.fingerprint import SourceFingerprint

    rng = np.random.default_rng(3)
    names = ["a", "a/b", "a-b", "ab", "é/x.mp4", "z", "a/b/c", "0", "Z", "a b"]
    pairs = [(name, hashlib.sha256(f"{name}{n}".encode()).hexdigest()) for n, name in enumerate(names)]
    pairs += [("a/b", "0" * 64), ("a/b", "f" * 64), ("odd", "NOT-HEX"), ("a/b", "ABC")]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    fingerprint = SourceFingerprint()
    fingerprint.extend(pairs[:5])
    fingerprint.extend(pairs[5:])
    assert fingerprint.sha256() == hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()
    empty = SourceFingerprint()
    assert empty.sha256() == hashlib.sha256(b"[]").hexdigest()
