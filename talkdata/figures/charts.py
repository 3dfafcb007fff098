"""The dataset card's charts as RGB arrays: clip durations by split, per-frame head pose and blink,
rejected clips per reason. Pure functions of counts and arrays (the card collects them while
packing; see :mod:`talkdata.pipeline.pack_stats`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.ticker import MaxNLocator

from .render import figure_style, figure_to_rgb, new_figure

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def _total(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    """``np.median`` of ``values`` each repeated ``counts`` times (``values`` ascending)."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    middle = [int(np.searchsorted(ends, n, side="right")) for n in sorted({(total - 1) // 2, total // 2})]
    return float(np.mean(values[middle]))


def duration_histogram(durations: dict[str, Mapping[float, int]]) -> np.ndarray:
    """Histogram of clip durations in seconds, stacked by split (``{split: {duration: clips}}``)."""
    splits = [s for s in durations if sum(durations[s].values())]
    tables = {s: (np.asarray(sorted(durations[s]), dtype=np.float64),
                  np.asarray([durations[s][v] for v in sorted(durations[s])], dtype=np.int64)) for s in splits}
    merged: dict[float, int] = {}
    for values, counts in tables.values():
        for value, count in zip(values.tolist(), counts.tolist()):
            merged[value] = merged.get(value, 0) + count
    values = np.asarray(sorted(merged), dtype=np.float64)
    counts = np.asarray([merged[v] for v in sorted(merged)], dtype=np.int64)
    with figure_style():
        figure = new_figure(640, 300)
        ax = figure.add_axes((0.1, 0.16, 0.86, 0.7))
        if len(values):
            low, high = float(values.min()), float(values.max())
            if high - low < 1e-9:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, 31)
            ax.hist([tables[s][0] for s in splits], bins=edges, weights=[tables[s][1] for s in splits], stacked=True,
                    label=splits, color=[SPLIT_COLOURS.get(s, "0.5") for s in splits])
            ax.legend(frameon=False)
            title = (f"clip duration: {int(counts.sum())} clips, {_total(float(values @ counts))} in all, "
                     f"median {weighted_median(values, counts):.2f} s, range {values.min():.2f}-{values.max():.2f} s")
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
