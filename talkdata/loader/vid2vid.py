"""``profile="vid2vid"``: face-vid2vid (Wang, Mallya, Liu; CVPR 2021) training pairs.

NVIDIA released no training code; the inputs follow the FOMM-style ``frames_dataset.py`` the public
re-implementation (zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis) trains with, and
the Hopenet (natanielruiz/deep-head-pose) head-pose pseudo-labels its head-pose loss is trained
against. Per item:

* ``source`` and ``driving`` (3, S, S) float32 RGB in [0, 1] (FOMM's ``img_as_float32``, no
  normalisation), S = 256 (VoxCeleb2) or 512 (TalkingHead-1KH), ``size`` option;
* ``driving_pose`` (3,) float32: yaw, pitch, roll of the driving frame in degrees in **Hopenet's
  convention** (``code/utils.py:draw_axis``): yaw > 0 = face turned toward the image's left,
  pitch > 0 = face tilted up, roll > 0 = clockwise in the image, within Hopenet's output range
  [-99, 96] (66 bins of 3 degrees from -99). That is talkdata's ``pose.npy`` with yaw and roll
  negated (schemas/sample.schema.json has both conventions), clipped to the range;
* ``source_index``, ``driving_index``: the frames' indices.

Options:

* ``pairs="fomm"`` (default): FOMM's sampling, ``np.sort(np.random.choice(T, size=2, replace=True))``,
  so both frames can be the same one; ``pairs="distinct"``: two different frames, sorted;
* ``pairs_per_clip``: pairs per clip and epoch (FOMM draws one pair per clip visit and repeats the
  clip list ``num_repeats`` times; ``pairs_per_clip=75`` matches its VoxCeleb config), drawn from
  the seed per (clip, epoch);
* ``augment=True``: FOMM's ``augmentation_params`` of the VoxCeleb config, drawn per pair:
  horizontal flip of both frames with probability 0.5 (the pose mirrored: yaw and roll negated, as
  Hopenet's own flip augmentation does), time flip with probability 0.5 (source and driving
  swapped, so the source is the later frame), and a colour jitter of 0.1 (brightness, contrast,
  saturation, hue factors drawn once per pair and applied to both frames, in a random order).

Frames are talkdata's aligned crops (build with ``--set crop.size=512`` for 512; a smaller crop is
enlarged bicubically). ``window`` and ``stride`` do not apply.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from .members import Clip
from .frames import resize, to_unit
from .profile_base import ItemContext, Profile, option

#: Hopenet's output range in degrees: bin index 0..65 times 3, minus 99
HOPENET_RANGE = (-99.0, 96.0)
#: talkdata (yaw, pitch, roll) -> Hopenet's: yaw and roll change sign
HOPENET_SIGNS = np.array([-1.0, 1.0, -1.0])
JITTER = 0.1


def hopenet_pose(pose: np.ndarray) -> np.ndarray:
    """talkdata's (..., 3) yaw, pitch, roll in degrees -> Hopenet's convention and range, float32."""
    return np.clip(np.asarray(pose, dtype=np.float64)[..., :3] * HOPENET_SIGNS, *HOPENET_RANGE).astype(np.float32)


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """The pose of the horizontally flipped frame (Hopenet ``datasets.py``: yaw and roll negated)."""
    return (np.asarray(pose) * np.array([-1.0, 1.0, -1.0], dtype=np.float32)).astype(np.float32)


def colour_jitter(frames: np.ndarray, factors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) float32 in [0, 1] with brightness, contrast, saturation factors and a hue shift
    (``factors``: 3 multipliers around 1 and a hue offset in turns) applied in ``order``."""
    out = frames.astype(np.float32, copy=True)
    factors = np.asarray(factors, dtype=np.float32)
    for step in order:
        if step == 0:
            out = out * factors[0]
        elif step == 1:
            gray = (out * np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]).sum(1, keepdims=True)
            out = (out - gray.mean(axis=(2, 3), keepdims=True)) * factors[1] + gray.mean(axis=(2, 3), keepdims=True)
        elif step == 2:
            gray = (out * np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]).sum(1, keepdims=True)
            out = (out - gray) * factors[2] + gray
        else:
            hsv = [cv2.cvtColor(np.ascontiguousarray(np.clip(f, 0, 1).transpose(1, 2, 0)), cv2.COLOR_RGB2HSV)
                   for f in out]
            for image in hsv:
                image[..., 0] = (image[..., 0] + 360.0 * factors[3]) % 360.0
            out = np.stack([cv2.cvtColor(h, cv2.COLOR_HSV2RGB).transpose(2, 0, 1) for h in hsv])
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out


class Vid2Vid(Profile):
    name = "vid2vid"
    required = ("video.mp4",)
    optional = ("pose.npy",)
    default_window = None
    windowed = False
    options = {
        "size": option(int, 256, "side of the frames (256: VoxCeleb2, 512: TalkingHead-1KH)", choices=(256, 512)),
        "pairs_per_clip": option(int, 1, "pairs drawn per clip and epoch", ge=1),
        "pairs": option(str, "fomm", "fomm: FOMM's sampling (the same frame twice is possible); distinct: two frames",
                        choices=("fomm", "distinct")),
        "augment": option(bool, False, "FOMM's VoxCeleb augmentations (flip, time flip, colour jitter)"),
    }

    def fewest_frames(self, window, options, fps):
        if options["pairs"] == "distinct":
            return 2, "two distinct frames (pairs='distinct')"
        return 1, "a frame"

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        total = clip.frames_count
        distinct = ctx.options["pairs"] == "distinct"
        if total < (2 if distinct else 1):
            return
        rng = ctx.rng(clip, "vid2vid")
        pairs = [np.sort(rng.choice(total, size=2, replace=not distinct)) for _ in range(ctx.options["pairs_per_clip"])]
        needed = sorted({int(i) for pair in pairs for i in pair})
        size = ctx.options["size"]
        frames = dict(zip(needed, to_unit(resize(clip.video(needed), size, size))))
        poses = hopenet_pose(clip.arrays["pose"]) if "pose.npy" in ctx.fields else None
        for pair in pairs:
            source, driving = int(pair[0]), int(pair[1])
            images = np.stack([frames[source], frames[driving]])
            pose = poses[driving] if poses is not None else None
            if ctx.options["augment"]:
                flip, reverse = rng.random(2) < 0.5
                factors = np.concatenate([rng.uniform(1 - JITTER, 1 + JITTER, 3), rng.uniform(-JITTER, JITTER, 1)])
                order = rng.permutation(4)
                if reverse:  # FOMM's time flip: the pair in reverse order
                    source, driving, images = driving, source, images[::-1]
                    pose = poses[driving] if poses is not None else None
                if flip:
                    images = images[..., ::-1]
                    pose = mirror_pose(pose) if pose is not None else None
                images = colour_jitter(images, factors, order)
            item = {"__key__": clip.key, "source_index": source, "driving_index": driving,
                    "source": np.ascontiguousarray(images[0]), "driving": np.ascontiguousarray(images[1])}
            if pose is not None:
                item["driving_pose"] = pose
            yield item
