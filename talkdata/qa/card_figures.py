"""The dataset card's figures (``OUT/card/*.png``) and the Markdown that embeds them.

- ``contact_sheet.png``: frame 0 with landmarks of up to 6 random samples per split;
- ``durations.png``: histogram of clip durations, stacked by split;
- ``pose_blink.png``: per-frame histograms of yaw, pitch, roll and blink (eye aspect ratio) over
  the clips (all of them, or a seeded random 1000 for larger datasets);
- ``rejects.png``: rejected clips per reason code (only when there are rejects).

The shape model figure (``shape_modes.png``) is drawn by the card writer itself. All figures are
pure functions of the built shards and index, so the same build gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..files import write_atomic
from ..shards import SPLITS
from .contact_sheet import PER_SPLIT, contact_sheet
from .dataset import hash_order, npy, read_fields
from .render import figure_style, figure_to_rgb, new_figure, png_bytes

CARD = "card"
FIGURES = ("contact_sheet.png", "durations.png", "pose_blink.png", "rejects.png")
MAX_CLIPS = 1000  # clips read for the pose and blink histograms
SEED = 0
SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def _total(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def duration_histogram(durations: dict[str, np.ndarray]) -> np.ndarray:
    """Histogram of clip durations in seconds, stacked by split (``{split: durations}``)."""
    splits = [s for s in durations if len(durations[s])]
    values = np.concatenate([np.asarray(durations[s], dtype=np.float64) for s in splits]) if splits else np.zeros(0)
    with figure_style():
        figure = new_figure(640, 300)
        ax = figure.add_axes((0.1, 0.16, 0.86, 0.7))
        if len(values):
            low, high = float(values.min()), float(values.max())
            if high - low < 1e-9:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, 31)
            ax.hist([durations[s] for s in splits], bins=edges, stacked=True, label=splits,
                    color=[SPLIT_COLOURS.get(s, "0.5") for s in splits])
            ax.legend(frameon=False)
            title = (f"clip duration: {len(values)} clips, {_total(values.sum())} in all, "
                     f"median {np.median(values):.2f} s, range {values.min():.2f}-{values.max():.2f} s")
        else:
            title = "clip duration: no samples"
        ax.set_title(title)
        ax.set_xlabel("duration (s)")
        ax.set_ylabel("clips")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        return figure_to_rgb(figure)


def pose_blink_histograms(pose: np.ndarray, blink: np.ndarray, clips: int, of_clips: int) -> np.ndarray:
    """Per-frame histograms of yaw, pitch, roll (``pose`` (N, >=3), degrees) and blink (N,)."""
    pose = np.asarray(pose, dtype=np.float64)
    pose = pose.reshape(-1, pose.shape[-1])
    blink = np.asarray(blink, dtype=np.float64).reshape(-1)
    panels = [("yaw (deg)", pose[:, 0], "tab:red"), ("pitch (deg)", pose[:, 1], "tab:green"),
              ("roll (deg)", pose[:, 2], "tab:blue"), ("blink (eye aspect ratio)", blink, "0.3")]
    with figure_style():
        figure = new_figure(960, 280)
        sampled = f"a random {clips} of {of_clips} clips" if clips < of_clips else f"all {clips} clips"
        figure.suptitle(f"per-frame head pose and blink: {len(blink)} frames of {sampled}", fontsize=9)
        for n, (name, values, colour) in enumerate(panels):
            ax = figure.add_axes((0.05 + n * 0.24, 0.17, 0.2, 0.66))
            values = values[np.isfinite(values)]
            if len(values):
                ax.hist(values, bins=40, color=colour)
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                low, mid, high = np.percentile(values, [1, 50, 99])
                ax.set_title(f"median {mid:.2f}, 1-99% {low:.2f} to {high:.2f}", fontsize=7)
            ax.set_xlabel(name)
            if n == 0:
                ax.set_ylabel("frames")
        return figure_to_rgb(figure)


def reject_chart(by_reason: dict[str, int]) -> np.ndarray:
    """Horizontal bars: rejected clips per reason code, most frequent first."""
    items = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    height = 90 + 26 * max(1, len(items))
    with figure_style():
        figure = new_figure(640, height)
        ax = figure.add_axes((0.22, 50 / height, 0.7, 1 - 85 / height))
        names = [name for name, _ in items][::-1]
        counts = [count for _, count in items][::-1]
        ax.barh(range(len(items)), counts, color="tab:red", height=0.6)
        ax.set_yticks(range(len(items)), names)
        for y, count in enumerate(counts):
            ax.text(count, y, f" {count}", va="center", fontsize=8)
        ax.set_xlim(0, max(counts, default=1) * 1.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.6, len(items) - 0.4)
        ax.set_xlabel("rejected clips")
        ax.set_title(f"{sum(counts)} rejected clips by reason (rejects.parquet has one row per clip)")
        return figure_to_rgb(figure)


def collect_pose_blink(out: Path, rows: list[dict], max_clips: int = MAX_CLIPS,
                       seed: int = SEED) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-frame yaw/pitch/roll and blink of up to ``max_clips`` seeded random samples, in key order."""
    keys = set(hash_order([row["key"] for row in rows], seed)[:max_clips])
    chosen = [row for row in sorted(rows, key=lambda r: r["key"]) if row["key"] in keys]
    files = read_fields(out, chosen, ("pose.npy", "blink.npy"))
    pose = [npy(files[row["key"]]["pose.npy"])[:, :3] for row in chosen]
    blink = [npy(files[row["key"]]["blink.npy"]) for row in chosen]
    return np.concatenate(pose), np.concatenate(blink), len(chosen)


def durations_by_split(rows: list[dict]) -> dict[str, np.ndarray]:
    """``{split: durations}`` in split order (train, val, test), each in key order."""
    durations: dict[str, list[float]] = {}
    for row in sorted(rows, key=lambda r: r["key"]):
        durations.setdefault(row["split"], []).append(float(row["duration"]))
    order = [s for s in SPLITS if s in durations] + sorted(set(durations) - set(SPLITS))
    return {split: np.asarray(durations[split]) for split in order}


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png_bytes(image))


def write_card_figures(out: str | Path, manifest: dict, rows: list[dict]) -> list[str]:
    """Write the figures under ``out/card/`` and return the card's Markdown lines for them.

    ``rows`` are the index rows of the build (key, split, shard, speaker, duration). Figures of an
    earlier build of the folder that this build does not make are removed.
    """
    out = Path(out)
    folder = out / CARD
    written: list[str] = []
    lines: list[str] = []
    if rows:
        write_png(folder / "contact_sheet.png", contact_sheet(out, PER_SPLIT, SEED, rows))
        write_png(folder / "durations.png", duration_histogram(durations_by_split(rows)))
        pose, blink, clips = collect_pose_blink(out, rows)
        write_png(folder / "pose_blink.png", pose_blink_histograms(pose, blink, clips, len(rows)))
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
