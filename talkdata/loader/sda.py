"""``profile="sda"``: Realistic Speech-Driven Facial Animation with GANs (Vougioukas et al.).

Follows ``sda/sda.py`` of ``DinoMan/speech-driven-animation`` (no training code was released; the
inference wrapper defines the inputs):

* frames: 96 (W) x 128 (H) RGB, ``Normalize(0.5, 0.5)`` -> [-1, 1]: ``frames``
  (W_frames, 3, 128, 96);
* audio: raw 16 kHz waveform in [-1, 1] (PCM16 / 32767), one 3200-sample (0.2 s) window per video
  frame, stride ``int(16000 / fps)`` = 640 samples, zero padding of ``3200 - 640`` split
  ``floor`` left / ``ceil`` right exactly as ``_cut_sequence_`` does: ``audio``
  (W_frames, 3200), window ``t`` = samples ``[640 t - 1280, 640 t + 1920)`` of the clip;
* ``identity`` (3, 128, 96): the still frame the identity encoder sees.

Choices where the reference leaves one:

* the still identity frame is the clip's first frame (``identity="first"``, default) or a random
  frame of the clip (``identity="random"``, drawn per clip and epoch from the seed);
* the 3:4 frame is the centre 3/4 of the width of talkdata's square aligned crop, full height,
  resized to 96 x 128 (SDA's face-processor canvas is about 3:4; its mean face and offsets live in
  the unreleased ``.dat`` files). The crop is aligned on SDA's stable points (33, 36, 39, 42, 45)
  with a centred 7-frame average rather than face-processor's forward one;
* items are windows of ``window`` frames (SDA trains on whole clips: pass ``window=None`` and
  ``batch_size=1`` for that).
"""

from __future__ import annotations

from typing import Iterator

from .members import Clip
from .frames import crop_width, resize, to_signed
from .profile_base import ItemContext, Profile, option
from .windows import item_windows, raw_audio_windows


class SDA(Profile):
    name = "sda"
    required = ("audio.wav",)
    optional = ("video.mp4",)
    default_window = 16
    whole_clips = True
    options = {
        "width": option(int, 96, "frame width in pixels (SDA's 96)", ge=1),
        "height": option(int, 128, "frame height in pixels (SDA's 128)", ge=1),
        "audio_samples": option(int, 3200, "raw audio samples per frame window (SDA's 0.2 s at 16 kHz)", ge=1),
        "identity": option(str, "first", "the still identity frame: the clip's first, or one drawn per clip and epoch",
                           choices=("first", "random")),
    }

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        total = clip.frames_count
        window, starts = item_windows(total, ctx.window, ctx.stride)
        if not starts:
            return
        audio = raw_audio_windows(clip.arrays["audio"], total, clip.fps, clip.audio_rate, ctx.options["audio_samples"])
        frames = identity = None
        if "video.mp4" in ctx.fields:
            width, height = ctx.options["width"], ctx.options["height"]
            frames = to_signed(resize(crop_width(clip.video(), width / height), width, height))
            index = 0 if ctx.options["identity"] == "first" else int(ctx.rng(clip, "sda-identity").integers(total))
            identity = frames[index]
        for start in starts:
            item = {"__key__": clip.key, "start": start, "audio": audio[start : start + window]}
            if frames is not None:
                item["frames"] = frames[start : start + window]
                item["identity"] = identity
            yield item
