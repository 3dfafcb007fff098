"""Contact sheet: one frame with landmarks from each of N pseudo-random samples per split.

The samples are the first N keys of each split in the order ``sha256(f"{seed}:{key}")``: the
choice depends only on the keys and the seed (not on time, worker count or file order), and adding
samples to a dataset changes it only where a new key sorts first. Only frame 0 of each chosen
sample is decoded.
"""

from __future__ import annotations


import numpy as np

from ..shards import SPLITS
from .dataset import check_dataset, dataset_name, decode_frames, hash_order, index_rows, npy, read_fields
from .render import figure_style, figure_to_rgb, landmark_tile, new_figure, pixel_axes

PER_SPLIT = 6
TILE = 160
LABEL_COLUMN, TITLE, LABEL, PAD = 96, 48, 30, 12
MIN_WIDTH = 440


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


def _fit(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit // 2 - 1] + "..." + text[-(limit - limit // 2 - 2):]


def render_contact_sheet(rows: list[tuple[str, int, list[tuple[np.ndarray, str]]]], title: str,
                         tile: int = TILE) -> np.ndarray:
    """The sheet as RGB: one row per ``(split, samples in split, [(tile image, label), ...])``.

    Tile images are shown pixel for pixel (``tile`` x ``tile``); labels go above the tiles.
    """
    columns = max((len(tiles) for _, _, tiles in rows), default=1) or 1
    cell_w, cell_h = tile + PAD, LABEL + tile + PAD
    width = max(MIN_WIDTH, LABEL_COLUMN + columns * cell_w)
    height = TITLE + max(1, len(rows)) * cell_h
    with figure_style():
        figure = new_figure(width, height)
        figure.text(PAD / width, 1 - 10 / height, title, fontsize=9, weight="bold", va="top")
        if not rows:
            figure.text(0.5, 0.4, "no samples", ha="center", fontsize=10)
        for r, (split, total, tiles) in enumerate(rows):
            top = TITLE + r * cell_h
            figure.text(PAD / width, 1 - (top + LABEL + tile / 2) / height,
                        f"{split}\n{len(tiles)} of {total}", fontsize=9, va="center", weight="bold")
            for c, (image, label) in enumerate(tiles):
                left = LABEL_COLUMN + c * cell_w
                ax = pixel_axes(figure, left, top + LABEL, tile, tile)
                ax.imshow(image, interpolation="nearest", aspect="auto")
                ax.set_axis_off()
                figure.text((left + tile / 2) / width, 1 - (top + LABEL - 2) / height, label, fontsize=7,
                            ha="center", va="bottom", linespacing=1.1)
        return figure_to_rgb(figure)


def tile_label(row: dict) -> str:
    return f"{_fit(row['key'])}\nspeaker {_fit(str(row['speaker']), 18)}"


def contact_sheet(out, per_split: int = PER_SPLIT, seed: int = 0, rows: list[dict] | None = None) -> np.ndarray:
    """The contact sheet of the dataset folder or Store ``out`` as RGB (``rows``: its index rows, read when None)."""
    out = check_dataset(out)
    rows = index_rows(out) if rows is None else rows
    chosen = choose_samples(rows, per_split, seed)
    files = read_fields(out, [row for group in chosen.values() for row in group], ("video.mp4", "lmk.npy"))
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["split"]] = totals.get(row["split"], 0) + 1
    sheet_rows = []
    for split, group in chosen.items():
        tiles = []
        for row in group:
            fields = files[row["key"]]
            frame = decode_frames(fields["video.mp4"], [0])[0]
            tiles.append((landmark_tile(frame, npy(fields["lmk.npy"])[0], TILE), tile_label(row)))
        sheet_rows.append((split, totals[split], tiles))
    title = f"{dataset_name(out)}: frame 0 with landmarks\nup to {per_split} random samples per split (seed {seed})"
    return render_contact_sheet(sheet_rows, title)
