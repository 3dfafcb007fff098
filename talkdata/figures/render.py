"""Drawing primitives shared by the dataset card and `talkdata inspect`: landmarks on frames, frame
strips, matplotlib figures rendered to numpy RGB, and deterministic PNG bytes.

Every function here is pure: arrays in, a new ``uint8`` RGB array (H, W, 3) out. Figures are made
with matplotlib's Agg canvas directly (no pyplot state, no global backend switch), under
matplotlib's default style so that a user's ``matplotlibrc`` cannot change the pixels, and PNGs
are written without any text chunk (no software version, no time): the same arrays always give
the same bytes with the same library versions.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence

import numpy as np

from ..face.points import BROWS, JAW, LEFT_EYE, LIPS, NOSE, RIGHT_EYE, N_POINTS

#: one colour per iBUG region, so that a swapped or misplaced group is visible at a glance
REGION_COLOURS = (
    (JAW, (0, 220, 255)),
    (BROWS, (255, 200, 0)),
    (NOSE, (255, 120, 0)),
    (RIGHT_EYE, (0, 255, 60)),
    (LEFT_EYE, (0, 255, 60)),
    (LIPS, (255, 0, 200)),
)

DPI = 100


def landmark_colours() -> np.ndarray:
    """(68, 3) uint8 colour of each landmark."""
    colours = np.zeros((N_POINTS, 3), dtype=np.uint8)
    for region, colour in REGION_COLOURS:
        colours[list(region)] = colour
    return colours


def draw_landmarks(image: np.ndarray, points: np.ndarray, radius: int = 2) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) with a filled disk of ``radius`` pixels at each (x, y) point.

    Points are in pixel coordinates (pixel centres at integers, as ``cv2.warpAffine`` produces
    them); points that are not finite or fall outside the image are skipped.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    colours = landmark_colours() if len(points) == N_POINTS else np.tile([[255, 0, 200]], (len(points), 1))
    keep = np.isfinite(points).all(axis=1)
    centres = np.rint(points[keep]).astype(np.int64)
    colours = colours[keep]
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    inside = dx * dx + dy * dy <= radius * radius + radius  # a round disk also for small radii
    dx, dy = dx[inside], dy[inside]
    xs = centres[:, 0:1] + dx[None, :]
    ys = centres[:, 1:2] + dy[None, :]
    colour = np.repeat(colours[:, None, :], len(dx), axis=1)
    valid = (xs >= 0) & (xs < out.shape[1]) & (ys >= 0) & (ys < out.shape[0])
    out[ys[valid], xs[valid]] = colour[valid]
    return out


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square ``image`` scaled to ``size`` x ``size`` (area averaging when shrinking)."""
    import cv2

    if image.shape[0] == size and image.shape[1] == size:
        return np.array(image, dtype=np.uint8, copy=True)
    interpolation = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interpolation)


def landmark_tile(frame: np.ndarray, points: np.ndarray | None, size: int, radius: int = 2) -> np.ndarray:
    """``frame`` scaled to ``size`` px with its landmarks (in the frame's pixels) drawn at that scale."""
    tile = resize(frame, size)
    if points is None:
        return tile
    scale = size / frame.shape[1]
    # pixel centres: x_small + 0.5 = (x + 0.5) * scale
    return draw_landmarks(tile, (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5, radius)


def frame_strip(frames: Sequence[np.ndarray], points: Sequence[np.ndarray] | None, tile: int,
                radius: int = 2) -> np.ndarray:
    """Frames side by side, each scaled to ``tile`` px, with landmarks when ``points`` is given."""
    tiles = [landmark_tile(f, None if points is None else points[i], tile, radius) for i, f in enumerate(frames)]
    return np.concatenate(tiles, axis=1)


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """matplotlib's default style with small fonts, whatever the user's matplotlibrc says."""
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context({
        "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
        "legend.fontsize": 7, "figure.dpi": DPI, "savefig.dpi": DPI, "image.interpolation": "nearest",
    }):
        yield


def new_figure(width_px: int, height_px: int):
    """A matplotlib Figure of exactly ``width_px`` x ``height_px`` pixels on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def pixel_axes(figure, x0: float, y0: float, width: float, height: float):
    """Axes placed by pixel box: (x0, y0) is the top-left corner, in pixels from the figure's top-left."""
    fig_w, fig_h = figure.get_size_inches() * DPI
    return figure.add_axes((x0 / fig_w, 1 - (y0 + height) / fig_h, width / fig_w, height / fig_h))


def figure_to_rgb(figure) -> np.ndarray:
    """Render ``figure`` and return its pixels as (H, W, 3) uint8."""
    figure.canvas.draw()
    return np.array(figure.canvas.buffer_rgba(), dtype=np.uint8)[..., :3].copy()


def png_bytes(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB image, with no metadata chunks (deterministic)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(buffer, format="png", compress_level=6)
    return buffer.getvalue()


def read_png(data: bytes) -> np.ndarray:
    """RGB pixels of PNG bytes (for tests and tools)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).copy()
