"""``profile="vid2vid"``: face-vid2vid (Wang, Mallya, Liu; CVPR 2021) training pairs.

NVIDIA released no training code; the inputs follow reference/systems_preprocessing.md section 5:
the FOMM-style ``frames_dataset.py`` the public re-implementation trains with (5.4) and the
Hopenet head-pose pseudo-labels (5.4). Per item:

* ``source`` and ``driving`` (3, S, S) float32 RGB in [0, 1] (FOMM's ``img_as_float32``, no
  normalisation), S = 256 (VoxCeleb2) or 512 (TalkingHead-1KH), ``size`` option;
* ``driving_pose`` (3,) float32: yaw, pitch, roll of the driving frame in degrees (talkdata's
  ``pose.npy``; conventions in schemas/sample.schema.json: yaw > 0 = face turned to the image's
  right, pitch > 0 = up, roll > 0 = counter-clockwise), the labels face-vid2vid gets from Hopenet;
* ``source_index`` < ``driving_index``: two distinct frames of the clip, sorted as FOMM sorts them.

Choices: ``pairs_per_clip`` pairs per clip and epoch (FOMM draws one pair per clip visit and
repeats the clip list ``num_repeats`` times; ``pairs_per_clip=75`` matches its VoxCeleb config),
drawn from the seed per (clip, epoch); distinct frames (FOMM's ``np.random.choice`` allows the same
frame twice). Frames are talkdata's aligned crops (build with ``--set crop.size=512`` for 512; a
smaller crop is enlarged bicubically). ``window`` and ``stride`` do not apply.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .decode import Clip
from .frames import resize, to_unit
from .profile_base import ItemContext, Profile, choose, positive_int


class Vid2Vid(Profile):
    name = "vid2vid"
    required = ("video.mp4",)
    optional = ("pose.npy",)
    default_window = None
    windowed = False
    options = {"size": 256, "pairs_per_clip": 1}

    def setup(self, dataset, fields, options):
        choose("size", options["size"], (256, 512))
        positive_int("pairs_per_clip", options["pairs_per_clip"])
        return {}

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        total = clip.frames_count
        if total < 2:
            return
        rng = ctx.rng(clip, "vid2vid")
        pairs = [np.sort(rng.choice(total, size=2, replace=False)) for _ in range(ctx.options["pairs_per_clip"])]
        needed = sorted({int(i) for pair in pairs for i in pair})
        size = ctx.options["size"]
        frames = dict(zip(needed, to_unit(resize(clip.video(needed), size, size))))
        for source, driving in pairs:
            item = {"__key__": clip.key, "source_index": int(source), "driving_index": int(driving),
                    "source": frames[int(source)], "driving": frames[int(driving)]}
            if "pose.npy" in ctx.fields:
                item["driving_pose"] = clip.arrays["pose"][int(driving), :3].astype(np.float32)
            yield item
