"""Train / val / test assignment.

``default`` is speaker-disjoint and deterministic: speakers are ordered by the sha256 of
``"{seed}:{speaker}"`` and cut by the configured ratios (with at least one speaker in every split
that has a non-zero ratio once there are enough speakers). Named protocols, declared in a recipe's
``[protocols]`` table, list the speakers of ``test`` (and optionally ``val``); every other speaker
goes to ``train``. Corpora with an official split set ``record.split`` while indexing and keep it.
"""

from __future__ import annotations

import hashlib

from ..config import Split
from ..errors import UserError
from .records import ClipRecord



def speaker_disjoint(speakers: list[str], seed: int, ratios: dict[str, float]) -> dict[str, str]:
    ordered = sorted(set(speakers), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(ordered)
    counts = {name: int(round(ratios[name] * n)) for name in ("val", "test")}
    if n >= 3:
        for name in ("val", "test"):
            if ratios[name] > 0:
                counts[name] = max(1, counts[name])
    counts["val"] = min(counts["val"], max(0, n - counts["test"] - (1 if ratios["train"] > 0 else 0)))
    assignment = {}
    for i, speaker in enumerate(ordered):
        if i < counts["test"]:
            assignment[speaker] = "test"
        elif i < counts["test"] + counts["val"]:
            assignment[speaker] = "val"
        else:
            assignment[speaker] = "train"
    return assignment


def assign_splits(records: list[ClipRecord], split_config: Split, protocols: dict[str, dict]) -> None:
    """Fill ``record.split`` in place for records that have none."""
    todo = [r for r in records if not r.split]
    if not todo:
        return
    protocol = split_config.protocol
    if protocol == "default":
        ratios = {"train": split_config.train, "val": split_config.val, "test": split_config.test}
        assignment = speaker_disjoint([r.speaker for r in todo], split_config.seed, ratios)
    elif protocol in protocols:
        listed = {s: name for name in ("val", "test") for s in protocols[protocol].get(name, [])}
        assignment = {r.speaker: listed.get(r.speaker, "train") for r in todo}
    else:
        known = ", ".join(["default", *sorted(protocols)])
        raise UserError(f"unknown split protocol {protocol!r} (this recipe has: {known})")
    for record in todo:
        record.split = assignment[record.speaker]
