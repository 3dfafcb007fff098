"""Four rough edges a user met: what Ctrl-C says, an EOFError from a command, a malformed GRID
alignment, and a second recipe built into a folder whose first build stopped before its manifest."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from talkdata.cli import main

DATA = Path(__file__).parent / "data"


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


# --------------------------------------------------------------------------- Ctrl-C


class _HoldingServer:
    """HTTP on 127.0.0.1 that answers no request: each one waits until the test lets it go, so the
    command is certainly in the middle of its work (waiting for the store) when Ctrl-C reaches it."""

    def __init__(self):
        self.arrived, self.release = threading.Event(), threading.Event()
        outer = self

        class Hold(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's names
                outer.arrived.set()
                outer.release.wait(120)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hold)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def holding_server():
    server = _HoldingServer()
    yield server
    server.close()


@pytest.mark.parametrize("command, expected", [
    ("verify", "interrupted"),
    ("inspect", "interrupted"),
    ("download", "interrupted; run the same command again to resume"),
])
def test_ctrl_c_says_resume_only_for_a_command_that_resumes(holding_server, tmp_path, command, expected):
    """SIGINT (a terminal's Ctrl-C) while the command waits for its store: verify and inspect have
    nothing to resume, download keeps its verified files and resumes."""
    url = f"{holding_server.url}/dataset"
    args = {"verify": ["verify", url],
            "inspect": ["inspect", url, "--png", str(tmp_path / "sheet.png")],
            "download": ["download", "grid", "--only", "s1", "--mirror", holding_server.url, "--no-progress"]}[command]
    env = dict(os.environ, TALKDATA_HOME=str(tmp_path / "home"), NETRC=str(tmp_path / "no-netrc"))
    proc = subprocess.Popen([sys.executable, "-m", "talkdata.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert holding_server.arrived.wait(240), "the command never reached the store"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.splitlines() == [expected]
    assert out == ""
    assert not (tmp_path / "sheet.png").exists()


# --------------------------------------------------------------------------- EOFError


@pytest.mark.parametrize("damage, reason", [
    ("empty", "EOFError: No data left in file"),
    ("cut in half", "BadZipFile: File is not a zip file"),
])
def test_a_damaged_shape_model_in_the_dataset_is_one_line_naming_it(grid_dataset, tmp_path, damage, reason):
    """`talkdata train atnet` reads the dataset's stats/shape_model.npz: empty (an interrupted copy) it
    was click's "Aborted!" with exit 1 (an EOFError), cut in half a traceback."""
    data = tmp_path / "grid"
    shutil.copytree(grid_dataset, data)
    model = data / "stats" / "shape_model.npz"
    model.write_bytes(b"" if damage == "empty" else model.read_bytes()[: model.stat().st_size // 2])
    size = model.stat().st_size
    result = cli("train", "atnet", "--data", str(data), "--steps", "1", "--no-progress",
                      "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: cannot read {model} ({reason}; {size} bytes): the file is truncated or damaged; "
        f"run `talkdata verify {data}`"]
    assert "Aborted" not in result.output


def test_an_eof_error_from_a_command_is_one_error_line(grid_dataset, tmp_path, monkeypatch):
    """Any other EOFError a command lets through (here numpy reading an empty .npy file) is one line
    and exit 2, not click's "Aborted!" and exit 1."""
    import talkdata.manifest

    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    monkeypatch.setattr(talkdata.manifest, "verify", lambda *args, **kwargs: np.load(empty))
    result = cli("verify", str(grid_dataset))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: unexpected end of data (No data left in file): a file this command read is empty or truncated"]


# --------------------------------------------------------------------------- GRID alignments


def grid_records(source: Path) -> dict[str, dict]:
    from talkdata.config import resolve
    from talkdata.corpora import grid
    from talkdata.recipe import load_recipe

    recipe = load_recipe("grid")
    config = resolve(recipe.defaults, recipe.name, {})
    return {f"{r.speaker}/{r.clip}": r.meta for r in grid.index(source, config)}


@pytest.mark.parametrize("text, line, shown", [
    ("this is not\nan alignment\n", 1, "'this is not'"),  # three tokens, not numbers: was a traceback
    ("0 23750 sil\nnot aligned\n23750 29500 bin\n", 2, "'not aligned'"),  # was skipped: words [bin]
    ("garbage garbage\n\x00\x01 junk\n", 1, "'garbage garbage'"),  # was words []
    ("", None, None),  # an empty file: was words []
])
def test_a_malformed_grid_alignment_keeps_the_clip_without_words_and_says_so_once(tmp_path, caplog, text, line,
                                                                                   shown):
    source = tmp_path / "grid"
    shutil.copytree(DATA / "grid", source)
    align = source / "alignments" / "s1" / "bbaf2n.align"
    good = grid_records(source)["s1/bbaf2n"]
    align.write_text(text)
    with caplog.at_level(logging.WARNING, logger="talkdata"):
        records = grid_records(source)
    meta = records["s1/bbaf2n"]
    assert meta["words"] is None and meta["alignment"] is None
    assert meta["transcript"] == good["transcript"] == "bin blue at f two now"
    assert records["s2/swwp2s"]["words"]  # the other speaker's alignment is read as before
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    problem = f"line {line} is not 'start end word': {shown}" if line else "holds no 'start end word' line"
    assert warnings == [f"GRID alignment {align} {problem}; the clip keeps its transcript, without word timings "
                        "(words: null)"]


def test_a_well_formed_grid_alignment_gives_words_in_seconds(tmp_path):
    meta = grid_records(DATA / "grid")["s1/bbaf2n"]
    assert meta["alignment"] == "alignments/s1/bbaf2n.align"
    assert [w["word"] for w in meta["words"]] == ["bin", "blue", "at", "f", "two", "now"]
    assert (meta["words"][0]["start"], meta["words"][0]["end"]) == (23750 / 25000, 29500 / 25000)


# --------------------------------------------------------------------------- another recipe in a stopped build's folder


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def stopped_grid_build(tmp_path, monkeypatch) -> Path:
    """OUT of a GRID build whose clips all ran, stopped (Ctrl-C) before packing: no dataset.json."""
    import talkdata.pipeline.build as build_module

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(build_module, "pack", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            build_module.build("grid", DATA / "grid", out)
    assert not (out / "dataset.json").exists() and (out / ".work" / "clips").is_dir()
    return out


def test_another_recipe_is_refused_before_indexing_when_the_first_build_stopped(stopped_grid_build):
    out = stopped_grid_build
    before = tree(out)
    result = cli("build", "crema-d", "--source", str(DATA / "crema_d"), "--out", str(out), "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: --out {out} holds the grid dataset; build crema-d into another folder (one dataset per output folder)"]
    assert tree(out) == before  # nothing indexed, processed or stored

    # the stopped build itself resumes: every clip is cached, only the pack runs
    result = cli("build", "grid", "--source", str(DATA / "grid"), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert '"clips_processed_now":0' in (out / "build_info.json").read_text().replace(" ", "")


def test_a_marker_without_a_recipe_is_read_as_before(stopped_grid_build):
    """Markers written before they recorded the recipe: the folder is still talkdata's, and the recipe
    is not known before the manifest (the check happens where it did)."""
    from talkdata.pipeline.build import MARKER, WORK_DIR, check_same_dataset, is_talkdata_output, marked_recipe

    out = stopped_grid_build
    marker = out / WORK_DIR / MARKER
    assert marked_recipe(out) == "grid"
    marker.write_bytes(b"This folder is the output of a talkdata build.\n")
    assert is_talkdata_output(out) and marked_recipe(out) is None
    check_same_dataset(out, "crema-d")  # no refusal here, as before
    assert marker.read_bytes() == b"This folder is the output of a talkdata build.\n"
