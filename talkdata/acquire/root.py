"""The data root: ``$TALKDATA_HOME``, else ``~/.cache/talkdata``; corpus ``NAME`` lives in ``DATA_ROOT/NAME/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping


def data_root(env: Mapping[str, str] | None = None) -> Path:
    """``$TALKDATA_HOME``, else ``~/.cache/talkdata``."""
    env = os.environ if env is None else env
    return Path(env.get("TALKDATA_HOME") or Path.home() / ".cache" / "talkdata").expanduser()


def corpus_root(name: str, env: Mapping[str, str] | None = None) -> Path:
    return data_root(env) / name

