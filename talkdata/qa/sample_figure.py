"""One sample on one page: frames with landmarks over a shared time axis with head pose, blink,
the first PCA codes, the audio waveform (with word timings when the corpus has them) and MFCC.

Everything is drawn against time in seconds from the start of frame 0, the time base of every
field (audio sample 0 = start of frame 0), so that an offset between picture, landmarks and sound
shows up as curves that do not line up:

- the strip cuts the clip into ``n`` equal time slices and shows, in each, the frame at the
  slice's centre; a dotted line on every panel marks the exact time of each shown frame;
- per-frame values (pose, blink, PCA) are steps that hold during the frame they belong to;
- MFCC row ``4t + k`` is drawn at the centre of its 25 ms analysis window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Sample
from ..figures.render import figure_style, figure_to_rgb, frame_strip, new_figure, pixel_axes

#: analysis window of the MFCC rows (the sample contract's 25 ms)
MFCC_WINDOW_S = 0.025

STRIP_WIDTH = 1088  # pixels of the time axis for the default 8 frames (8 x 136)
LEFT, RIGHT, TOP, BOTTOM = 84, 28, 52, 44
LABEL_GAP, GAP = 16, 10
LABEL_X = 52  # pixels from the time axis to the panel labels
PANELS = (("pose", 130), ("blink", 80), ("pca", 110), ("audio", 100), ("mfcc", 110))


@dataclass(frozen=True)
class SampleFigure:
    image: np.ndarray  # (H, W, 3) uint8
    boxes: dict  # panel name -> (x0, y0, x1, y1) pixel box in the image, top-left origin
    duration: float  # seconds spanned by the shared time axis (x0 -> 0 s, x1 -> duration)
    frame_indices: tuple  # the frames shown in the strip

    def time_to_x(self, seconds: float) -> float:
        x0, _, x1, _ = self.boxes["strip"]
        return x0 + (x1 - x0) * seconds / self.duration


def strip_indices(n_frames: int, count: int) -> list[int]:
    """The frame at the centre of each of ``count`` equal time slices of a clip of ``n_frames``."""
    count = max(1, min(count, n_frames))
    return [min(n_frames - 1, int((k + 0.5) * n_frames / count)) for k in range(count)]


def layout(count: int) -> tuple[int, int, dict]:
    """Figure width, height and the pixel box of every panel for a strip of ``count`` frames."""
    tile = STRIP_WIDTH // count
    width = tile * count
    boxes = {}
    y = TOP + LABEL_GAP
    boxes["strip"] = (LEFT, y, LEFT + width, y + tile)
    y += tile + GAP
    for name, height in PANELS:
        boxes[name] = (LEFT, y, LEFT + width, y + height)
        y += height + GAP
    return LEFT + width + RIGHT, y - GAP + BOTTOM, boxes


def render_sample(sample: Sample, frames: dict[int, np.ndarray], count: int = 8,
                  landmarks: bool = True) -> SampleFigure:
    """The inspection figure of ``sample`` as RGB pixels.

    ``frames`` holds the decoded frames of :func:`strip_indices` (``frames`` -> RGB); landmarks
    from ``sample.lmk`` are drawn on them unless ``landmarks`` is False.
    """
    indices = strip_indices(sample.frames, count)
    width, height, boxes = layout(len(indices))
    tile = boxes["strip"][3] - boxes["strip"][1]
    duration = sample.duration
    fps = sample.fps
    marks = [(i + 0.5) / fps for i in indices]
    steps = np.arange(sample.frames + 1) / fps  # frame t holds from t/fps to (t+1)/fps

    def held(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values, values[-1:]])

    with figure_style():
        figure = new_figure(width, height)
        axes = {name: pixel_axes(figure, x0, y0, x1 - x0, y1 - y0) for name, (x0, y0, x1, y1) in boxes.items()}
        title = (f"{sample.key}    split {sample.meta.get('split', '?')}  |  speaker {sample.meta.get('speaker', '?')}"
                 f"  |  {sample.frames} frames at {fps:g} fps = {duration:.2f} s  |  audio {len(sample.audio)} samples"
                 f" at {sample.sample_rate} Hz")
        figure.text(LEFT / width, 1 - 12 / height, title, fontsize=10, weight="bold", va="top")
        transcript = sample.meta.get("transcript") or sample.meta.get("sentence_text")
        if isinstance(transcript, str) and transcript:
            figure.text(LEFT / width, 1 - 30 / height, f"transcript: {transcript}", fontsize=8, va="top")

        strip = frame_strip([frames[i] for i in indices], [sample.lmk[i] for i in indices] if landmarks else None,
                            tile, radius=1 if tile < 160 else 2)
        ax = axes["strip"]
        ax.imshow(strip, extent=(0, duration, 0, 1), aspect="auto", interpolation="nearest")
        ax.set_yticks([])
        for k, i in enumerate(indices):
            ax.text((k + 0.5) * duration / len(indices), 1.02, f"frame {i} ({(i + 0.5) / fps:.2f} s)",
                    ha="center", va="bottom", fontsize=7, transform=ax.transData, clip_on=False)
        ax.set_ylabel("frames")

        ax = axes["pose"]
        for column, (name, colour) in enumerate((("yaw", "tab:red"), ("pitch", "tab:green"), ("roll", "tab:blue"))):
            ax.step(steps, held(sample.pose[:, column]), where="post", color=colour, lw=1, label=name)
        ax.set_ylabel("pose (deg)")
        ax.legend(loc="upper right", ncol=3, frameon=False)

        ax = axes["blink"]
        ax.step(steps, held(sample.blink), where="post", color="k", lw=1)
        ax.set_ylabel("blink (EAR)")

        ax = axes["pca"]
        for column in range(min(3, sample.pca.shape[1])):
            ax.step(steps, held(sample.pca[:, column]), where="post", lw=1, label=f"code {column + 1}")
        ax.set_ylabel("PCA codes")
        ax.legend(loc="upper right", ncol=3, frameon=False)

        _waveform(axes["audio"], sample, boxes["audio"][2] - boxes["audio"][0])
        _mfcc(axes["mfcc"], sample)

        for name, ax in axes.items():
            ax.set_xlim(0, duration)
            if name != "strip":
                for mark in marks:
                    ax.axvline(mark, color="0.45", lw=0.6, ls=":")
            if name != PANELS[-1][0]:
                ax.tick_params(labelbottom=False)
            ax.yaxis.set_label_coords(-LABEL_X / (boxes[name][2] - boxes[name][0]), 0.5)
        axes[PANELS[-1][0]].set_xlabel("time (s) from the start of frame 0")
        image = figure_to_rgb(figure)
    return SampleFigure(image=image, boxes=boxes, duration=duration, frame_indices=tuple(indices))


def _waveform(ax, sample: Sample, columns: int) -> None:
    audio = np.asarray(sample.audio, dtype=np.float32)
    rate = sample.sample_rate
    if len(audio) > 2 * columns:  # min/max envelope per pixel column: exact look, bounded cost
        edges = np.linspace(0, len(audio), columns + 1).astype(np.int64)
        lows = np.minimum.reduceat(audio, edges[:-1])
        highs = np.maximum.reduceat(audio, edges[:-1])
        times = (edges[:-1] + edges[1:]) / 2 / rate
        ax.fill_between(times, lows, highs, color="tab:blue", lw=0, step="mid")
    else:
        ax.plot(np.arange(len(audio)) / rate, audio, color="tab:blue", lw=0.8)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    limit = max(peak * 1.15, 1e-3)
    ax.set_ylim(-limit, limit)
    ax.set_ylabel("audio")
    words = sample.meta.get("words")
    if isinstance(words, list):
        for n, word in enumerate(words):
            if not isinstance(word, dict) or not {"start", "end", "word"} <= set(word):
                continue
            ax.axvspan(word["start"], word["end"], color="tab:orange" if n % 2 else "tab:olive", alpha=0.15, lw=0)
            ax.text((word["start"] + word["end"]) / 2, limit * 0.92, str(word["word"]), ha="center", va="top",
                    fontsize=7, clip_on=True)


def _mfcc(ax, sample: Sample) -> None:
    rows = sample.mfcc.reshape(-1, sample.mfcc.shape[-1]).astype(np.float64)
    scaled = (rows - rows.mean(axis=0)) / np.maximum(rows.std(axis=0), 1e-6)  # z-score each coefficient
    hop = 1.0 / (sample.mfcc.shape[1] * sample.fps)
    start = MFCC_WINDOW_S / 2 - hop / 2  # row r is centred at r * hop + window / 2
    ax.imshow(scaled.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
              extent=(start, start + len(rows) * hop, -0.5, rows.shape[1] - 0.5))
    ax.set_ylabel("MFCC c0-c12\n(z-scored)")
