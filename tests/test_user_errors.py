"""Failures a user hits with the command line, run as a user runs it: each is one ``error:`` line with
exit status 2 and no traceback, and files talkdata did not write are left as they were.

Covers what the other CLI tests do not: a damaged dataset given to ``talkdata inspect`` (index,
shard cut short, undecodable members), ``talkdata train --out`` on a folder of someone else's files,
a recipe path that does not exist, a local push target that cannot be written, a build of another
recipe into a built folder, and a full disk while pushing or saving a training checkpoint."""

from __future__ import annotations

import hashlib
import io
import json
import resource
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from checks import error_line
from talkdata.cli import main

DATA = Path(__file__).parent / "data"
TRAIN_SHARD = "shards/train/grid-train-000000.tar"  # holds s2/swwp2s, the GRID samples' train split
KEY = "s2/swwp2s"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def replace_member(shard: Path, suffix: str, data: bytes) -> None:
    """Rewrite ``shard`` with the member ending in ``suffix`` replaced by ``data`` (a well-formed tar
    whose member bytes are damaged, as a bad copy or a bit flip leaves it)."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    assert any(m.name.endswith(suffix) for m, _ in members)
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, content in members:
            if member.name.endswith(suffix):
                content = data
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content))


@pytest.fixture
def damaged(grid_dataset, tmp_path) -> Path:
    """A copy of the GRID samples' build, for the test to damage."""
    out = tmp_path / "grid"
    shutil.copytree(grid_dataset, out)
    return out


# ----------------------------------------------------------------------------- inspect on damaged data


def test_inspect_a_garbage_index_is_one_line(damaged, tmp_path):
    (damaged / "index.parquet").write_bytes(b"not a parquet file\n")
    before = tree_digest(damaged)
    for args in ([], ["--key", KEY]):
        line = error_line(run("inspect", str(damaged), *args, "--png", str(tmp_path / "x.png")))
        assert line == (f"error: cannot read {damaged}/index.parquet (ArrowInvalid: Parquet magic bytes not found in "
                        "footer. Either the file is corrupted or this is not a parquet file.); "
                        f"run `talkdata verify {damaged}`")
    assert tree_digest(damaged) == before and not (tmp_path / "x.png").exists()


def test_inspect_a_missing_index_says_the_dataset_is_incomplete(damaged, tmp_path):
    (damaged / "index.parquet").unlink()
    line = error_line(run("inspect", str(damaged), "--png", str(tmp_path / "x.png")))
    assert line == f"error: {damaged}/index.parquet not found: the dataset is incomplete (run `talkdata verify {damaged}`)"


def test_inspect_a_shard_cut_short_is_one_line(damaged, tmp_path):
    shard = damaged / TRAIN_SHARD
    shard.write_bytes(shard.read_bytes()[:5000])  # an interrupted copy
    before = tree_digest(damaged)
    expected = (f"error: shard {TRAIN_SHARD} cannot be read (ReadError: unexpected end of data): it is truncated or "
                f"damaged; run `talkdata verify {damaged}`")
    assert error_line(run("inspect", str(damaged), "--png", str(tmp_path / "sheet.png"))) == expected
    assert error_line(run("inspect", str(damaged), "--key", KEY, "--png", str(tmp_path / "one.png"))) == expected
    assert tree_digest(damaged) == before
    assert not (tmp_path / "sheet.png").exists() and not (tmp_path / "one.png").exists()


