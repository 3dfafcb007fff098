"""``profile="atvg"``: ATVG / ATVGnet (Chen et al., CVPR 2019), AT-net and VG-net training inputs.

Follows ``code/dataset.py`` and ``code/utils.py`` of ATVGnet (``lelechen63/ATVGnet``):

* example frame ``r`` and 16 target frames ``r+1 .. r+16`` (AT-net LSTM loader
  ``LRW_1D_lstm_landmark_pca``);
* landmarks: identity-removed (reference = the clip's LAST frame) and multiplied by 5 before a 6-d
  PCA: ``example_pca`` (6,) and ``target_pca`` (16, 6). They are the
  first 6 codes of ``pca.npy`` times ``5 / shape.scale``: PCA of ``5 x`` is the PCA of ``x`` with
  the same components, a ``5 x`` mean and ``5 x`` codes, so this is exact for any build scale;
* audio for target frame ``t``: MFCC rows ``[(t - 3) * 4, (t + 4) * 4)`` without c0:
  ``mfcc`` (16, 28, 12) - 3 frames of context either side, 4 rows (10 ms hop) per 40 ms frame;
* frames (VG-net, ``LRWdataset1D_lstm_gt``): ``frames`` (16, 3, 128, 128) for the targets and
  ``example_frame`` (3, 128, 128), RGB, ``ToTensor`` + ``Normalize(0.5, 0.5)`` i.e. [-1, 1].

Choices where the reference leaves one (also in README "Loading for training"):

* window starts: ATVG draws ``r`` at random (``U{3..7}`` on LRW, ``U{6..49}`` on GRID). Here the
  example frames are ``r = 3, 3 + stride, ...`` while the last target's audio context
  ``mfcc[(r + 16 - 3) * 4 : (r + 16 + 4) * 4]`` exists in the MFCC that ``python_speech_features``
  gives for the clip's audio: it has ``4 T - 1`` rows for ``T`` frames (the last 10 ms hop has no full
  25 ms window), so ``r <= T - 21``; at ``r = T - 20`` ATVG's slice has 27 rows and its
  ``torch.stack`` fails. ``shuffle=True`` mixes the windows. ATVG's ranges are subsets of these.
* frames are talkdata's aligned crops (similarity on points 33, 36, 39, 42, 45, smoothed) resized
  to 128 with area interpolation, not ATVG's per-frame 163-px warp on points 27-44 cut to
  ``[1:129]``: same size and value range, different framing.
* the dataset must be built with ``shape.reference="last"`` (the default), ATVG's reference frame.

ATVG's published basis (``basis="DIR"``, a folder with ATVGnet's ``basics/`` files ``S.npy``,
``mean_shape_norm.npy``, ``mean_shape_img.npy`` and ``U_lrw1.npy`` / ``mean_lrw1.npy``, or
``U_grid.npy`` / ``mean_grid.npy`` with ``basis_pca="grid"``): the codes are then computed from the
crop landmarks ``lmk.npy`` exactly as ATVGnet's ``normLmarks`` (code/utils.py:79-100) and its PCA do:
procrustes onto ``mean_shape_img``, the motion relative to the last frame projected onto the 100
rows of ``S``, minus ATVG's mouth-closing offset, on ``mean_shape_norm``; then ``(5 x - mean) @ U[:, :6]``.
That is what the pretrained ATVGnet expects. The default (talkdata's own basis, ``pca.npy``) keeps all
136 dimensions of the motion (no projection onto ``S``, no mouth offset) and its own fitted PCA.

VG-net (``vgnet=True``, needs ``video.mp4``; ``LRWdataset1D_lstm_gt``, code/dataset.py:318-360): also
``example_frame`` drawn at random from the whole clip (``example_frame_index``, per clip, start and epoch
from the seed) instead of frame ``r``, and the x5 136-d normalised landmarks ``example_landmark`` (136,) and
``landmarks`` (16, 136) (``normLmarks`` output with ``basis``, else talkdata's ``lmk_norm.npy``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import UserError
from ..face.shape import ATVG_PCA_FILES, AtvgBasis, load_atvg_basis
from .members import Clip
from .frames import resize, to_signed
from .profile_base import ItemContext, Profile, option
from .windows import atvg_mfcc_windows, window_starts

ATVG_SCALE = 5.0
CODES = 6
CONTEXT = 3  # MFCC context frames before and after each target frame
#: frames after the last target that its audio context needs: 3 of context, and the one frame whose
#: last MFCC row python_speech_features does not produce
MARGIN = CONTEXT + 1
FIRST_EXAMPLE = 3  # smallest example frame index r (ATVG's LRW range starts at 3)


#: ATVGnet normLmarks' mouth offset: -0.06 along S[1], on the lip coordinates (points 48-67) only
MOUTH_PARAM = -0.06
LIPS_136 = slice(48 * 2, 136)


def atvg_norm_landmarks(landmarks: np.ndarray, basis: AtvgBasis) -> np.ndarray:
    """ATVGnet's ``normLmarks`` (code/utils.py:79-100): (T, 68, 2) landmarks -> (T, 136) shapes."""
    from scipy.spatial import procrustes

    norms, reference = [], None
    for frame in np.asarray(landmarks, dtype=np.float64):
        reference, moved, _ = procrustes(basis.mean_img, frame)
        norms.append(moved.reshape(136))
    if reference is None:
        return np.zeros((0, 136))
    mean_std = reference.reshape(136)
    mouth = basis.mean_norm.copy()
    mouth[LIPS_136] += MOUTH_PARAM * basis.S[1, LIPS_136]
    open_mouth = basis.S @ (mouth - basis.mean_norm)
    init = basis.S @ (norms[-1] - mean_std)
    params = (np.stack(norms) - mean_std) @ basis.S.T - init - open_mouth
    return params @ basis.S + basis.mean_norm


