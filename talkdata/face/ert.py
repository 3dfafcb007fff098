"""dlib's 68-point shape model, read from its ``.dat`` file and evaluated in compiled numba code.

The model is the ensemble of regression trees of Kazemi & Sullivan (2014) that dlib's
``shape_predictor`` runs: a mean shape in box coordinates and cascades of trees. Each cascade
samples pixels at offsets from anchor landmarks, the offsets following the current shape's similarity
transform from the mean shape. Every tree compares two of those pixels at each split and adds its
leaf's shape increment.

dlib's own evaluator (the ``dlib-bin`` wheel) takes 4-5 ms per call on our 2-core machine. This one
takes 1.6-1.8 ms for the same model when other work has flushed the CPU's caches between calls (as
in the pipeline), 0.8-0.9 ms when it has not, and gives the same integer points. Most of a call is
reading leaves from memory, so each leaf is prefetched a few trees before it is added. It does the
arithmetic in dlib's order and precision:

- the shape is float32 and leaves are added tree after tree;
- the similarity transform is computed in double, then cast to float32. For 2 x 2 the SVD-based
  Umeyama solution reduces to the closed form used here;
- pixel positions are mapped to the box in double and rounded with ``floor(x + 0.5)``;
- pixels outside the image read as 0.

``tests/test_ert.py`` compares it with ``dlib.shape_predictor`` point for point on real frames.

The file format is dlib's serialization. Every integer is one byte (bit 7 is the sign, the low 4
bits are the length) followed by that many little-endian bytes. A float is two such integers,
mantissa and exponent. The layout is: version 1, the mean shape as a column vector, then the
cascades, each a list of trees (splits ``(idx1, idx2, threshold)``, then leaf column vectors), then
the anchor indices and pixel offsets of each cascade.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..errors import UserError


@dataclass(frozen=True)
class ErtModel:
    mean_shape: np.ndarray  # (2P,) float32, x0 y0 x1 y1 ... in box units
    split_pixels: np.ndarray  # (C, T, S, 2) int32: the two feature pixels each split compares
    thresholds: np.ndarray  # (C, T, S) float32
    leaves: np.ndarray  # (C, T, S + 1, 2P) float32: shape increments
    anchors: np.ndarray  # (C, F) int32: landmark each feature pixel is anchored to
    offsets: np.ndarray  # (C, F, 2) float32: feature pixel offsets in mean-shape units

    @property
    def points(self) -> int:
        return self.mean_shape.size // 2


class _Malformed(Exception):
    pass


def _compiled(func):
    """``func`` compiled by numba, cached on disk next to this file or in numba's user cache folder; where
    neither can be written (a read-only install and home), compiled afresh in each process instead."""
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(func)


@_compiled
def _int(buf, pos):
    """One serialized integer at ``pos``: (value, next position); position -1 past the end."""
    if pos >= buf.size:
        return 0, -1
    head = buf[pos]
    length = head & 0x0F
    if length > 8 or pos + 1 + length > buf.size:
        return 0, -1
    value = np.int64(0)
    for j in range(length):
        value |= np.int64(buf[pos + 1 + j]) << (8 * j)
    if head & 0x80:
        value = -value
    return value, pos + 1 + length


@_compiled
def _float(buf, pos):
    mantissa, pos = _int(buf, pos)
    if pos < 0:
        return np.float32(0.0), -1
    exponent, pos = _int(buf, pos)
    if pos < 0:
        return np.float32(0.0), -1
    return np.float32(np.ldexp(np.float64(mantissa), exponent)), pos


@_compiled
def _vector(buf, pos, out):
    """A float32 column vector of ``out.size`` values (dlib writes its size as -rows, -1)."""
    rows, pos = _int(buf, pos)
    if pos < 0 or rows != -out.size:
        return -1
    cols, pos = _int(buf, pos)
    if pos < 0 or cols != -1:
        return -1
    for i in range(out.size):
        out[i], pos = _float(buf, pos)
        if pos < 0:
            return -1
    return pos


@_compiled
def _forest(buf, pos, split_pixels, thresholds, leaves):
    """One cascade's trees into the (T, ...) arrays; -1 when the bytes do not follow the layout."""
    trees, splits = thresholds.shape
    for t in range(trees):
        count, pos = _int(buf, pos)
        if pos < 0 or count != splits:
            return -1
        for s in range(splits):
            first, pos = _int(buf, pos)
            if pos < 0:
                return -1
            second, pos = _int(buf, pos)
            if pos < 0:
                return -1
            split_pixels[t, s, 0] = first
            split_pixels[t, s, 1] = second
            thresholds[t, s], pos = _float(buf, pos)
            if pos < 0:
                return -1
        count, pos = _int(buf, pos)
        if pos < 0 or count != splits + 1:
            return -1
        for leaf in range(splits + 1):
            pos = _vector(buf, pos, leaves[t, leaf])
            if pos < 0:
                return -1
    return pos


