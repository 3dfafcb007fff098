"""``profile="diffused_heads"``: Diffused Heads (Stypułkowski et al., WACV 2024) training samples.

Follows ``datasets/datasets.py`` (``AudioVisualDataset.__getitem__`` / ``get_ids``) and
``models/diffusion.py`` (``lip_loss``) of the ``train`` branch of ``MStypulkowski/diffused-heads``,
with ``configs/config.yaml`` (``img_resize: 128``, ``identity_frame: random``,
``n_motion_frames: 2``, ``n_audio_motion_embs: 2``, ``grayscale_motion: true``).
One item per target frame ``t``:

* ``frame`` (3, 128, 128): frame ``t``, ``(x / 255) * 2 - 1`` -> [-1, 1];
* ``identity`` (3, 128, 128): the identity frame, a random frame other than ``t``
  (``identity="random"``) or frame 0 (``identity="first"``, then ``t`` runs over ``1 .. T-1``);
* ``motion`` (2, 128, 128): frames ``t-2, t-1`` in grayscale (ITU-R 601 luma, [-1, 1]); when
  ``t < 2`` the missing ones are the identity frame, placed first, as ``get_ids`` does;
* ``audio`` (5, 3200): raw 16 kHz windows of frames ``t-2 .. t+2`` (indices clamped to the clip:
  edge replication as in ``get_ids``). Each is the SDA window of that frame (3200 samples, hop 640,
  1280 zeros padded at both ends of the clip, ``utils.py:create_windowed_sequence``), with the
  samples as ``torchaudio.load`` gives them (PCM16 / 32768, ``utils.py:get_audio_emb``): Diffused Heads feeds these windows to the SDA audio
  encoder and trains on the 256-d embeddings, which talkdata does not compute - run your encoder
  (the released ``audio_encoder.pt`` or any other) on ``audio``;
* ``lips`` (20, 2): landmarks 48-67 (x, y) of the **identity** frame in 128-px coordinates (the
  released loader reads ``lmks[frame_ids[1]]``, the identity frame; ``lips_frame="target"`` takes
  frame ``t`` instead), and ``lip_box`` (4,) int64 ``x0, y0, x1, y1``: ``floor(min) - 5`` and
  ``ceil(max) + 5`` clamped to the image, the region ``lip_loss`` crops (``[y0:y1, x0:x1]``).

Clip-level audio (``audio="clip"``): Diffused Heads' embeddings come from the SDA encoder's GRU,
whose state runs over the whole clip from window 0 (``utils.py:AudioEncoder``), so the windows of one
item cannot reproduce them. With ``audio="clip"`` each clip first gives one item
``{"__key__", "kind": "clip_audio", "audio_windows": (T, 3200), "frame_indices": (T,) int64}``
holding every window of the clip in order (window ``t`` is frame ``t``'s), on which the original
encoder is run as the paper's code does to get the (T, 256) embeddings; then come the clip's per-frame
items (``"kind": "frame"``), which carry ``audio_index`` (5,) int64, the rows ``t-2 .. t+2`` (edge
replicated) of those embeddings, instead of ``audio``. Such a stream mixes two kinds of items: batch
it per kind (or iterate without a collate). The default ``audio="windows"`` gives ``audio`` (5, 3200).

Choices: items are enumerated (``t = 0, stride, 2 stride, ...``; default stride 1: every frame once
per epoch) where the released loader draws one random ``t`` per clip and ``__getitem__``; the
identity frame is drawn per (clip, t, epoch) from the seed. Frames are talkdata's square aligned
crops resized with area interpolation (face-processor's offsets are unpublished).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .members import Clip
from .frames import resize, to_gray_signed, to_signed
from .profile_base import ItemContext, Profile, option
from .windows import clamp, raw_audio_windows, window_starts

MOTION_FRAMES = 2
AUDIO_CONTEXT = 2
LIPS = slice(48, 68)
LIP_MARGIN = 5


def torchaudio_scale(audio: np.ndarray) -> np.ndarray:
    """Samples decoded as PCM16 / 32767 -> PCM16 / 32768, the scale ``torchaudio.load`` returns
    (exact: the PCM16 integers are recovered by rounding, and ``pcm / 2 ** 15`` is a float32)."""
    return (np.round(audio.astype(np.float64) * 32767.0) / 32768.0).astype(np.float32)


def other_frame(draw: int, t: int) -> int:
    """Map a uniform draw in ``[0, T-1)`` to a uniform frame in ``[0, T)`` other than ``t``."""
    return draw + (draw >= t)


def lip_box(lips: np.ndarray, size: int, margin: int = LIP_MARGIN) -> np.ndarray:
    """``x0, y0, x1, y1`` of ``lip_loss``'s crop around (20, 2) lip points in a ``size`` image."""
    low = np.floor(lips.min(axis=0)).astype(np.int64) - margin
    high = np.ceil(lips.max(axis=0)).astype(np.int64) + margin
    return np.array([max(0, low[0]), max(0, low[1]), min(size, high[0]), min(size, high[1])], dtype=np.int64)


