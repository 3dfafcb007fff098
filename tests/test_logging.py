"""What talkdata prints: ``--quiet``, ``--verbose`` and ``--no-progress`` on the command line, and
nothing at all from library use until the program configures ``logging``.

Downloads run against the loopback server of ``tests/http_fixture.py`` serving the real GRID sample
clips at Zenodo's paths (as in ``test_download.py``); a recipe md5 that the fixture archive does not
match gives a warning (no checksum list) followed by an ``error:`` line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import http_fixture as hf
from talkdata.acquire import http
from talkdata.acquire.download import download
from talkdata.cli import main
from talkdata.recipe import load_recipe

from checks import private_home

DATA = Path(__file__).parent / "data"
ZENODO = "/records/3625687/files/{}?download=1"
ZENODO_API = "/api/records/3625687"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    return private_home(tmp_path, monkeypatch)


def serve_grid(srv: hf.FixtureServer, checksum_list: bool = True) -> dict[str, bytes]:
    """GRID speaker s1 and the alignments (returned by name); without ``checksum_list`` the record API
    answers 404."""
    grid = DATA / "grid"
    files = {"s1.zip": hf.zip_bytes({"s1/bbaf2n.mpg": (grid / "s1" / "bbaf2n.mpg").read_bytes()}),
             "alignments.zip": hf.zip_bytes({
                 "alignments/s1/bbaf2n.align": (grid / "alignments" / "s1" / "bbaf2n.align").read_bytes()})}
    for name, data in files.items():
        srv.add(ZENODO.format(name), data)
    if checksum_list:
        record = {"files": [{"key": name, "size": len(data), "checksum": "md5:" + hf.md5(data)}
                            for name, data in files.items()]}
        srv.add(ZENODO_API, json.dumps(record).encode(), content_type="application/json")
    return files


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def is_checksum_warning(line: str, url: str) -> bool:
    return (line.startswith(f"note: could not read the checksums from {url}{ZENODO_API} (") and "HTTP 404" in line
            and line.endswith("); using the values in the recipe"))


def test_quiet_hides_messages_and_progress_bars_but_not_the_result(tmp_path, monkeypatch):
    with hf.FixtureServer() as srv:
        served = serve_grid(srv)
        loud = cli("download", "grid", "--only", "s1", "--mirror", srv.url)
        assert loud.exit_code == 0, loud.output
        # by default: the info line, and tqdm's bars (carriage returns) for the transfer and each extraction
        assert f"grid: downloading 2 file(s)" in loud.stderr and "\r" in loud.stderr
        assert "extract s1.zip" in loud.stderr
        assert "extracted: s1.zip (1 files), alignments.zip (1 files)" in loud.stdout

        monkeypatch.setenv("TALKDATA_HOME", str(tmp_path / "second"))
        quiet = cli("--quiet", "download", "grid", "--only", "s1", "--mirror", srv.url)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    # the result is printed all the same (the transfer rate aside)
    untimed = [re.sub(r" in [0-9.]+ s, .*", "", line) for line in lines(loud.stdout)]
    assert [re.sub(r" in [0-9.]+ s, .*", "", line) for line in lines(quiet.stdout)] == [
        line.replace(str(tmp_path / "talkdata-home"), str(tmp_path / "second")) for line in untimed]
    total = sum(len(data) for data in served.values())  # the bytes the server sent, in kB (1000 bytes)
    assert f"downloaded: 2 file(s), {total / 1000:.1f} kB" in untimed
    extracted = tmp_path / "second" / "grid" / "s1" / "bbaf2n.mpg"
    assert extracted.read_bytes() == (DATA / "grid" / "s1" / "bbaf2n.mpg").read_bytes()


def test_quiet_still_prints_warnings_and_the_error_line():
    with hf.FixtureServer() as srv:
        serve_grid(srv, checksum_list=False)  # the recipe's md5 of the real s1.zip: the fixture zip fails it
        loud = cli("download", "grid", "--only", "s1", "--mirror", srv.url)
        quiet = cli("-q", "download", "grid", "--only", "s1", "--mirror", srv.url)
    assert loud.exit_code == quiet.exit_code == 2
    assert "grid: downloading 2 file(s)" in loud.stderr
    warning, error = lines(quiet.stderr)
    assert is_checksum_warning(warning, srv.url)
    assert error.startswith("error: checksum mismatch for s1.zip: expected md5 cbd6556668f061b5c3681bc722659b39")
    assert warning in lines(loud.stderr) and error.split(";")[0] in loud.stderr
    assert quiet.stdout == ""


def test_no_progress_hides_only_the_bars():
    with hf.FixtureServer() as srv:
        serve_grid(srv)
        result = cli("download", "grid", "--only", "s1", "--mirror", srv.url, "--no-progress")
    assert result.exit_code == 0, result.output
    assert lines(result.stderr) == [f"grid: downloading 2 file(s), {lines(result.stderr)[0].split(', ')[1]}"]
    assert "\r" not in result.stderr and "extract" not in result.stderr


def test_verbose_adds_debug_messages(home):
    with hf.FixtureServer() as srv:
        serve_grid(srv)
        verbose = cli("--verbose", "download", "grid", "--only", "s1", "--mirror", srv.url, "--no-progress")
        again = cli("download", "grid", "--only", "s1", "--mirror", srv.url, "--no-progress")
        again_verbose = cli("-v", "download", "grid", "--only", "s1", "--mirror", srv.url)
    assert verbose.exit_code == again.exit_code == again_verbose.exit_code == 0, verbose.output
    debug = lines(verbose.stderr)
    assert f"grid: 2 unit(s) planned in {home / 'grid'}, 2 not extracted yet" in debug
    assert f"s1.zip: fetching {srv.url}{ZENODO.format('s1.zip')}" in debug
    assert f"alignments.zip: fetching {srv.url}{ZENODO.format('alignments.zip')}" in debug
    assert any(line.startswith("grid: downloading 2 file(s)") for line in debug)  # info is kept
    # without --verbose the same run says nothing on stderr; with it, the plan line
    assert again.stderr == ""
    assert lines(again_verbose.stderr) == [f"grid: 2 unit(s) planned in {home / 'grid'}, 0 not extracted yet"]
    assert again.stdout == again_verbose.stdout and "already complete: s1.zip, alignments.zip" in again.stdout


def test_quiet_and_verbose_together_is_one_error_line():
    result = cli("--quiet", "--verbose", "recipes")
    assert result.exit_code == 2
    assert lines(result.output) == ["error: --quiet and --verbose cannot be used together"]


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (click's runner swaps it in)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def test_the_cli_prints_each_message_once_and_leaves_logging_as_it_found_it(home):
    root = logging.getLogger("talkdata")
    before = (list(root.handlers), root.level, root.propagate, logging.getLogger("talkdata.progress").level)
    assert [type(h) for h in root.handlers] == [logging.NullHandler]
    elsewhere = StderrHandler()  # another library's handler on the root logger
    logging.getLogger().addHandler(elsewhere)
    try:
        result = cli("-v", "download", "grid", "--only", "s1", "--dry-run")
    finally:
        logging.getLogger().removeHandler(elsewhere)
    assert result.exit_code == 0, result.output
    assert lines(result.stderr) == [f"grid: 2 unit(s) planned in {home / 'grid'}, 2 not extracted yet"]
    assert cli("recipes", "grid", "--no-progress").exit_code == 2  # an error line, then the same clean-up
    assert (list(root.handlers), root.level, root.propagate, logging.getLogger("talkdata.progress").level) == before


LIBRARY_USE = """
import sys
from talkdata.acquire import http
from talkdata.acquire.download import download
from talkdata.recipe import load_recipe