class _Reader:
    def __init__(self, buf: np.ndarray) -> None:
        self.buf, self.pos = buf, 0

    def int(self) -> int:
        value, pos = _int(self.buf, self.pos)
        if pos < 0:
            raise _Malformed("ends early")
        self.pos = pos
        return int(value)

    def peek(self, skip: int = 0) -> int:
        """The integer ``skip`` integers ahead, without consuming anything."""
        start = self.pos
        try:
            for _ in range(skip):
                self.int()
            return self.int()
        finally:
            self.pos = start

    def check(self, pos: int) -> None:
        if pos < 0:
            raise _Malformed("does not follow the shape predictor layout")
        self.pos = pos


def _parse(buf: np.ndarray) -> ErtModel:
    reader = _Reader(buf)
    if reader.int() != 1:
        raise _Malformed("unknown version")
    rows = -reader.peek()
    if rows <= 0 or rows % 2:
        raise _Malformed("bad mean shape")
    mean_shape = np.empty(rows, np.float32)
    reader.check(_vector(buf, reader.pos, mean_shape))
    cascades = reader.int()
    trees, splits = reader.peek(), reader.peek(1)
    if cascades <= 0 or trees <= 0 or splits <= 0 or (splits + 1) & splits:
        raise _Malformed("bad cascade or tree size")
    split_pixels = np.empty((cascades, trees, splits, 2), np.int32)
    thresholds = np.empty((cascades, trees, splits), np.float32)
    leaves = np.empty((cascades, trees, splits + 1, rows), np.float32)
    for c in range(cascades):
        if reader.int() != trees:
            raise _Malformed("cascades of different sizes")
        reader.check(_forest(buf, reader.pos, split_pixels[c], thresholds[c], leaves[c]))
    if reader.int() != cascades:
        raise _Malformed("anchor lists do not match the cascades")
    anchor_lists = [[reader.int() for _ in range(reader.int())] for _ in range(cascades)]
    if reader.int() != cascades:
        raise _Malformed("offset lists do not match the cascades")
    features = len(anchor_lists[0])
    offsets = np.empty((cascades, features, 2), np.float32)
    for c in range(cascades):
        if reader.int() != features or len(anchor_lists[c]) != features:
            raise _Malformed("feature lists of different sizes")
        for f in range(features):
            for k in range(2):
                value, pos = _float(buf, reader.pos)
                reader.check(pos)
                offsets[c, f, k] = value
    if reader.pos != buf.size:
        raise _Malformed("has trailing bytes")
    anchors = np.asarray(anchor_lists, dtype=np.int32)
    if split_pixels.min() < 0 or split_pixels.max() >= features or anchors.min() < 0 or anchors.max() >= rows // 2:
        raise _Malformed("indexes out of range")
    return ErtModel(mean_shape, split_pixels, thresholds, leaves, anchors, offsets)


def load(path: str | Path) -> ErtModel:
    """Read a dlib shape predictor file; one ``UserError`` line when it is unreadable or not one."""
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise UserError(f"cannot read the landmark model {path}: {err.strerror or err}") from None
    try:
        return _parse(buf)
    except (_Malformed, ValueError, IndexError) as err:
        raise UserError(
            f"the landmark model {path} is not a readable dlib shape predictor ({err}); "
            "reinstall face_recognition_models"
        ) from None


#: leaves are prefetched this many trees before they are added: the model's leaves (65 MB) do not stay
#: in the CPU's caches between frames, and waiting on memory for each leaf in turn costs about a fifth of
#: a call (8 was the best of 2-16 on our 2-core machine)
PREFETCH_AHEAD = 8


