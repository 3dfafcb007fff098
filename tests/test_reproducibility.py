"""Reproducible builds on the real GRID samples.

- byte-identical outputs whatever the worker count, output path, time zone and clock;
- no absolute path, host name or timestamp in any versioned output;
- a build killed with SIGKILL at several points resumes to the same bytes, without redoing
  finished clips, and never leaves a half-written file under a final name;
- ``--retry-failed`` retries the failed clips only; rejects stay rejected until the config changes;
- ``talkdata verify`` names every kind of damage.

The uninterrupted reference is the session fixture ``grid_dataset`` (built in process, 0 workers).

How the kill points are hit. The clips take about half a second each and packing about two
seconds here, so two points are found by polling the output folder every 2 ms from the test:
"the first clip's cache entry is complete" (an entry folder under its final name: entries are
renamed into place whole) and "every clip is cached, packing runs". Polling can miss a window on a
loaded machine (the build finishes, or gets past the point, before the test looks); such an attempt
is thrown away and the build is started again in a fresh folder, so a miss costs time, never a
failure. The two points inside packing are far too short to poll (a shard or the manifest is
written in milliseconds), so the build stops itself there: a ``sitecustomize`` module on
``PYTHONPATH`` (written by this file, loaded by the real ``python -m talkdata.cli`` process) sends
the process SIGSTOP at the 16th tar member written (the middle of the second shard) or at the
rename of ``dataset.json.tmp``; the test sees the stopped process in ``/proc`` and SIGKILLs it. Both
are deterministic.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from talkdata.cli import main
from talkdata.diff import diff_datasets
from talkdata.manifest import verify
from talkdata.shards import read_shard

DATA = Path(__file__).parent / "data"
GRID = DATA / "grid"
N_CLIPS = 3
UNVERSIONED = {"build_info.json", ".work"}

SITECUSTOMIZE = textwrap.dedent('''
    """Test hooks for tests/test_reproducibility.py, loaded by every Python process of a build."""
    import os
    import signal
    import sys

    def _stop():
        os.kill(os.getpid(), signal.SIGSTOP)  # the test sees the stopped process and SIGKILLs it

    _spec = os.environ.get("TALKDATA_TEST_STOP", "")
    if _spec.startswith("rename:"):  # stop just before os.replace/os.rename of a file ending with ...
        _suffix = _spec[len("rename:"):]

        def _hook(event, args):
            if event == "os.rename" and str(args[0]).endswith(_suffix):
                _stop()

        sys.addaudithook(_hook)
    elif _spec.startswith("addfile:"):  # stop before writing the N-th tar member
        import tarfile

        _nth, _calls, _addfile = int(_spec[len("addfile:"):]), [0], tarfile.TarFile.addfile

        def _counted(self, *args, **kwargs):
            _calls[0] += 1
            if _calls[0] == _nth:
                _stop()
            return _addfile(self, *args, **kwargs)

        tarfile.TarFile.addfile = _counted

    _shift = float(os.environ.get("TALKDATA_TEST_CLOCK_SHIFT", "0") or 0)
    if _shift:  # a clock years ahead, for every time function Python code can read the date from
        import time as _time

        _now, _now_ns, _gm, _local, _fmt = _time.time, _time.time_ns, _time.gmtime, _time.localtime, _time.strftime
        _time.time = lambda: _now() + _shift
        _time.time_ns = lambda: _now_ns() + int(_shift * 1e9)
        _time.gmtime = lambda secs=None: _gm(_time.time() if secs is None else secs)
        _time.localtime = lambda secs=None: _local(_time.time() if secs is None else secs)
        _time.strftime = lambda fmt, t=None: _fmt(fmt, _time.localtime() if t is None else t)

    _host = os.environ.get("TALKDATA_TEST_HOSTNAME", "")
    if _host:  # another host name, wherever Python code can read it
        import socket

        _uname = os.uname
        socket.gethostname = lambda: _host
        os.uname = lambda: os.uname_result((_uname().sysname, _host, *tuple(_uname())[2:]))

    _fail = os.environ.get("TALKDATA_TEST_FAIL_SOURCE", "")
    if _fail:  # an unexpected (non-ClipError) exception while processing one clip
        import talkdata.pipeline.clip as _clip

        _process = _clip.process_clip

        def _failing(record, config):
            if record.relpath == _fail:
                raise RuntimeError(f"injected failure while processing {record.relpath}")
            return _process(record, config)

        _clip.process_clip = _failing

    _slow = os.environ.get("TALKDATA_TEST_SLOW_SOURCE", "")
    if _slow:  # one clip takes 12 s longer (the others finish long before it)
        import time as _time_slow

        import talkdata.pipeline.clip as _clip_slow

        _process_slow = _clip_slow.process_clip

        def _slowed(record, config):
            if record.relpath == _slow:
                _time_slow.sleep(12)
            return _process_slow(record, config)

        _clip_slow.process_clip = _slowed
''')


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def hooks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hooks")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def hook_env(hooks: Path, **variables: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), *filter(None, [env.get("PYTHONPATH")])])
    env.update(variables)
    return env


def build_command(out: Path, *extra: str, source: Path = GRID, recipe: str = "grid") -> list[str]:
    return [sys.executable, "-m", "talkdata.cli", "build", recipe, "--source", str(source), "--out", str(out),
            "--no-progress", *extra]


def run_build(out: Path, *extra: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(build_command(out, *extra, **kwargs), capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stderr
    return result


def build_info(out: Path) -> dict:
    return json.loads((out / "build_info.json").read_text())


def versioned_files(out: Path) -> dict[str, bytes]:
    """Every file of a dataset folder but build_info.json and .work/, by relative path."""
    files = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if path.is_file() and relative.parts[0] not in UNVERSIONED:
            files[relative.as_posix()] = path.read_bytes()
    return files


def assert_same_bytes(reference: Path, other: Path) -> None:
    expected, actual = versioned_files(reference), versioned_files(other)
    assert sorted(actual) == sorted(expected)
    assert {"dataset.json", "index.parquet", "rejects.parquet", "README.md", "stats/shape_model.npz"} <= set(expected)
    assert any(name.startswith("card/") and name.endswith(".png") for name in expected)
    assert sum(name.startswith("shards/") for name in expected) == N_CLIPS
    differing = [name for name in expected if expected[name] != actual[name]]
    assert differing == [], f"bytes differ: {differing}"


def complete_entries(out: Path) -> int:
    """Per-clip cache entries under their final name (written whole, then renamed into place)."""
    root = out / ".work" / "clips"
    if not root.is_dir():
        return 0
    return sum(1 for entry in root.glob("*/*") if not entry.name.startswith(".tmp")
               and (entry / "status.json").is_file())


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def wait_group_gone(pgid: int, timeout: float = 120) -> None:
    """Wait until no live (non-zombie) process is left in the killed build's process group: the
    per-clip child process the build started finishes its clip, finds its parent gone and exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
                    alive.append(int(entry.name))
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of the killed build still running after {timeout} s: {alive}")