@pytest.mark.parametrize("field, content, reason", [
    ("lmk.npy", b"garbage", "ValueError: This file contains pickled (object) data."),
    ("video.mp4", b"garbage", "InvalidDataError: [Errno 1094995529] Invalid data found when processing input"),
    ("json", b"{garbage", "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("audio.wav", b"garbage", "EOFError"),
])
def test_inspect_a_damaged_member_names_shard_sample_and_member(damaged, tmp_path, field, content, reason):
    replace_member(damaged / TRAIN_SHARD, f".{field}", content)
    before = tree_digest(damaged)
    head = f"error: shard {TRAIN_SHARD}, sample {KEY}: {field} cannot be decoded ({reason}"
    tail = f"); the shard is damaged - run `talkdata verify {damaged}`"
    outputs = [["--key", KEY, "--png", str(tmp_path / "one.png")]]
    if field in ("video.mp4", "lmk.npy"):  # what the contact sheet reads
        outputs.append(["--png", str(tmp_path / "sheet.png")])
    if field == "video.mp4":
        outputs.append(["--key", KEY, "--html", str(tmp_path / "one.html")])
    for args in outputs:
        line = error_line(run("inspect", str(damaged), *args))
        assert line.startswith(head) and line.endswith(tail), line
    assert tree_digest(damaged) == before
    assert not any((tmp_path / name).exists() for name in ("one.png", "sheet.png", "one.html"))
    # verify finds the same damage (exit 1, the shard's checksum)
    verify = run("verify", str(damaged))
    assert verify.exit_code == 1 and f"{TRAIN_SHARD}" in verify.output


# ----------------------------------------------------------------------------- train --out


SMALL_ATNET = ["--set", "channels=4", "--set", "fc=64", "--set", "audio_dim=32", "--set", "example_dim=32",
               "--set", "hidden=32", "--set", "layers=1", "--set", "batch_size=4", "--set", "threads=1"]


def refused_run_folder(folder: Path) -> str:
    return (f"error: --out {folder} is not empty and holds no talkdata training run (no config.json of a run); "
            "give a new or empty folder: a run writes config.json, metrics.csv, metrics.json and checkpoint.pt there")


def test_train_never_writes_into_a_folder_of_other_files(grid_dataset, tmp_path):
    pytest.importorskip("torch", reason="the training loops need the train extra (torch)")
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "config.json").write_text('{"learning_rate": 0.1}\n')  # the user's own files, with a run's names
    (mine / "metrics.csv").write_text("epoch,acc\n1,0.5\n")
    before = tree_digest(mine)
    line = error_line(run("train", "atnet", "--data", str(grid_dataset), "--steps", "1", "--out", str(mine),
                          "--no-progress", *SMALL_ATNET))
    assert line == refused_run_folder(mine)
    assert tree_digest(mine) == before


def test_train_into_the_dataset_folder_is_refused_and_the_dataset_still_verifies(damaged):
    pytest.importorskip("torch", reason="the training loops need the train extra (torch)")
    before = tree_digest(damaged)
    line = error_line(run("train", "atnet", "--data", str(damaged), "--steps", "1", "--out", str(damaged),
                          "--no-progress", *SMALL_ATNET))
    assert line == refused_run_folder(damaged)
    assert tree_digest(damaged) == before
    assert run("verify", str(damaged)).exit_code == 0


def test_train_takes_an_empty_folder(grid_dataset, tmp_path):
    pytest.importorskip("torch", reason="the training loops need the train extra (torch)")
    empty = tmp_path / "made-for-the-run"
    empty.mkdir()
    result = run("train", "atnet", "--data", str(grid_dataset), "--steps", "1", "--out", str(empty), "--no-progress",
                 "--set", "eval_splits=none", *SMALL_ATNET)
    assert result.exit_code == 0, result.output
    assert json.loads((empty / "config.json").read_text())["loop"] == "atnet"


# ----------------------------------------------------------------------------- recipes, push


@pytest.mark.parametrize("command", [["recipes"], ["build"]])
def test_a_recipe_file_that_does_not_exist_is_named(tmp_path, command):
    missing = tmp_path / "my-corpus.toml"
    extra = ["--source", str(DATA / "grid"), "--out", str(tmp_path / "out")] if command == ["build"] else []
    line = error_line(run(*command, str(missing), *extra))
    assert line == (f"error: recipe file {missing} not found (a bundled recipe is named without .toml: crema-d, grid, "
                    "lrw, talkinghead-1kh, videos, voxceleb2)")
    assert not (tmp_path / "out").exists()


def test_push_to_a_local_folder_that_cannot_be_written_blames_the_folder_not_credentials(grid_dataset):
    target = Path("/sys/talkdata-test-push")  # sysfs refuses new folders even to root
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs a read-only file system at /sys to make an unwritable folder (tests may run as root)")
    line = error_line(run("push", str(grid_dataset), str(target)))
    assert line.startswith(f"error: access denied to {target}/.talkdata-push.json: [Errno ")
    assert "credentials" not in line and "--storage-option" not in line


