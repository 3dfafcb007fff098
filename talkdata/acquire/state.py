"""Markers under ``DATA_ROOT/NAME/.talkdata/``: what is complete (verified), extracted, or skipped.

``complete/REL.json`` is written only after size + checksum verification, ``extracted/UNIT.json`` only
after a complete extraction, ``skipped/REL.json`` for an optional file that failed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic
from . import http
from .plan import RemoteFile, Unit


STATE_DIR = ".talkdata"


def marker_path(root: Path, kind: str, rel: str) -> Path:
    return root / STATE_DIR / kind / f"{rel}.json"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), sync=False)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def mark_complete(root: Path, f: RemoteFile, fetched: http.Fetched, public_url: str = "") -> None:
    if fetched.verified:
        how = f"{fetched.algo} from {f.checksum.origin}"
    elif f.size is not None:
        how = "size only (no checksum is published)"
    else:
        how = "not verified (no checksum or size is published)"
    write_json(marker_path(root, "complete", f.dest), {
        "name": f.name, "path": f.dest, "url": public_url, "bytes": fetched.bytes, fetched.algo: fetched.hexdigest,
        "verified": how,
    })


def is_complete(root: Path, f: RemoteFile) -> bool:
    """A completion marker that matches the file on disk and the expected checksum."""
    marker = read_json(marker_path(root, "complete", f.dest))
    target = root / f.dest
    if not marker or not target.is_file() or target.stat().st_size != marker.get("bytes"):
        return False
    if f.size is not None and marker["bytes"] != f.size:
        return False
    if f.checksum is not None:
        return marker.get(f.checksum.algo, "").lower() == f.checksum.hexdigest
    return True


def is_extracted(root: Path, unit: Unit) -> bool:
    """The unit is in place: extracted (archives), or verified at its destination (plain files)."""
    if unit.kind is None:
        return all(is_complete(root, f) for f in unit.files)
    marker = read_json(marker_path(root, "extracted", unit.name))
    return bool(marker) and sorted(marker.get("files", {})) == sorted(f.name for f in unit.files)

