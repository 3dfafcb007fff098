"""Shared fixtures: real builds of the bundled sample clips, made once per test session.

Tests that only read a finished dataset (loader, inspect, training loops, diff) use these instead
of building their own; tests of the build itself keep their own builds through the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (media_factory, ...) import as modules


@pytest.fixture(scope="session")
def grid_dataset(tmp_path_factory) -> Path:
    """GRID samples (s1, s2, unknown_speaker: one speaker per split) built in process."""
    from talkdata.pipeline.build import build

    out = tmp_path_factory.mktemp("session-grid") / "grid"
    build("grid", DATA / "grid", out)
    return out


@pytest.fixture(scope="session")
def crema_dataset(tmp_path_factory) -> Path:
    """CREMA-D samples (29.97 fps FLVs, out at 25 fps) built in process."""
    from talkdata.pipeline.build import build

    out = tmp_path_factory.mktemp("session-crema") / "crema"
    build("crema-d", DATA / "crema_d", out)
    return out


@pytest.fixture(scope="session")
def crema_heldout_dataset(tmp_path_factory) -> Path:
    """The four CREMA-D clips of actor 1001 (one sentence, four emotions) as a ``videos`` build with
    a held-out clip: ANG, HAP and NEU in train, SAD alone in val (the folder names are the
    "speakers"; with ``split`` 0.5 / 0.5 / 0 the default protocol puts ``actor1001_val`` in val)."""
    import shutil

    import pyarrow.parquet as pq

    from talkdata.pipeline.build import build

    root = tmp_path_factory.mktemp("session-crema-heldout")
    flv = DATA / "crema_d" / "VideoFlash"
    for folder, emotions in (("actor1001_train", ("ANG", "HAP", "NEU")), ("actor1001_val", ("SAD",))):
        (root / "source" / folder).mkdir(parents=True)
        for emotion in emotions:
            shutil.copy(flv / f"1001_DFA_{emotion}_XX.flv", root / "source" / folder)
    out = root / "out"
    build("videos", root / "source", out, sets={"split.train": 0.5, "split.val": 0.5, "split.test": 0.0})
    splits = {row["key"]: row["split"] for row in pq.read_table(out / "index.parquet").to_pylist()}
    assert splits == {"actor1001_train/1001_DFA_ANG_XX": "train", "actor1001_train/1001_DFA_HAP_XX": "train",
                      "actor1001_train/1001_DFA_NEU_XX": "train", "actor1001_val/1001_DFA_SAD_XX": "val"}
    return out