# ----------------------------------------------------------------------------- one dataset per output folder


def test_building_another_recipe_into_a_built_folder_is_refused_before_any_clip(damaged):
    before = tree_digest(damaged)  # the cache in .work too: nothing is indexed, processed or written
    line = error_line(run("build", "crema-d", "--source", str(DATA / "crema_d"), "--out", str(damaged),
                          "--no-progress"))
    assert line == (f"error: --out {damaged} holds the grid dataset; build crema-d into another folder (one dataset "
                    "per output folder)")
    assert tree_digest(damaged) == before


# ----------------------------------------------------------------------------- a full disk


def limited_run(args: list[str], max_file_bytes: int | None) -> subprocess.CompletedProcess:
    """``python -m talkdata.cli ARGS`` as a user runs it; with ``max_file_bytes``, a write past that many
    bytes fails with EFBIG, which is what a full disk looks like to the program."""
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run([sys.executable, "-m", "talkdata.cli", *args], capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_file_size if max_file_bytes else None)


def only_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_push_to_a_full_disk_says_so_and_the_same_command_resumes(grid_dataset, tmp_path):
    target = tmp_path / "published"
    args = ["--quiet", "push", str(grid_dataset), str(target)]
    before = tree_digest(grid_dataset)
    line = only_line(limited_run(args, 100_000))  # the shards and the contact sheet are larger
    assert line.startswith(f"error: no space left while writing {target}/"), line
    assert line.endswith(" (File too large); free space and run the same command again to resume (files already "
                         "pushed are kept)"), line
    assert not (target / "dataset.json").exists()  # readers see no dataset until the push finishes
    resumed = limited_run(args, None)
    assert resumed.returncode == 0, resumed.stderr
    assert "already there" in resumed.stdout
    assert run("verify", str(target)).exit_code == 0
    assert tree_digest(grid_dataset) == before


def test_train_with_a_full_disk_at_the_checkpoint_is_one_line_and_runs_again(grid_dataset, tmp_path):
    pytest.importorskip("torch", reason="the training loops need the train extra (torch)")
    out = tmp_path / "run"
    args = ["--quiet", "train", "atnet", "--data", str(grid_dataset), "--steps", "1", "--out", str(out),
            "--no-progress", "--set", "eval_splits=none", *SMALL_ATNET]
    line = only_line(limited_run(args, 100_000))  # config.json and metrics fit, the 1 MB checkpoint does not
    assert line.startswith(f"error: cannot write the checkpoint {out}/checkpoint.pt ("), line
    assert line.endswith("); is the disk full? free space and run the same command again (it resumes from the last "
                         "checkpoint written)"), line
    assert not (out / "checkpoint.pt").exists() and not (out / "checkpoint.pt.partial").exists()
    again = limited_run(args, None)
    assert again.returncode == 0, again.stderr
    assert (out / "checkpoint.pt").stat().st_size > 100_000


# ----------------------------------------------------------------------------- build: where it reads and runs


def test_a_source_url_is_refused_with_what_to_do(tmp_path):
    line = error_line(run("build", "grid", "--source", "s3://bucket/grid", "--out", str(tmp_path / "out")))
    assert line == ("error: --source s3://bucket/grid: a build reads a local folder (every clip is decoded from it); "
                    "copy or mount the corpus there first, or leave out --source to download it into the data root")
    assert not (tmp_path / "out").exists()


