"""Shared fixtures: real builds of the bundled sample clips, made once per test run.

Tests that only read a finished dataset (loader, inspect, training loops, diff) use these instead
of building their own; tests of the build itself keep their own builds through the CLI.

The suite runs on several processes (``pytest -n auto``: pytest-xdist, README "Development"). A
build made through :func:`shared_build` is made once for the whole run by whichever worker asks
first, under a file lock in the run's common temporary folder; the other workers wait for it and
read the same folder. A build handed out this way is never modified by a test: a test that changes
a build copies it first (``shutil.copytree``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (media_factory, ...) import as modules


def shared_build(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """An empty folder ``name`` filled by ``make(folder)`` once per test run, then returned as is.

    Without xdist the folder is in the session's temporary folder. Under xdist each worker has its
    own base temporary folder below one folder for the run; the build goes there, guarded by
    ``name.lock``, and is marked complete by ``name.done`` only once ``make`` returned (after a
    failure half-way there is no mark, and the next worker that asks starts again from empty)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-builds"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def grid_dataset(tmp_path_factory) -> Path:
    """GRID samples (s1, s2, unknown_speaker: one speaker per split) built in process."""
    from talkdata.pipeline.build import build

    return shared_build(tmp_path_factory, "session-grid",
                        lambda folder: build("grid", DATA / "grid", folder / "grid")) / "grid"


@pytest.fixture(scope="session")
def grid_console_builds(tmp_path_factory) -> dict[str, Path]:
    """The GRID samples built by the console script (``python -m talkdata.cli build``, as a user runs
    it) with 2 and 4 workers: ``"2"`` from ``DATA/grid`` into ``w2``, ``"4"`` from a copy of the
    samples (``"source"``) into a deeper folder whose name has spaces. test_reproducibility and
    test_build compare them with ``grid_dataset`` (0 workers, in process)."""
    import subprocess

    def paths(root: Path) -> dict[str, Path]:
        return {"source": root / "elsewhere" / "raw grid copy", "2": root / "w2",
                "4": root / "a" / "b" / "deeper out with spaces" / "w4"}

    def make(root: Path) -> None:
        built = paths(root)
        shutil.copytree(DATA / "grid", built["source"])
        for workers, source in (("2", DATA / "grid"), ("4", built["source"])):
            result = subprocess.run([sys.executable, "-m", "talkdata.cli", "build", "grid", "--source", str(source),
                                     "--out", str(built[workers]), "--no-progress", "--workers", workers],
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr

    return paths(shared_build(tmp_path_factory, "grid-console-2-4-workers", make))


@pytest.fixture(scope="session")
def videos_console_build(tmp_path_factory) -> Path:
    """A ``videos`` build by the console script of a folder of the user's own clips from three corpora
    (license ``other``), with spaces and non-ASCII letters in the names: ``anna/talk one.mp4``
    (VoxCeleb2-like), ``bob/clip.mpg`` (GRID), ``carl/süß.flv`` (CREMA-D, 29.97 fps)."""
    import subprocess

    def make(root: Path) -> None:
        folder = root / "my videos"
        for speaker, origin, name in (("anna", DATA / "voxceleb2_like" / "00473.mp4", "talk one.mp4"),
                                      ("bob", DATA / "grid" / "s1" / "bbaf2n.mpg", "clip.mpg"),
                                      ("carl", DATA / "crema_d" / "VideoFlash" / "1001_DFA_HAP_XX.flv", "süß.flv")):
            (folder / speaker).mkdir(parents=True)
            shutil.copy(origin, folder / speaker / name)
        result = subprocess.run([sys.executable, "-m", "talkdata.cli", "build", "videos", "--source", str(folder),
                                 "--out", str(root / "out"), "--no-progress"], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr

    return shared_build(tmp_path_factory, "videos-console", make) / "out"


@pytest.fixture(scope="session")
def crema_dataset(tmp_path_factory) -> Path:
    """CREMA-D samples (29.97 fps FLVs, out at 25 fps) built in process."""
    from talkdata.pipeline.build import build

    return shared_build(tmp_path_factory, "session-crema",
                        lambda folder: build("crema-d", DATA / "crema_d", folder / "crema")) / "crema"


@pytest.fixture(scope="session")
def crema_heldout_dataset(tmp_path_factory) -> Path:
    """The four CREMA-D clips of actor 1001 (one sentence, four emotions) as a ``videos`` build with
    a held-out clip: ANG, HAP and NEU in train, SAD alone in val (the folder names are the
    "speakers"; with ``split`` 0.5 / 0.5 / 0 the default protocol puts ``actor1001_val`` in val)."""
    import pyarrow.parquet as pq

    from talkdata.pipeline.build import build

    def make(root: Path) -> None:
        flv = DATA / "crema_d" / "VideoFlash"
        for folder, emotions in (("actor1001_train", ("ANG", "HAP", "NEU")), ("actor1001_val", ("SAD",))):
            (root / "source" / folder).mkdir(parents=True)
            for emotion in emotions:
                shutil.copy(flv / f"1001_DFA_{emotion}_XX.flv", root / "source" / folder)
        build("videos", root / "source", root / "out", sets={"split.train": 0.5, "split.val": 0.5, "split.test": 0.0})

    out = shared_build(tmp_path_factory, "session-crema-heldout", make) / "out"
    splits = {row["key"]: row["split"] for row in pq.read_table(out / "index.parquet").to_pylist()}
    assert splits == {"actor1001_train/1001_DFA_ANG_XX": "train", "actor1001_train/1001_DFA_HAP_XX": "train",
                      "actor1001_train/1001_DFA_NEU_XX": "train", "actor1001_val/1001_DFA_SAD_XX": "val"}
    return out
