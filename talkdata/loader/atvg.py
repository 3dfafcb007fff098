"""``profile="atvg"``: ATVG / ATVGnet (Chen et al., CVPR 2019), AT-net and VG-net training inputs.

Follows ``code/dataset.py`` of ATVGnet (reference/systems_preprocessing.md sections 1.2, 1.4-1.6):

* example frame ``r`` and 16 target frames ``r+1 .. r+16`` (AT-net LSTM loader
  ``LRW_1D_lstm_landmark_pca``);
* landmarks: identity-removed (reference = the clip's LAST frame, section 1.4) and multiplied by 5
  before a 6-d PCA (section 1.5): ``example_pca`` (6,) and ``target_pca`` (16, 6). They are the
  first 6 codes of ``pca.npy`` times ``5 / shape.scale``: PCA of ``5 x`` is the PCA of ``x`` with
  the same components, a ``5 x`` mean and ``5 x`` codes, so this is exact for any build scale;
* audio for target frame ``t``: MFCC rows ``[(t - 3) * 4, (t + 4) * 4)`` without c0 (section 1.2,
  1.6): ``mfcc`` (16, 28, 12) - 3 frames of context either side, 4 rows (10 ms hop) per 40 ms frame;
* frames (VG-net, ``LRWdataset1D_lstm_gt``): ``frames`` (16, 3, 128, 128) for the targets and
  ``example_frame`` (3, 128, 128), RGB, ``ToTensor`` + ``Normalize(0.5, 0.5)`` i.e. [-1, 1].

Choices where the reference leaves one (also in README "Loading for training"):

* window starts: ATVG draws ``r`` at random (``U{3..7}`` on LRW, ``U{6..49}`` on GRID). Here the
  example frames are ``r = 3, 3 + stride, ...`` while the last target's audio context fits in the
  clip (``r + 16 + 3 < T``); ``shuffle=True`` mixes the windows. ATVG's ranges are subsets of these.
* frames are talkdata's aligned crops (similarity on points 33, 36, 39, 42, 45, smoothed) resized
  to 128 with area interpolation, not ATVG's per-frame 163-px warp on points 27-44 cut to
  ``[1:129]``: same size and value range, different framing.
* the dataset must be built with ``shape.reference="last"`` (the default), ATVG's reference frame.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import UserError
from .decode import Clip
from .frames import resize, to_signed
from .profile_base import ItemContext, Profile, positive_int
from .windows import atvg_mfcc_windows, window_starts

ATVG_SCALE = 5.0
CODES = 6
CONTEXT = 3  # MFCC context frames before and after each target frame
FIRST_EXAMPLE = 3  # smallest example frame index r (ATVG's LRW range starts at 3)


class ATVG(Profile):
    name = "atvg"
    required = ("pca.npy",)
    optional = ("mfcc.npy", "video.mp4")
    default_window = 16
    options = {"size": 128}

    def setup(self, dataset, fields, options):
        positive_int("size", options["size"])
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

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        starts = window_starts(clip.frames_count, ctx.window, ctx.stride, first=FIRST_EXAMPLE + 1, margin=CONTEXT)
        if not starts:
            return
        codes = clip.arrays["pca"][:, :CODES].astype(np.float32) * np.float32(ctx.setup["code_scale"])
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
            if frames is not None:
                item["example_frame"] = frames[example]
                item["frames"] = frames[start : start + ctx.window]
            yield item
