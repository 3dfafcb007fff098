"""``talkdata inspect`` without ``--key``: the contact sheet of a built dataset, read from its shards.

The samples are the first N keys of each split in seeded hash order
(:mod:`talkdata.figures.choice`); only ``video.mp4`` and ``lmk.npy`` of those samples are read and
only frame 0 of each video is decoded. With the default seed the sheet is the card's
``card/contact_sheet.png``, which the build draws from the same samples kept while packing.
"""

from __future__ import annotations

import numpy as np

from ..figures.choice import hash_order
from ..figures.sheet import PER_SPLIT, SheetSample, contact_sheet_image
from ..media.mp4_frames import decode_video
from ..shards import SPLITS
from .dataset import check_dataset, dataset_name, decoded, index_rows, npy, read_fields


def choose_samples(rows: list[dict], per_split: int, seed: int = 0) -> dict[str, list[dict]]:
    """``{split: rows}``: the first ``per_split`` rows of each split in seeded hash order, shown by key."""
    by_split: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_split.setdefault(row["split"], {})[row["key"]] = row
    order = [s for s in SPLITS if s in by_split] + sorted(set(by_split) - set(SPLITS))
    chosen = {}
    for split in order:
        keys = hash_order(by_split[split], seed)[:per_split]
        chosen[split] = [by_split[split][k] for k in sorted(keys)]
    return chosen


def contact_sheet(out, per_split: int = PER_SPLIT, seed: int = 0, rows: list[dict] | None = None) -> np.ndarray:
    """The contact sheet of the dataset folder or Store ``out`` as RGB (``rows``: its index rows, read when None)."""
    out = check_dataset(out)
    rows = index_rows(out) if rows is None else rows
    chosen = choose_samples(rows, per_split, seed)
    files = read_fields(out, [row for group in chosen.values() for row in group], ("video.mp4", "lmk.npy"))
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["split"]] = totals.get(row["split"], 0) + 1

    def sheet_sample(row: dict) -> SheetSample:
        shard, key, fields = row["shard"], row["key"], files[row["key"]]
        return SheetSample(key, str(row["speaker"]),
                           decoded(shard, key, "video.mp4", lambda data: decode_video(data, [0])[0], fields["video.mp4"],
                                   out),
                           decoded(shard, key, "lmk.npy", lambda data: npy(data)[0], fields["lmk.npy"], out))

    shown = {split: [sheet_sample(row) for row in group] for split, group in chosen.items()}
    return contact_sheet_image(dataset_name(out), shown, totals, per_split, seed)