class ATVG(Profile):
    name = "atvg"
    optional = ("mfcc.npy", "video.mp4")
    default_window = 16
    options = {
        "size": option(int, 128, "side of the frames in pixels (VG-net's 128)", ge=1),
        # a folder given as str or os.PathLike: checked when its files are read (setup)
        "basis": None,
        "basis_pca": option(str, "lrw1", "which of ATVGnet's PCA files goes with basis",
                            choices=tuple(ATVG_PCA_FILES)),
        "vgnet": option(bool, False, "VG-net items: a random example frame and the 136-d landmarks (needs video.mp4)"),
    }

    def field_sets(self, options):
        if options["basis"] is not None:
            return ("lmk.npy",), self.optional
        return ("pca.npy",) + (("lmk_norm.npy",) if options["vgnet"] else ()), self.optional

    def setup(self, dataset, fields, options):
        if options["vgnet"] and "video.mp4" not in fields:
            raise UserError("profile 'atvg' with vgnet=True needs video.mp4 (VG-net's frames); add it to fields")
        if options["basis"] is not None:
            try:
                return {"basis": load_atvg_basis(options["basis"], options["basis_pca"])}
            except ValueError as exc:
                raise UserError(str(exc)) from None
        shape = dataset.manifest.get("shape_model") or {}
        settings = shape.get("settings", {})
        if shape.get("components", 0) < CODES:
            raise UserError(f"profile 'atvg' needs at least {CODES} PCA codes, {dataset.source} has "
                            f"{shape.get('components', 0)}; rebuild with --set shape.n_components=20")
        if settings.get("reference", "last") != "last":
            raise UserError(f"profile 'atvg' needs landmarks identity-removed against the last frame (ATVG); "
                            f"{dataset.source} was built with shape.reference={settings['reference']!r}: rebuild "
                            "with --set shape.reference=\"last\"")
        return {"code_scale": ATVG_SCALE / float(settings.get("scale", 1.0))}

    def fewest_frames(self, window, options, fps):
        before = FIRST_EXAMPLE + 1
        return before + window + MARGIN, (f"the window, {before} frames before it for the example frame and MFCC "
                                          f"context, {MARGIN} after it for MFCC context")

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        starts = window_starts(clip.frames_count, ctx.window, ctx.stride, first=FIRST_EXAMPLE + 1, margin=MARGIN)
        if not starts:
            return
        basis = ctx.setup.get("basis")
        shapes = None
        if basis is not None:
            shapes = ATVG_SCALE * atvg_norm_landmarks(clip.arrays["lmk"], basis)
            codes = ((shapes - basis.mean) @ basis.U[:, :CODES]).astype(np.float32)
        else:
            codes = clip.arrays["pca"][:, :CODES].astype(np.float32) * np.float32(ctx.setup["code_scale"])
            if ctx.options["vgnet"]:
                shapes = ATVG_SCALE * clip.arrays["lmk_norm"].reshape(clip.frames_count, 136).astype(np.float64)
        frames = None
        if "video.mp4" in ctx.fields:
            size = ctx.options["size"]
            frames = to_signed(resize(clip.video(), size, size))
        for start in starts:
            example = start - 1
            targets = list(range(start, start + ctx.window))
            item = {"__key__": clip.key, "start": start, "example_index": example,
                    "example_pca": codes[example], "target_pca": codes[start : start + ctx.window]}
            if "mfcc.npy" in ctx.fields:
                item["mfcc"] = atvg_mfcc_windows(clip.arrays["mfcc"], targets, CONTEXT, CONTEXT, drop_c0=True)
            if ctx.options["vgnet"]:
                drawn = int(ctx.rng(clip, "atvg-vgnet", start).integers(clip.frames_count))
                item["example_frame_index"] = drawn
                item["example_frame"] = frames[drawn]
                item["example_landmark"] = shapes[drawn].astype(np.float32)
                item["landmarks"] = shapes[start : start + ctx.window].astype(np.float32)
                item["frames"] = frames[start : start + ctx.window]
            elif frames is not None:
                item["example_frame"] = frames[example]
                item["frames"] = frames[start : start + ctx.window]
            yield item
