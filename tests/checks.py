"""Assertions shared by the command-line tests."""

from __future__ import annotations

import json
from pathlib import Path

from talkdata.shards import read_shard


def error_line(result) -> str:
    """The one ``error:`` line of a click result that failed as the README promises (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def sample_json(out: Path) -> dict[str, dict]:
    """Every sample's decoded json in a built dataset, by key."""
    found = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        for key, fields in read_shard(shard).items():
            found[key] = json.loads(fields["json"])
    return found
