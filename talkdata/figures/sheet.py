"""The contact sheet: frame 0 with its landmarks of N samples per split, one row per split.

The samples are chosen by :mod:`talkdata.figures.choice` (the first N keys of each split in seeded
hash order) and shown in key order; the card (from the samples kept while packing) and ``talkdata
inspect`` (from the shards) draw the same sheet with :func:`contact_sheet_image`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import figure_style, figure_to_rgb, landmark_tile, new_figure, pixel_axes

PER_SPLIT = 6
TILE = 160
LABEL_COLUMN, TITLE, LABEL, PAD = 96, 48, 30, 12
MIN_WIDTH = 440



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


def tile_label(key: str, speaker: str) -> str:
    return f"{_fit(key)}\nspeaker {_fit(str(speaker), 18)}"


@dataclass(frozen=True)
class SheetSample:
    """What the sheet shows of one sample: its key, speaker, frame 0 (RGB) and frame 0's landmarks."""

    key: str
    speaker: str
    frame: np.ndarray  # (H, W, 3) uint8
    points: np.ndarray  # (68, 2) crop pixels


def contact_sheet_image(name: str, chosen: dict[str, list[SheetSample]], totals: dict[str, int],
                        per_split: int = PER_SPLIT, seed: int = 0) -> np.ndarray:
    """The sheet of dataset ``name`` as RGB: ``chosen`` samples per split (in split order, each in key
    order) out of ``totals`` samples per split."""
    rows = [(split, totals[split], [(landmark_tile(s.frame, s.points, TILE), tile_label(s.key, s.speaker))
                                    for s in samples]) for split, samples in chosen.items()]
    title = f"{name}: frame 0 with landmarks\nup to {per_split} random samples per split (seed {seed})"
    return render_contact_sheet(rows, title)