try:
    download(load_recipe("grid"), ["s1"], sys.argv[1])
except http.VerificationError:
    sys.exit(3)
"""


def test_library_use_prints_nothing(tmp_path):
    """A program that imports talkdata and configures no logging: no message, no warning, no bar."""
    env = {**os.environ, "TALKDATA_HOME": str(tmp_path / "home"), "NETRC": str(tmp_path / "no-netrc")}
    with hf.FixtureServer() as srv:
        serve_grid(srv, checksum_list=False)  # a warning, then the checksum mismatch
        failing = subprocess.run([sys.executable, "-c", LIBRARY_USE, srv.url], capture_output=True, text=True,
                                 env=env, timeout=120)
        serve_grid(srv)  # now it downloads and extracts (behind progress bars on the command line)
        working = subprocess.run([sys.executable, "-c", LIBRARY_USE, srv.url], capture_output=True, text=True,
                                 env=env, timeout=120)
    assert (failing.returncode, failing.stdout, failing.stderr) == (3, "", "")
    assert (working.returncode, working.stdout, working.stderr) == (0, "", "")
    assert (tmp_path / "home" / "grid" / "s1" / "bbaf2n.mpg").is_file()


def test_library_messages_reach_the_programs_logging(capfd, caplog, tmp_path, monkeypatch):
    recipe = load_recipe("grid")
    with hf.FixtureServer() as srv:
        serve_grid(srv, checksum_list=False)
        with pytest.raises(http.VerificationError, match="checksum mismatch for s1.zip"):
            download(recipe, ["s1"], srv.url)
        out, err = capfd.readouterr()
        assert (out, err) == ("", "")  # no progress bar: INFO is not enabled
        (warning,) = [r for r in caplog.records if r.name.startswith("talkdata")]  # warnings reach root's handlers
        assert warning.levelname == "WARNING" and is_checksum_warning(warning.getMessage(), srv.url)

        caplog.clear()
        serve_grid(srv)
        home = tmp_path / "second"
        monkeypatch.setenv("TALKDATA_HOME", str(home))
        caplog.set_level(logging.INFO, logger="talkdata")  # the program asks for talkdata's messages
        report = download(recipe, ["s1"], srv.url)
    assert report.extracted == ["s1.zip (1 files)", "alignments.zip (1 files)"]
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("talkdata")]
    assert records[0][:2] == ("talkdata.acquire.download", "INFO")
    assert records[0][2].startswith("grid: downloading 2 file(s)") and records[0][2].endswith(f"into {home / 'grid'}")
    out, err = capfd.readouterr()
    assert out == "" and "extract s1.zip" in err  # progress bars come with the INFO messages, on stderr


def test_training_follows_quiet_and_verbose(grid_dataset, tmp_path):
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    args = ["train", "facial-pose", "--data", str(grid_dataset), "--steps", "3", "--set", "threads=1"]
    loud = cli(*args, "--out", str(tmp_path / "loud"))
    quiet = cli("--quiet", *args, "--out", str(tmp_path / "quiet"))
    verbose = cli("--verbose", *args, "--out", str(tmp_path / "verbose"), "--no-progress",
                  "--set", "checkpoint_every=1")
    assert loud.exit_code == quiet.exit_code == verbose.exit_code == 0, loud.output + quiet.output + verbose.output
    # by default: the config, the bar with the loss, the evaluation lines; the summary on stdout
    assert f"config (saved to {tmp_path / 'loud' / 'config.json'}):" in loud.stderr
    assert "3/3" in loud.stderr and "loss=" in loud.stderr and "step 3 val: " in loud.stderr
    assert quiet.stderr == ""
    assert quiet.stdout == loud.stdout.replace(str(tmp_path / "loud"), str(tmp_path / "quiet")) != ""  # same seed
    # --verbose adds the checkpoint lines; --no-progress prints the loss lines instead of the bar
    debug = lines(verbose.stderr)
    assert f"step 1: saved {tmp_path / 'verbose' / 'checkpoint.pt'}" in debug
    assert f"step 2: saved {tmp_path / 'verbose' / 'checkpoint.pt'}" in debug
    assert any(line.startswith("step 3/3 loss ") for line in debug) and "loss=" not in verbose.stderr
    assert not any("saved" in line and "step" in line for line in lines(loud.stderr))


def test_build_follows_verbose_and_quiet(tmp_path):
    out = tmp_path / "out"
    args = ["build", "grid", "--source", str(DATA / "grid"), "--out", str(out), "--limit", "1"]
    verbose = cli("--verbose", *args, "--no-progress")
    assert verbose.exit_code == 0, verbose.output
    assert f"grid: 1 clips indexed in {DATA / 'grid'}, 1 to process into {out}" in lines(verbose.stderr)
    assert "\r" not in verbose.stderr
    again = cli("--quiet", *args)  # everything is cached: nothing to process, nothing to say
    assert again.exit_code == 0, again.output
    assert again.stderr == "" and again.stdout == verbose.stdout != ""
