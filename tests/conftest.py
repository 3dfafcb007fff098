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
    build("grid", DATA / "grid", out, progress=False)
    return out


@pytest.fixture(scope="session")
def crema_dataset(tmp_path_factory) -> Path:
    """CREMA-D samples (29.97 fps FLVs, out at 25 fps) built in process."""
    from talkdata.pipeline.build import build

    out = tmp_path_factory.mktemp("session-crema") / "crema"
    build("crema-d", DATA / "crema_d", out, progress=False)
    return out
