"""``profile=None``: plain windows of the shard fields, all cut to the same frames.

Item for the window of frames ``[start, start + W)`` (``window=None``: the whole clip, W = T):

* ``video`` (W, S, S, 3) uint8 RGB (``size=N`` resizes to N x N);
* ``audio`` (round(W / fps * 16000),) float32, from sample ``round(start / fps * 16000)``;
* ``mfcc`` (W, 4, 13), ``pca`` (W, K), ``lmk`` / ``lmk_norm`` / ``lmk_src`` (W, 68, 2), ``pose``
  (W, 6), ``blink`` (W,), ``affine`` (W, 2, 3), ``bbox`` (W, 4): rows ``start .. start + W - 1`` of the
  field;
* ``deepspeech`` (round(W / fps * 50), 29): the 50 Hz logit steps of the same span, from step
  ``round(start / fps * 50)`` (zero rows past the clip's last step);
* ``__key__`` and ``start``.

Windows start at ``0, stride, 2 * stride, ...`` and must fit in the clip (a clip shorter than the
window gives no item).
"""

from __future__ import annotations

from typing import Iterator

from .members import Clip, field_key
from .frames import resize
from .profile_base import ItemContext, Profile, option
from .windows import DEEPSPEECH_RATE, cut_audio, item_windows, sample_span

STANDARD = ("video.mp4", "audio.wav", "lmk.npy", "lmk_norm.npy", "pca.npy", "mfcc.npy", "pose.npy", "blink.npy")
EXTRA = ("deepspeech.npy", "lmk_src.npy", "affine.npy", "bbox.npy")


class Raw(Profile):
    name = "None"  # load(profile=None)
    optional = STANDARD + EXTRA
    default_window = 16
    whole_clips = True
    options = {"size": option(int | None, None, "resize video frames to size x size (None: as built)", ge=1)}

    def default_fields(self, dataset, options):
        """Every standard field, plus ``deepspeech.npy`` when the dataset has it."""
        return STANDARD + (("deepspeech.npy",) if "deepspeech" in dataset.audio_features else ())

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        total = clip.frames_count
        window, starts = item_windows(total, ctx.window, ctx.stride)
        if not starts:
            return
        video = None
        if "video.mp4" in ctx.fields:
            video = clip.video()
            if ctx.options["size"]:
                video = resize(video, ctx.options["size"], ctx.options["size"])
        for start in starts:
            item = {"__key__": clip.key, "start": start}
            for name in sorted(ctx.fields):
                key = field_key(name)
                if name == "video.mp4":
                    item[key] = video[start : start + window]
                elif name == "audio.wav":
                    item[key] = cut_audio(clip.arrays[key], *sample_span(start, window, clip.fps, clip.audio_rate))
                elif name == "deepspeech.npy":
                    item[key] = cut_audio(clip.arrays[key], *sample_span(start, window, clip.fps, DEEPSPEECH_RATE))
                else:
                    item[key] = clip.arrays[key][start : start + window]
            yield item