def test_a_scheduler_address_that_is_not_dask_fails_instead_of_hanging(tmp_path):
    """An HTTP server (what the dashboard's port 8787 is) accepts the connection and never answers
    dask's handshake; distributed's Client then waits forever."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.server_address[1]}"
    try:
        result = run("build", "grid", "--source", str(DATA / "grid"), "--out", str(tmp_path / "out"), "--no-progress",
                     "--scheduler", address)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert error_line(result) == (f"error: no dask scheduler answered at {address} within 15 s: give the scheduler's "
                                  "address (tcp://HOST:8786 by default; 8787 is its dashboard)")


# ----------------------------------------------------------------------------- inspect: where it writes


def test_inspect_output_below_a_file_names_the_file(grid_dataset, tmp_path):
    blocker = tmp_path / "figures"
    blocker.write_text("my notes\n")
    for png in (blocker / "sheet.png", blocker / "deeper" / "sheet.png"):
        line = error_line(run("inspect", str(grid_dataset), "--png", str(png)))
        assert line == f"error: cannot write {png}: {blocker} is a file, not a folder"
    assert blocker.read_text() == "my notes\n"


# ----------------------------------------------------------------------------- options in the wrong place


@pytest.mark.parametrize("args, option, command", [
    (["verify", "OUT", "--quiet"], "--quiet", "verify"),
    (["build", "grid", "--source", "SRC", "--out", "OUT", "-v"], "-v", "build"),
    (["train", "atnet", "--verbose"], "--verbose", "train"),
    (["inspect", "OUT", "-q", "--png", "x.png"], "-q", "inspect"),
])
def test_quiet_or_verbose_after_the_command_says_where_it_goes(args, option, command):
    line = error_line(run(*args))
    assert line == f"error: {option} comes before the command name: talkdata {option} {command} ..."


# ----------------------------------------------------------------------------- an output folder that cannot be written


def _unwritable_output_steps(base: Path) -> list[dict]:
    """Build, then make the clip cache and then the shards folder read-only under the next builds, then
    resume: each step's exit code and output (run in this process, as the user the caller chose)."""
    source, out = base / "videos", base / "out"
    args = ["--quiet", "build", "videos", "--source", str(source), "--out", str(out), "--no-isolation"]
    steps = []

    def build() -> None:
        result = run(*args)
        steps.append({"code": result.exit_code, "output": result.output,
                      "error": repr(result.exception) if result.exit_code not in (0, 2) else ""})

    build()
    if steps[0]["code"] != 0:
        return steps
    (source / "bob").mkdir()
    shutil.copy(DATA / "grid" / "s2" / "swwp2s.mpg", source / "bob" / "clip.mpg")
    clips = out / ".work" / "clips"
    clips.chmod(0o555)
    build()
    clips.chmod(0o755)
    (out / "shards").chmod(0o555)  # the new clip is processed now; the old shards cannot be moved aside
    build()
    (out / "shards").chmod(0o755)
    build()
    steps.append({"code": run("verify", str(out)).exit_code, "output": "", "error": ""})
    return steps


def test_an_output_folder_that_turns_unwritable_is_one_line_and_resumes():
    """Permissions that change under a build (a shared folder, another user's OUT): the clip cache, then
    the shards folder, refuse writes. Root writes anywhere, so as root the steps run in a forked child
    that is nobody, in a folder of their own."""
    import os
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="talkdata-permissions-"))
    try:
        base.chmod(0o755)
        (base / "videos" / "anna").mkdir(parents=True)
        shutil.copy(DATA / "grid" / "s1" / "bbaf2n.mpg", base / "videos" / "anna" / "clip.mpg")
        if os.geteuid() != 0:
            steps = _unwritable_output_steps(base)
        else:
            # the same build and verify once as root first: nobody may not be able to enter the folder the
            # Python install is in, so every module the steps use is imported before the fork
            warm = base / "warm-up"
            assert run("--quiet", "build", "videos", "--source", str(base / "videos"), "--out", str(warm),
                       "--no-isolation").exit_code == 0
            assert run("verify", str(warm)).exit_code == 0
            shutil.rmtree(warm)
            import encodings.cp437  # noqa: F401 - zip member names (a rebuild reads the shape model's npz)
            for path in [base, *base.rglob("*")]:
                os.chown(path, 65534, 65534)
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: nobody, reports its steps as JSON and leaves without cleanup
                try:
                    os.close(read)
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    os.environ["HOME"] = str(base)
                    report = _unwritable_output_steps(base)
                except BaseException:  # noqa: BLE001 - said to the parent, which fails the test with it
                    import traceback

                    report = [{"code": -1, "output": traceback.format_exc(), "error": "child crashed"}]
                finally:
                    with os.fdopen(write, "wb") as pipe:
                        pipe.write(json.dumps(report).encode())
                    os._exit(0)
            os.close(write)
            with os.fdopen(read, "rb") as pipe:
                report = pipe.read()
            os.waitpid(pid, 0)
            steps = json.loads(report)
        if "No module named" in steps[0]["error"]:
            pytest.skip(f"nobody cannot import what this Python has not loaded yet: {steps[0]['error']}")
        out = base / "out"
        assert [step["code"] for step in steps] == [0, 2, 2, 0, 0], steps
        for failed in steps[1:3]:
            assert "Traceback" not in failed["output"] and failed["output"].count("\n") == 1, failed
        line = steps[1]["output"].strip()
        assert line.startswith(f"error: cannot write {out}/.work/clips/"), line
        assert line.endswith(" in the output folder (Permission denied); fix its permissions (or its file system) and "
                             "run the same command again to resume (finished clips are kept)"), line
        assert steps[2]["output"].strip() == (
            f"error: cannot move {out}/shards to {out}/.work/previous-shards (Permission denied); fix the permissions "
            "(or the file system's) and run the same command again")
        assert "clips seen: 2" in steps[3]["output"]
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)


