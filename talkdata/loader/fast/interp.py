"""Fast path: ``np.interp`` for every column of a (T, C) array at once, bit for bit.

The frame resampling of the FACIAL profile (:func:`talkdata.loader.windows.resample_frames`,
:func:`~talkdata.loader.windows.logits_at_fps`) interpolates many channels at the same times;
``np.interp`` per channel repeats the search of each time among the sample times for every channel.
:class:`Grid` does that search once (cached per frame count and rates) and :func:`interp_rows`
applies numpy's formula with slices and ``take``. ``tests/test_loader_internals.py`` checks it
against ``np.interp`` per channel on real shard values and on NaN / inf.

Imports only numpy.
"""

from __future__ import annotations

import functools

import numpy as np


class Grid:
    """Where ``np.interp`` puts each output time among the input times (shared by every channel).
    ``x`` is increasing, so the points left of ``xp`` are a prefix and those from its last point
    on a suffix: ``x[:lo]`` and ``x[hi:]``."""

    def __init__(self, x: np.ndarray, xp: np.ndarray):
        self.count, self.points = len(x), len(xp)
        if self.points == 0 and self.count:
            raise ValueError("interpolation needs at least one sample point")
        if np.any(np.diff(x) < 0):
            raise ValueError("interpolation times must be increasing")
        self.lo = int(np.searchsorted(x, xp[0], side="left")) if self.points else 0
        self.hi = int(np.searchsorted(x, xp[-1], side="left")) if self.points else 0
        self.hi = max(self.hi, self.lo)
        xi = x[self.lo : self.hi]
        self.j = np.searchsorted(xp, xi, side="right") - 1  # xp[j] <= x < xp[j + 1]
        self.j1 = self.j + 1
        self.step = (xp[self.j1] - xp[self.j])[:, None]
        self.offset = (xi - xp[self.j])[:, None]
        self.back = (xi - xp[self.j1])[:, None]
        self.exact = np.flatnonzero(xi == xp[self.j])


@functools.lru_cache(maxsize=256)
def frame_grid(n_in: int, fps_in: float, n_out: int, fps_out: float) -> Grid:
    return Grid(np.arange(n_out) / fps_out, np.arange(n_in) / fps_in)


def interp_rows(grid: Grid, fp: np.ndarray) -> np.ndarray:
    """``np.interp(x, xp, fp[:, c])`` for every column ``c`` of the (len(xp), C) float64 ``fp`` at once,
    with numpy's formula ``slope * (x - xp[j]) + fp[j]`` and its fallbacks (bit-identical results);
    ``fp[0]`` left of ``xp``, ``fp[-1]`` from its last point on."""
    out = np.empty((grid.count, fp.shape[1]), dtype=np.float64)
    if grid.count == 0:
        return out
    out[: grid.lo], out[grid.hi :] = fp[0], fp[-1]
    if grid.hi > grid.lo:
        lower, upper = fp.take(grid.j, axis=0), fp.take(grid.j1, axis=0)
        values = out[grid.lo : grid.hi]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # np.interp does not warn either
            slope = np.subtract(upper, lower)
            slope /= grid.step
            np.multiply(slope, grid.offset, out=values)
            values += lower
            if len(grid.exact):
                values[grid.exact] = lower[grid.exact]
            bad = np.isnan(values)
            if bad.any():  # non-finite slopes: numpy retries from the right point, then keeps a flat value
                values[...] = np.where(bad, slope * grid.back + upper, values)
                values[...] = np.where(np.isnan(values) & (lower == upper), lower, values)
    return out

