"""What the dataset card needs, collected while packing: one small, mergeable summary per shard.

``write_shard`` (on the executor) adds every sample it writes to a :class:`PackStats`; the driver
merges the shards' summaries in plan order. The summary's size is bounded whatever the corpus size:

- ``samples`` and ``durations``: clips per split and per distinct duration (``frames / fps`` takes
  few distinct values), for the card's counts and the duration histogram;
- ``types``: the field type tree of the split's samples (:mod:`talkdata.pipeline.hub_features`);
- ``sheet``: per split, the ``PER_SPLIT`` samples of smallest seeded hash (their ``video.mp4`` and
  frame 0's landmarks) for the contact sheet;
- ``pose``: the ``MAX_CLIPS`` samples of smallest seeded hash over all splits (their yaw, pitch,
  roll and blink) for the pose and blink histograms.

The choices depend only on the keys (:mod:`talkdata.figures.choice`), so the merged summary is the
same for any worker count or finishing order, and the card is written without reading a shard back.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from ..figures.choice import Smallest
from ..figures.sheet import PER_SPLIT
from .hub_features import FieldTypes

MAX_CLIPS = 1000  # clips of the pose and blink histograms
SEED = 0


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@dataclass(frozen=True)
class SheetEntry:
    """A contact sheet candidate: its video stays encoded (only the chosen few are ever decoded)."""

    speaker: str
    video: bytes
    points: np.ndarray  # (68, 2) landmarks of frame 0


@dataclass
class PackStats:
    samples: dict[str, int] = field(default_factory=dict)
    durations: dict[str, dict[float, int]] = field(default_factory=dict)
    types: dict[str, FieldTypes] = field(default_factory=dict)
    sheet: dict[str, Smallest] = field(default_factory=dict)
    pose: Smallest = field(default_factory=lambda: Smallest(MAX_CLIPS, SEED))

    def add(self, split: str, row: dict, files: dict[str, bytes]) -> None:
        """One packed sample: its index ``row`` and its members ``files`` (as written to the shard)."""
        key = row["key"]
        self.samples[split] = self.samples.get(split, 0) + 1
        counts = self.durations.setdefault(split, {})
        duration = float(row["duration"])
        counts[duration] = counts.get(duration, 0) + 1
        self.types.setdefault(split, FieldTypes()).add(files)
        sheet = self.sheet.setdefault(split, Smallest(PER_SPLIT, SEED))
        if sheet.wants(key) and "video.mp4" in files and "lmk.npy" in files:
            sheet.add(key, SheetEntry(str(row["speaker"]), files["video.mp4"], _npy(files["lmk.npy"])[0]))
        if self.pose.wants(key) and "pose.npy" in files and "blink.npy" in files:
            self.pose.add(key, (_npy(files["pose.npy"])[:, :3], _npy(files["blink.npy"])))

    def merge(self, other: PackStats) -> None:
        """Add the summary of the next shard (in plan order: field types merge in sample order)."""
        for split, count in other.samples.items():
            self.samples[split] = self.samples.get(split, 0) + count
        for split, counts in other.durations.items():
            mine = self.durations.setdefault(split, {})
            for duration, count in counts.items():
                mine[duration] = mine.get(duration, 0) + count
        for split, types in other.types.items():
            self.types.setdefault(split, FieldTypes()).merge(types)
        for split, sheet in other.sheet.items():
            self.sheet.setdefault(split, Smallest(PER_SPLIT, SEED)).merge(sheet)
        self.pose.merge(other.pose)

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def field_types(self) -> dict:
        """``{field: type tree}`` of all samples (ValueError when a field holds two types)."""
        merged = FieldTypes()
        for split in sorted(self.types):  # the shards' path order (shards/SPLIT/...), as a reader meets them
            merged.merge(self.types[split])
        return merged.types()

    def pose_blink(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Per-frame yaw/pitch/roll and blink of the chosen clips, in key order, and their number."""
        chosen = [item for _, item in self.pose.in_key_order()]
        if not chosen:
            return np.zeros((0, 3)), np.zeros(0), 0
        return np.concatenate([p for p, _ in chosen]), np.concatenate([b for _, b in chosen]), len(chosen)