# ----------------------------------------------------------------------------- a corpus's metadata files


def crema_source(tmp_path: Path, demographics: bytes) -> Path:
    source = tmp_path / "crema"
    shutil.copytree(DATA / "crema_d", source)
    (source / "VideoDemographics.csv").write_bytes(demographics)
    return source


def test_crema_d_demographics_not_utf8_is_named(tmp_path):
    source = crema_source(tmp_path, b"\xff\xfeActorID,Age\n")  # saved as UTF-16 by a spreadsheet, say
    line = error_line(run("build", "crema-d", "--source", str(source), "--out", str(tmp_path / "out")))
    assert line == (f"error: {source}/VideoDemographics.csv: not UTF-8 text (byte 0xff at offset 0); restore the "
                    "corpus's own file (download or extract it again)")


def test_crema_d_demographics_without_its_columns_is_named(tmp_path):
    source = crema_source(tmp_path, b"ActorID;Age;Sex\n1001;51;Male\n")  # re-saved with semicolons
    line = error_line(run("build", "crema-d", "--source", str(source), "--out", str(tmp_path / "out")))
    assert line == (f"error: {source}/VideoDemographics.csv: no column ActorID, Age, Sex, Race, Ethnicity (its header: "
                    "'ActorID;Age;Sex'); expected the CREMA-D file with columns ActorID, Age, Sex, Race, Ethnicity")


def test_vox2_meta_not_utf8_is_named(tmp_path):
    source = tmp_path / "VoxCeleb2"
    clip = source / "dev" / "mp4" / "id00012" / "21Uxsk56VDQ" / "00001.mp4"
    clip.parent.mkdir(parents=True)
    shutil.copy(DATA / "voxceleb2_like" / "00002.mp4", clip)
    (source / "vox2_meta.csv").write_bytes((DATA / "voxceleb2_like" / "vox2_meta.csv").read_bytes()[:40] + b"\xe9t\xe9\n")
    line = error_line(run("build", "voxceleb2", "--source", str(source), "--out", str(tmp_path / "out")))
    assert line == (f"error: {source}/vox2_meta.csv: not UTF-8 text (byte 0xe9 at offset 40); restore the corpus's "
                    "own file (download or extract it again)")  # the offset in the file, its byte order mark included


def test_a_recipe_not_utf8_after_a_byte_order_mark_names_the_right_byte(tmp_path):
    recipe = tmp_path / "mine.toml"
    text = (Path(__file__).parents[1] / "recipes" / "grid.toml").read_bytes()
    recipe.write_bytes(b"\xef\xbb\xbf" + text.replace(b'title = "', b'title = "Caf\xe9 ', 1))
    offset = 3 + text.index(b'title = "') + len(b'title = "Caf')
    line = error_line(run("recipes", str(recipe)))
    assert line == f"error: {recipe}: not UTF-8 text (byte 0xe9 at offset {offset}); save the recipe as UTF-8"
    assert recipe.read_bytes()[offset] == 0xE9
