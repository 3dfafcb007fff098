"""The data root: ``$TALKDATA_HOME``, else ``~/.cache/talkdata``; corpus ``NAME`` lives in ``DATA_ROOT/NAME/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ..errors import UserError


def data_root(env: Mapping[str, str] | None = None) -> Path:
    """``$TALKDATA_HOME``, else ``~/.cache/talkdata``."""
    env = os.environ if env is None else env
    return Path(env.get("TALKDATA_HOME") or Path.home() / ".cache" / "talkdata").expanduser()


def corpus_root(name: str, env: Mapping[str, str] | None = None) -> Path:
    return data_root(env) / name



def writable_root(root: Path, state_dir: str = ".talkdata") -> Path:
    """Create ``root`` and its bookkeeping folder, or say in one line why the data root cannot be used.

    A data root that is a regular file (or has one in its path) or that cannot be written stops the
    download with the path and the fix, instead of an ``OSError`` traceback.
    """
    try:
        (root / state_dir).mkdir(parents=True, exist_ok=True)
        probe = root / state_dir / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), root)
        raise UserError(f"the data root {data_root_hint(root)} cannot hold the corpus: {blocker} is a file, not a folder; "
                        "set TALKDATA_HOME to a folder") from None
    except OSError as err:
        raise UserError(f"cannot write to the data root {data_root_hint(root)} ({err.strerror or err}); set "
                        "TALKDATA_HOME to a folder you can write, or give the corpus folder with --source") from None
    return root


def data_root_hint(root: Path) -> str:
    """``root``, saying where it came from."""
    home = os.environ.get("TALKDATA_HOME")
    return f"{root} (TALKDATA_HOME={home})" if home else f"{root} (the default; set TALKDATA_HOME to move it)"