def start_build(out: Path, log: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as handle:
        return subprocess.Popen(build_command(out, *extra), stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def sigkill(proc: subprocess.Popen) -> int:
    os.kill(proc.pid, signal.SIGKILL)  # the build process only, as `kill -9 PID` does
    proc.wait(timeout=60)
    wait_group_gone(proc.pid)
    return proc.returncode


def kill_when(proc: subprocess.Popen, condition, timeout: float = 300) -> bool:
    """Poll every 10 ms; SIGKILL the build the moment ``condition()`` holds. False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            return sigkill(proc) == -signal.SIGKILL
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the build neither finished nor reached the kill point")


def kill_when_stopped(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Wait for the build to stop itself (SIGSTOP from the test hook), then SIGKILL it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = _proc_stat(proc.pid)
        if proc.poll() is not None:
            raise AssertionError(f"the build ended ({proc.returncode}) without reaching the hook:\n{log.read_text()}")
        if stat and stat[0] == "T":
            assert sigkill(proc) == -signal.SIGKILL
            return
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("the build did not reach the hook")


def assert_complete_tar(path: Path) -> dict[str, dict[str, bytes]]:
    """A whole tar: every member's data present, then the end-of-archive zero blocks."""
    data = path.read_bytes()
    assert len(data) % 512 == 0, path
    end = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            assert len(tar.extractfile(member).read()) == member.size, (path, member.name)
            end = member.offset_data + -(-member.size // 512) * 512
    assert end > 0 and len(data) - end >= 1024 and not any(data[end:]), f"{path} is not complete"
    samples = read_shard(path)
    for key, files in samples.items():  # no sample cut in half: every field its json lists
        assert sorted(files) == sorted(json.loads(files["json"])["fields"]), (path, key)
    return samples


def assert_nothing_half_written(out: Path) -> None:
    """After a kill: final names hold whole files only; anything else is under a temporary name."""
    shards = out / "shards"
    for path in sorted(shards.rglob("*")) if shards.exists() else []:
        if path.is_file():
            if path.name.endswith(".tar"):
                assert_complete_tar(path)
            else:
                assert path.name.endswith(".tar.tmp"), path
    if (out / "dataset.json").exists():  # written last among the versioned files: then all are whole
        json.loads((out / "dataset.json").read_text())
        assert all(line.startswith("extra file: ") and line.endswith(".tmp") for line in verify(out)), verify(out)


def resume_and_compare(out: Path, reference: Path, processed: int, *extra: str) -> None:
    run_build(out, *extra)
    assert build_info(out)["clips_processed_now"] == processed  # finished clips are not redone
    assert_same_bytes(reference, out)
    assert verify(out) == []
    assert diff_datasets(reference, out).identical


# --------------------------------------------------------------------------- byte-identical builds


@pytest.fixture(scope="module")
def rebuilt(grid_console_builds) -> dict[str, Path]:
    """The GRID samples built by the console script with 2 and 4 workers, from two source copies and
    into output folders of different names and depths (tests/conftest.py; 1 worker: test_build's build
    on an existing one-worker scheduler)."""
    return grid_console_builds


@pytest.mark.parametrize("workers", ["2", "4"])
def test_worker_counts_and_paths_give_identical_bytes(grid_dataset, rebuilt, workers):
    out = rebuilt[workers]
    assert build_info(out)["workers"] == int(workers) and build_info(out)["clips_processed_now"] == N_CLIPS
    assert_same_bytes(grid_dataset, out)
    result = CliRunner().invoke(main, ["diff", str(grid_dataset), str(out)])
    assert result.exit_code == 0 and "identical" in result.output, result.output


def _mp4_times(data: bytes) -> list[tuple[str, int, int]]:
    """(box, creation_time, modification_time) of the mvhd, tkhd and mdhd boxes of an mp4."""
    import struct

    found = []

    def walk(start: int, end: int) -> None:
        offset = start
        while offset + 8 <= end:
            size, kind = struct.unpack(">I4s", data[offset:offset + 8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", data[offset + 8:offset + 16])[0], 16
            elif size == 0:
                size = end - offset
            kind = kind.decode("latin-1")
            body = offset + header
            if kind in ("moov", "trak", "mdia"):
                walk(body, offset + size)
            elif kind in ("mvhd", "tkhd", "mdhd"):
                fmt = ">4xII" if data[body] == 0 else ">4xQQ"
                found.append((kind, *struct.unpack_from(fmt, data, body)))
            offset += size

    walk(0, len(data))
    return found


FAKE_HOST = "talkdata-fakehost-q7x2"
CLOCK_SHIFT = 3000 * 86400.0  # about eight years ahead


@pytest.fixture(scope="module")
def faked(hooks, tmp_path_factory) -> Path:
    """A build in another time zone, with SOURCE_DATE_EPOCH set, a clock eight years ahead and
    another host name (for the Python code of the build: see SITECUSTOMIZE); once per test run."""
    from conftest import shared_build

    def make(folder: Path) -> None:
        run_build(folder / "out", env=hook_env(hooks, TZ="TEST-14", SOURCE_DATE_EPOCH="86400",
                                               TALKDATA_TEST_CLOCK_SHIFT=str(CLOCK_SHIFT),
                                               TALKDATA_TEST_HOSTNAME=FAKE_HOST))

    return shared_build(tmp_path_factory, "repro-faked", make) / "out"


def test_other_time_zone_clock_and_host_give_identical_bytes(grid_dataset, faked):
    expected_year = time.gmtime(time.time() + CLOCK_SHIFT).tm_year
    info = build_info(faked)
    assert int(info["built_at"][:4]) in (expected_year, expected_year - 1)  # the fakes were in effect
    assert info["host"] == FAKE_HOST
    assert_same_bytes(grid_dataset, faked)


def _text_parts(out: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """The parts of a dataset that hold text: JSON and Markdown files, every sample's json member,
    every parquet cell and the parquet metadata."""
    texts = {name: data for name, data in files.items() if name.endswith((".json", ".md"))}
    for shard in (name for name in files if name.endswith(".tar")):
        for key, fields in read_shard(out / shard).items():
            texts[f"{shard}:{key}.json"] = fields["json"]
    for name in ("index.parquet", "rejects.parquet"):
        parquet = pq.ParquetFile(out / name)
        cells = json.dumps(parquet.read().to_pylist(), default=str)
        metadata = {k: v for k, v in (parquet.metadata.metadata or {}).items() if k != b"ARROW:schema"}
        texts[name] = (cells + repr(metadata) + str(parquet.schema_arrow) + parquet.metadata.created_by).encode()
    return texts


def _word(text: str) -> re.Pattern:
    return re.compile(rb"(?<![A-Za-z0-9_.-])" + re.escape(text.encode()) + rb"(?![A-Za-z0-9_-])")


def test_no_paths_hosts_or_timestamps_in_versioned_outputs(grid_dataset, rebuilt, faked):
    host = socket.gethostname()
    # the real host name is checked as a word in the text parts, unless the build made under another
    # host name holds that word too (a short host name such as "build" can be an ordinary word)
    faked_texts = _text_parts(faked, versioned_files(faked))
    check_host = not any(_word(host).search(data) for data in faked_texts.values())
    for out, source in ((grid_dataset, GRID), (rebuilt["4"], rebuilt["source"]), (faked, GRID)):
        built = build_info(out)["built_at"][:10]  # the day the build ran (UTC)
        days = {built, built.replace("-", ""), time.strftime("%Y-%m-%d"), time.strftime("%Y-%m-%d", time.gmtime())}
        paths = {str(p) for p in (out, out.resolve(), source, source.resolve(), Path.cwd(), Path.home())
                 if len(str(p)) > 4}  # ("/" or "/tmp" as a home folder would match anything)
        files = versioned_files(out)
        for shard in (name for name in files if name.endswith(".tar")):  # mp4 creation/modification times
            for key, fields in read_shard(out / shard).items():
                assert {kind: (c, m) for kind, c, m in _mp4_times(fields["video.mp4"])} == {
                    "mvhd": (0, 0), "tkhd": (0, 0), "mdhd": (0, 0)}, (shard, key)
        for name, data in files.items():  # anywhere in any file: paths, ISO dates, the fake host name
            for needle in paths | {d for d in days if "-" in d} | {FAKE_HOST}:
                assert needle.encode() not in data, (name, needle)
        for name, data in _text_parts(out, files).items():  # in the text parts: compact dates, the host
            for needle in days:
                assert needle.encode() not in data, (name, needle)
            assert not (check_host and _word(host).search(data)), (name, host)


def test_rebuilding_a_used_folder_leaves_nothing_of_the_old_version(grid_dataset, tmp_path):
    """A folder that held a build, rebuilt with a config under which every clip is rejected, ends
    up with the files of a fresh build of that config (it used to keep the old shape model)."""
    from talkdata.pipeline.build import build

    used = tmp_path / "used"
    shutil.copytree(grid_dataset, used, ignore=shutil.ignore_patterns(".work"))
    fresh = tmp_path / "fresh"
    for out in (used, fresh):
        build("grid", GRID, out, sets={"video.min_frames": 1000})  # 75-frame clips: too_short
    assert verify(used) == []
    strip = {name: data for name, data in versioned_files(used).items() if not name.startswith("card/")}
    assert strip == {name: data for name, data in versioned_files(fresh).items() if not name.startswith("card/")}
    assert not (used / "stats" / "shape_model.npz").exists()
    result = diff_datasets(grid_dataset, used).to_dict()
    assert {"path": "stats/shape_model.npz", "status": "removed",
            "a": json.loads((grid_dataset / "dataset.json").read_text())["artifacts"]["stats/shape_model.npz"]["sha256"],
            "b": None} in result["artifacts"]
    assert result["samples"]["counts"]["removed"] == N_CLIPS
    assert {"key": "video.min_frames", "status": "changed", "a": 8, "b": 1000} in result["config"]


# --------------------------------------------------------------------------- SIGKILL and resume


def _attempts(tmp_path: Path, tries: int = 4):
    for attempt in range(tries):
        yield tmp_path / f"attempt-{attempt}" / "out", tmp_path / f"attempt-{attempt}" / "build.log"


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["in-process", "dask-2-workers"])
def test_killed_after_the_first_clip_is_cached(grid_dataset, tmp_path, workers):
    for out, log in _attempts(tmp_path):
        proc = start_build(out, log, *workers)
        seen = []

        def first_entry() -> bool:
            seen.append(complete_entries(out))
            return seen[-1] >= 1

        # a hit: killed while clips were still being processed (packing, which starts by fitting
        # the shape model into stats/, had not begun)
        if kill_when(proc, first_entry) and seen[-1] < N_CLIPS and not (out / "stats").exists():
            break
    else:
        pytest.fail("the build was never caught between its first and last clip (4 attempts)")
    assert proc.returncode == -signal.SIGKILL
    cached = complete_entries(out)  # the clip the worker had in hand may have been finished by it
    assert 1 <= cached <= N_CLIPS
    assert not (out / "dataset.json").exists() and not (out / "shards").exists()
    assert_nothing_half_written(out)
    resume_and_compare(out, grid_dataset, N_CLIPS - cached, *workers)


def test_killed_while_packing(grid_dataset, tmp_path):
    for out, log in _attempts(tmp_path):
        proc = start_build(out, log)
        # a hit: killed before build_info.json, the last file a build writes
        if kill_when(proc, lambda: complete_entries(out) == N_CLIPS) and not (out / "build_info.json").exists():
            break
    else:
        pytest.fail("the build was never caught between caching its last clip and finishing (4 attempts)")
    assert proc.returncode == -signal.SIGKILL
    assert complete_entries(out) == N_CLIPS
    assert_nothing_half_written(out)
    resume_and_compare(out, grid_dataset, processed=0)


def test_killed_in_the_middle_of_a_shard(grid_dataset, hooks, tmp_path):
    out, log = tmp_path / "out", tmp_path / "build.log"
    fields = len(read_shard(next((grid_dataset / "shards" / "train").glob("*.tar"))).popitem()[1])
    proc = start_build(out, log, env=hook_env(hooks, TALKDATA_TEST_STOP=f"addfile:{fields + fields // 2}"))
    kill_when_stopped(proc, log)
    assert proc.returncode == -signal.SIGKILL
    assert complete_entries(out) == N_CLIPS
    train = sorted((out / "shards" / "train").iterdir())
    assert [p.name for p in train] == ["grid-train-000000.tar"]
    assert train[0].read_bytes() == (grid_dataset / "shards/train/grid-train-000000.tar").read_bytes()
    partial = sorted((out / "shards" / "val").iterdir())
    assert [p.name for p in partial] == ["grid-val-000000.tar.tmp"]  # half a shard, under its temporary name
    whole = (grid_dataset / "shards/val/grid-val-000000.tar").stat().st_size
    assert partial[0].stat().st_size < whole
    assert not (out / "shards" / "test").exists() or not any((out / "shards" / "test").iterdir())
    assert not (out / "dataset.json").exists()
    assert_nothing_half_written(out)
    resume_and_compare(out, grid_dataset, processed=0)


def test_killed_before_the_manifest_is_renamed(grid_dataset, hooks, tmp_path):
    out, log = tmp_path / "out", tmp_path / "build.log"
    proc = start_build(out, log, env=hook_env(hooks, TALKDATA_TEST_STOP="rename:dataset.json.tmp"))
    kill_when_stopped(proc, log)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "dataset.json").exists()
    assert (out / "dataset.json.tmp").read_bytes() == (grid_dataset / "dataset.json").read_bytes()
    for shard in (grid_dataset / "shards").rglob("*.tar"):  # every shard whole under its final name
        assert (out / shard.relative_to(grid_dataset)).read_bytes() == shard.read_bytes()
    assert_nothing_half_written(out)
    resume_and_compare(out, grid_dataset, processed=0)
    assert not (out / "dataset.json.tmp").exists()


# --------------------------------------------------------------------------- failed and rejected clips


def _no_face_clip(path: Path) -> Path:
    """A real GRID clip's background (top-left corner, no face) with its real speech."""
    import media_factory

    frames = (frame[:128, :96] for frame in media_factory.grid_frames())
    return media_factory.write_video(path, frames, audio=media_factory.grid_audio())


def _outcomes(out: Path) -> dict[str, str]:
    """key -> "done" or the reject reason, from the dataset's own files."""
    outcomes = {row["key"]: "done" for row in pq.read_table(out / "index.parquet").to_pylist()}
    for row in pq.read_table(out / "rejects.parquet").to_pylist():
        outcomes[row["key"]] = row["reason"]
    return outcomes


def _ledger(out: Path) -> dict[str, list[dict]]:
    """Every ledger entry (status.json) of the cache, by sample key."""
    entries: dict[str, list[dict]] = {}
    for path in sorted((out / ".work" / "clips").glob("*/*/status.json")):
        status = json.loads(path.read_text())
        entries.setdefault(status["key"], []).append(dict(status, entry=path.parent.name))
    return entries


def test_retry_failed_retries_only_failed_clips_and_rejects_stay(hooks, tmp_path):
    source = tmp_path / "videos"
    for speaker, name, origin in (("anna", "talk.mpg", GRID / "s1" / "bbaf2n.mpg"),
                                  ("bob", "talk.mpg", GRID / "s2" / "swwp2s.mpg")):
        (source / speaker).mkdir(parents=True)
        shutil.copy(origin, source / speaker / name)
    (source / "carl").mkdir()
    _no_face_clip(source / "carl" / "wall.mp4")
    out = tmp_path / "out"

    def build(*extra: str, env: dict | None = None) -> dict:
        run_build(out, *extra, source=source, recipe="videos", env=env)
        return build_info(out)

    # 1. bob's clip raises an unexpected error: recorded as failed, the build goes on
    info = build(env=hook_env(hooks, TALKDATA_TEST_FAIL_SOURCE="bob/talk.mpg"))
    assert info["clips_processed_now"] == 3
    assert _outcomes(out) == {"anna/talk": "done", "bob/talk": "failed", "carl/wall": "no_face"}
    ledger = _ledger(out)
    assert [e["status"] for e in ledger["bob/talk"]] == ["failed"]
    assert "RuntimeError: injected failure while processing bob/talk.mpg" in ledger["bob/talk"][0]["message"]
    assert [(e["status"], e["reason"]) for e in ledger["carl/wall"]] == [("rejected", "no_face")]

    # 2. a plain re-run (the error would not happen any more) keeps it failed: nothing is processed
    assert build()["clips_processed_now"] == 0
    assert _outcomes(out) == {"anna/talk": "done", "bob/talk": "failed", "carl/wall": "no_face"}
    assert _ledger(out) == ledger

    # 3. --retry-failed processes bob's clip only; the rejected clip is not retried
    assert build("--retry-failed")["clips_processed_now"] == 1
    assert _outcomes(out) == {"anna/talk": "done", "bob/talk": "done", "carl/wall": "no_face"}
    after = _ledger(out)
    assert [e["status"] for e in after["bob/talk"]] == ["done"]
    assert after["carl/wall"] == ledger["carl/wall"] and after["anna/talk"] == ledger["anna/talk"]

    # 4. a dataset-level setting (the split seed) keeps every per-clip result, rejects included
    assert build("--set", "split.seed=1")["clips_processed_now"] == 0
    assert _ledger(out) == after

    # 5. a per-clip setting changes the cache key of every clip: all are processed again, and the
    #    clip without a face is examined again (and rejected again)
    assert build("--set", "face.detect_every=5")["clips_processed_now"] == 3
    assert _outcomes(out) == {"anna/talk": "done", "bob/talk": "done", "carl/wall": "no_face"}
    final = _ledger(out)
    assert len(final["carl/wall"]) == 2 and all(e["reason"] == "no_face" for e in final["carl/wall"])


# --------------------------------------------------------------------------- verify


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete", "extra_in_shards", "extra_at_root",
                                    "flip_shape_model"])
def test_verify_names_each_kind_of_damage(grid_dataset, tmp_path, damage):
    out = tmp_path / "copy"
    shutil.copytree(grid_dataset, out, ignore=shutil.ignore_patterns(".work"))
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0
    shard = sorted((out / "shards").rglob("*.tar"))[1]
    name = shard.relative_to(out).as_posix()
    size = shard.stat().st_size
    if damage == "flip_byte":
        data = bytearray(shard.read_bytes())
        data[size // 2] ^= 0x01
        shard.write_bytes(bytes(data))
        expected = f"checksum mismatch: {name} (sha256 differs from the manifest)"
    elif damage == "truncate":
        with open(shard, "r+b") as handle:
            handle.truncate(size - 1536)
        expected = f"wrong size: {name} has {size - 1536} bytes, manifest says {size}"
    elif damage == "delete":
        shard.unlink()
        expected = f"missing: {name}"
    elif damage == "extra_in_shards":
        shutil.copy(shard, shard.with_name("grid-extra-000009.tar"))
        expected = f"extra file: {shard.parent.relative_to(out).as_posix()}/grid-extra-000009.tar"
    elif damage == "extra_at_root":
        (out / "notes.txt").write_text("hello")
        expected = "extra file: notes.txt"
    else:
        model = out / "stats" / "shape_model.npz"
        data = bytearray(model.read_bytes())
        data[-100] ^= 0x01
        model.write_bytes(bytes(data))
        expected = "checksum mismatch: stats/shape_model.npz (sha256 differs from the manifest)"
    result = CliRunner().invoke(main, ["verify", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [expected]  # that problem, named, and nothing else


# --------------------------------------------------------------------------- Ctrl-C and the parallel pack


def _group_states(pgid: int) -> list[str]:
    states = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == pgid:
                states.append(stat[0])
    return states


def test_ctrl_c_with_two_workers_loses_no_clip(grid_dataset, hooks, tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C sends) while clips are in flight
    on 2 dask workers: no clip is recorded as a reject or failure, and the same command then gives
    the bytes of an uninterrupted build. One clip is made 12 s slower, so that the interruption falls
    between the first and the last clip even on a busy machine."""
    for out, log in _attempts(tmp_path):
        proc = start_build(out, log, "--workers", "2",
                           env=hook_env(hooks, TALKDATA_TEST_SLOW_SOURCE="unknown_speaker/lbbc2a.mpg"))
        deadline = time.monotonic() + 300
        while proc.poll() is None and complete_entries(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None and complete_entries(out) < N_CLIPS:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=120)
            wait_group_gone(proc.pid)
            if complete_entries(out) < N_CLIPS:
                break
        else:
            proc.wait(timeout=300)
    else:
        pytest.fail("the build was never interrupted between its first and last clip (4 attempts)")
    assert proc.returncode != 0
    assert "Traceback" not in log.read_text()
    statuses = [json.loads(p.read_text())["status"] for p in (out / ".work" / "clips").glob("*/*/status.json")]
    assert statuses and set(statuses) == {"done"}, statuses  # an interruption is never a verdict on a clip
    cached = complete_entries(out)
    resume_and_compare(out, grid_dataset, N_CLIPS - cached, "--workers", "2")


def test_killed_during_the_parallel_pack(grid_dataset, hooks, tmp_path):
    """kill -9 of the whole build (driver and 2 dask workers) while a worker is in the middle of a
    shard: the same command resumes without processing a clip and gives the same bytes."""
    out, log = tmp_path / "out", tmp_path / "build.log"
    fields = len(read_shard(next((grid_dataset / "shards" / "train").glob("*.tar"))).popitem()[1])
    # every process stops itself before its (fields + fields/2)-th tar member: a shard worker half-way
    # through its second shard (the clip workers write no tar)
    proc = start_build(out, log, "--workers", "2",
                       env=hook_env(hooks, TALKDATA_TEST_STOP=f"addfile:{fields + fields // 2}"))
    deadline = time.monotonic() + 300
    while "T" not in _group_states(proc.pid):
        assert proc.poll() is None, f"the build ended without reaching the hook:\n{log.read_text()}"
        assert time.monotonic() < deadline, "no shard worker reached the hook"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    wait_group_gone(proc.pid)
    assert complete_entries(out) == N_CLIPS
    assert list((out / "shards").rglob("*.tar.tmp")), "no shard was half-written"
    assert not (out / "dataset.json").exists()
    assert_nothing_half_written(out)
    resume_and_compare(out, grid_dataset, 0, "--workers", "2")
