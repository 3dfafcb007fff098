"""The ``talkdata`` process ends with its command's status even when a native library aborts at teardown.

Arrow's thread pools can abort in C++ static destructors after a command has finished ("terminate called
without an active exception", apache/arrow#34314): seen as ``talkdata verify`` exiting 134 under load
with its "ok" line printed. The stand-in for such a library here is C's ``abort`` registered as a C-level
exit handler with ``on_exit``, which fires at the same point of the shutdown every time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="on_exit is glibc's")

ABORTING_LIBRARY = textwrap.dedent("""
    import atexit, ctypes, sys
    libc = ctypes.CDLL("libc.so.6")
    libc.on_exit(libc.abort, None)          # a native library that aborts in its teardown
    from talkdata import cli
    entry, marker = sys.argv[1], sys.argv[2]
    command = cli.main.commands["verify"]
    work = command.callback

    def verify_registering_an_exit_handler(*args, **kwargs):  # as dask or the clip worker do
        atexit.register(lambda: open(marker, "w").write("ran"))
        return work(*args, **kwargs)

    command.callback = verify_registering_an_exit_handler
    sys.argv = ["talkdata", *sys.argv[3:]]
    getattr(cli, entry)()
""")


def talkdata_with_aborting_library(entry: str, marker: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ABORTING_LIBRARY, entry, str(marker), *args],
                          capture_output=True, text=True, timeout=300)


def test_the_stand_in_aborts_a_plain_interpreter_exit(grid_dataset, tmp_path):
    """Without the console entry's exit, the command's work is done and the status is still 134."""
    result = talkdata_with_aborting_library("main", tmp_path / "marker", "verify", str(grid_dataset))
    assert result.stdout.startswith("ok: ")
    assert result.returncode in (-6, 134)


@pytest.mark.parametrize("args, status, first_line", [
    (["verify", "{out}"], 0, "ok: "),
    (["verify", "{missing}"], 2, "error: "),
])
def test_the_console_command_exits_with_its_own_status(grid_dataset, tmp_path, args, status, first_line):
    marker = tmp_path / "marker"
    args = [a.format(out=grid_dataset, missing=tmp_path / "missing") for a in args]
    result = talkdata_with_aborting_library("run", marker, *args)
    assert result.returncode == status, result.stderr
    assert (result.stdout + result.stderr).startswith(first_line)
    assert marker.read_text() == "ran"  # the exit handlers that commands register still run


def test_a_usage_error_keeps_its_status(tmp_path):
    result = talkdata_with_aborting_library("run", tmp_path / "marker", "verify", "--no-such-option", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("error: No such option")


def test_the_installed_command_is_the_one_that_handles_the_exit():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "talkdata"]
    assert script.value == "talkdata.cli:run"


THREADS_AFTER_READS = textwrap.dedent("""
    import io, os, sys
    import pyarrow.parquet
    from talkdata.files import read_parquet
    path = sys.argv[1]
    before = len(os.listdir("/proc/self/task"))
    with open(path, "rb") as handle:
        tables = [read_parquet(path), read_parquet(handle), read_parquet(io.BytesIO(open(path, "rb").read()), ["key"])]
    print(before, len(os.listdir("/proc/self/task")), sum(t.num_rows for t in tables))
""")


def test_reading_parquet_starts_no_arrow_thread(grid_dataset):
    """Library users (``talkdata.load(verify=True)``, ``diff``) get no Arrow pool left to abort at exit."""
    done = subprocess.run([sys.executable, "-c", THREADS_AFTER_READS, str(grid_dataset / "index.parquet")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after, rows = map(int, done.stdout.split())
    assert after == before and rows == 3 * 3  # three reads of the 3 GRID samples
