"""The dataset card's figures (``OUT/card/*.png``) from the pack's statistics, and their Markdown.

- ``contact_sheet.png``: frame 0 with landmarks of up to 6 random samples per split;
- ``durations.png``: histogram of clip durations, stacked by split;
- ``pose_blink.png``: per-frame histograms of yaw, pitch, roll and blink (eye aspect ratio) over
  the clips (all of them, or a seeded random 1000 for larger datasets);
- ``rejects.png``: rejected clips per reason code (only when there are rejects).

Everything comes from :class:`~talkdata.pipeline.pack_stats.PackStats` (collected while the shards
were written) and the manifest; no shard is read. The shape model figure (``shape_modes.png``) is
drawn by the card writer itself. The same build gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures.charts import duration_histogram, pose_blink_histograms, reject_chart
from ..figures.render import png_bytes
from ..figures.sheet import PER_SPLIT, SheetSample, contact_sheet_image
from ..files import write_atomic
from ..media.mp4_frames import decode_video
from ..shards import SPLITS
from .pack_stats import SEED, PackStats

CARD = "card"
FIGURES = ("contact_sheet.png", "durations.png", "pose_blink.png", "rejects.png")


def _split_order(splits) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(set(splits) - set(SPLITS))


def card_contact_sheet(name: str, stats: PackStats) -> np.ndarray:
    """The contact sheet of the samples kept while packing (only their frame 0 is decoded)."""
    chosen = {}
    for split in _split_order([s for s in stats.sheet if stats.sheet[s].items]):
        chosen[split] = [SheetSample(key, entry.speaker, decode_video(entry.video, [0])[0], entry.points)
                         for key, entry in stats.sheet[split].in_key_order()]
    return contact_sheet_image(name, chosen, stats.samples, PER_SPLIT, SEED)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png_bytes(image))


def write_card_figures(out: str | Path, manifest: dict, stats: PackStats) -> list[str]:
    """Write the figures under ``out/card/`` and return the card's Markdown lines for them.

    Figures of an earlier build of the folder that this build does not make are removed.
    """
    out = Path(out)
    folder = out / CARD
    written: list[str] = []
    lines: list[str] = []
    if stats.total:
        write_png(folder / "contact_sheet.png", card_contact_sheet(str(manifest.get("name", "dataset")), stats))
        durations = {split: stats.durations[split] for split in _split_order(stats.durations)}
        write_png(folder / "durations.png", duration_histogram(durations))
        pose, blink, clips = stats.pose_blink()
        write_png(folder / "pose_blink.png", pose_blink_histograms(pose, blink, clips, stats.total))
        written += ["contact_sheet.png", "durations.png", "pose_blink.png"]
        lines += ["", "## Samples", "",
                  f"Frame 0 with its 68 landmarks for up to {PER_SPLIT} random samples per split "
                  f"(`talkdata inspect . --key KEY --png sample.png` shows one sample in full, "
                  f"`--html sample.html` as a page with the playable clip):", "",
                  "![contact sheet: one frame with landmarks per sample](card/contact_sheet.png)", "",
                  "## Distributions", "",
                  "![histogram of clip durations by split](card/durations.png)", "",
                  "![per-frame histograms of yaw, pitch, roll and blink](card/pose_blink.png)"]
    by_reason = manifest.get("rejects", {}).get("by_reason", {})
    if by_reason:
        write_png(folder / "rejects.png", reject_chart(by_reason))
        written.append("rejects.png")
        lines += ["", "## Rejected clips", "", "![rejected clips per reason code](card/rejects.png)"]
    for name in FIGURES:
        if name not in written and (folder / name).exists():
            (folder / name).unlink()
    return lines