@intrinsic
def _prefetch(typingctx, array, index):
    """Hint the CPU to load the cache line holding ``array.flat[index]`` (LLVM's ``llvm.prefetch``: a read,
    kept in all cache levels). No effect on any value: only on when memory is read."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]))
        address = builder.bitcast(builder.gep(data, [args[1]]), byte_ptr)
        builder.call(hint, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@_compiled
def _centroid(shape):
    """Mean point of a flat (x0, y0, x1, y1, ...) float32 shape, summed in double in point order (as dlib does)."""
    points = shape.size // 2
    x = 0.0
    y = 0.0
    for i in range(points):
        x += np.float64(shape[2 * i])
        y += np.float64(shape[2 * i + 1])
    return x / points, y / points


@_compiled
def _predict(gray, x0, y0, x1, y1, mean_shape, split_pixels, thresholds, leaves, anchors, offsets, out):
    points = mean_shape.size // 2
    height, width = gray.shape
    box_w = np.float64(x1 - x0)
    box_h = np.float64(y1 - y0)
    shape = mean_shape.copy()

    mean_x, mean_y = _centroid(mean_shape)
    spread = 0.0
    for i in range(points):
        dx = np.float64(mean_shape[2 * i]) - mean_x
        dy = np.float64(mean_shape[2 * i + 1]) - mean_y
        spread += dx * dx + dy * dy
    spread /= points

    cascades, trees, splits = thresholds.shape
    features = anchors.shape[1]
    values = np.empty(features, np.float32)
    chosen = np.empty(trees, np.int64)
    size = shape.size
    flat_leaves = leaves.reshape(-1)  # C-contiguous (C, T, S + 1, 2P), as the reader makes it
    for c in range(cascades):
        # similarity transform from the mean shape to the current one (Umeyama, in double)
        cur_x, cur_y = _centroid(shape)
        a = 0.0
        b = 0.0
        d = 0.0
        e = 0.0
        for i in range(points):
            fx = np.float64(mean_shape[2 * i]) - mean_x
            fy = np.float64(mean_shape[2 * i + 1]) - mean_y
            tx = np.float64(shape[2 * i]) - cur_x
            ty = np.float64(shape[2 * i + 1]) - cur_y
            a += tx * fx
            b += tx * fy
            d += ty * fx
            e += ty * fy
        a /= points
        b /= points
        d /= points
        e /= points
        cos_part = a + e
        sin_part = d - b
        norm = np.sqrt(cos_part * cos_part + sin_part * sin_part)
        scale = norm / spread if spread != 0 else 1.0
        if norm > 0:
            cos_part /= norm
            sin_part /= norm
        else:
            cos_part = 1.0
            sin_part = 0.0
        m00 = np.float32(scale * cos_part)
        m01 = np.float32(-scale * sin_part)
        m10 = np.float32(scale * sin_part)
        m11 = np.float32(scale * cos_part)

        for f in range(features):
            ox = offsets[c, f, 0]
            oy = offsets[c, f, 1]
            k = anchors[c, f]
            px = m00 * ox + m01 * oy + shape[2 * k]
            py = m10 * ox + m11 * oy + shape[2 * k + 1]
            ix = np.int64(np.floor(x0 + box_w * np.float64(px) + 0.5))
            iy = np.int64(np.floor(y0 + box_h * np.float64(py) + 0.5))
            if 0 <= ix < width and 0 <= iy < height:
                values[f] = np.float32(gray[iy, ix])
            else:
                values[f] = np.float32(0.0)

        # walk every tree first, then add the leaves in tree order (dlib's summation order), each leaf
        # prefetched while the ones before it are added
        for t in range(trees):
            node = 0
            while node < splits:
                if values[split_pixels[c, t, node, 0]] - values[split_pixels[c, t, node, 1]] > thresholds[c, t, node]:
                    node = 2 * node + 1
                else:
                    node = 2 * node + 2
            chosen[t] = node - splits
        for t in range(trees):
            if t + PREFETCH_AHEAD < trees:
                start = ((c * trees + t + PREFETCH_AHEAD) * (splits + 1) + chosen[t + PREFETCH_AHEAD]) * size
                for line in range(0, size + 15, 16):  # 16 floats per 64-byte cache line
                    _prefetch(flat_leaves, start + min(line, size - 1))
            leaf = leaves[c, t, chosen[t]]
            for j in range(size):
                shape[j] += leaf[j]

    for i in range(points):
        out[i, 0] = np.floor(x0 + box_w * np.float64(shape[2 * i]) + 0.5)
        out[i, 1] = np.floor(y0 + box_h * np.float64(shape[2 * i + 1]) + 0.5)


def predict(model: ErtModel, gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(P, 2) float64 integer-valued points for the face in ``box`` (left, top, right, bottom)."""
    image = np.ascontiguousarray(gray, dtype=np.uint8)
    if image.ndim != 2:
        raise ValueError(f"expected a gray image, got shape {gray.shape}")
    out = np.empty((model.points, 2), np.float64)
    x0, y0, x1, y1 = (int(v) for v in box)
    _predict(
        image, x0, y0, x1, y1,
        model.mean_shape, model.split_pixels, model.thresholds, model.leaves, model.anchors, model.offsets,
        out,
    )
    return out