class DiffusedHeads(Profile):
    name = "diffused_heads"
    required = ("video.mp4",)
    optional = ("audio.wav", "lmk.npy")
    default_window = 1
    window_fixed = True
    options = {
        "size": option(int, 128, "side of the frames in pixels (img_resize: 128)", ge=1),
        "identity": option(str, "random", "the identity frame: any frame but the target, or frame 0",
                           choices=("random", "first")),
        "lips_frame": option(str, "identity", "whose lip landmarks: the identity frame's (as released) or the target's",
                             choices=("identity", "target")),
        "audio_samples": option(int, 3200, "raw audio samples per frame window (SDA's 0.2 s at 16 kHz)", ge=1),
        "audio": option(str, "windows", "windows: (5, 3200) per item; clip: one item of every window per clip",
                        choices=("windows", "clip")),
    }

    def fewest_frames(self, window, options, fps):
        return 2, "a target frame and another identity frame"

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        total = clip.frames_count
        first = 1 if ctx.options["identity"] == "first" else 0
        targets = window_starts(total, 1, ctx.stride, first=first)
        if total < 2 or not targets:
            return
        size = ctx.options["size"]
        rgb = resize(clip.video(), size, size)
        frames, gray = to_signed(rgb), to_gray_signed(rgb)
        audio = lips = None
        if "audio.wav" in ctx.fields:
            audio = raw_audio_windows(torchaudio_scale(clip.arrays["audio"]), total, clip.fps, clip.audio_rate,
                                      ctx.options["audio_samples"])
        if "lmk.npy" in ctx.fields:
            crop = clip.meta.get("crop_size", clip.video().shape[1])
            lips = clip.arrays["lmk"][:, LIPS].astype(np.float32) * np.float32(size / crop)
        clip_mode = audio is not None and ctx.options["audio"] == "clip"
        if clip_mode:
            yield {"__key__": clip.key, "kind": "clip_audio", "audio_windows": audio,
                   "frame_indices": np.arange(total, dtype=np.int64)}
        rng = ctx.rng(clip, "diffused_heads")
        for t in targets:
            if ctx.options["identity"] == "first":
                identity = 0
            else:
                identity = other_frame(int(rng.integers(total - 1)), t)
            past = [identity] * max(MOTION_FRAMES - t, 0) + list(range(max(t - MOTION_FRAMES, 0), t))
            item = {"__key__": clip.key, "index": t, "identity_index": identity, "frame": frames[t],
                    "identity": frames[identity], "motion": gray[past]}
            context = clamp(range(t - AUDIO_CONTEXT, t + AUDIO_CONTEXT + 1), total)
            if clip_mode:
                item["kind"] = "frame"
                item["audio_index"] = context
            elif audio is not None:
                item["audio"] = audio[context]
            if lips is not None:
                points = lips[identity if ctx.options["lips_frame"] == "identity" else t]
                item["lips"] = points
                item["lip_box"] = lip_box(points, size)
            yield item
