"""``profile="facial"``: FACIAL (Zhang et al., ICCV 2021) audio2face training sequences.

Follows reference/systems_preprocessing.md section 2 (``audio2face/_utils/audio_handler.py``,
``audio2face/dataset102.py`` of FACIAL, whose windowing is VOCA's):

* audio: DeepSpeech v0.1.0 logits (``deepspeech.npy``) at **30 fps** (section 2.2 step 5). Shards
  at another rate are resampled per channel by linear interpolation from ``i / fps`` to
  ``j / 30`` (``round(T / fps * 30)`` frames), the same ``np.interp`` FACIAL applies to the 50 Hz
  logits. Then 8 zero rows are padded at both ends and window ``j`` is padded rows ``j .. j+15``
  (step 6): ``audio`` (L, 16, 29), row 8 of each window is its own frame;
* targets (section 2.4): ``pose`` (L, 3) = pitch, yaw, roll in degrees, z-scored per clip (mean
  and standard deviation over the whole resampled clip, ``ddof=0``; a constant angle is only
  centred), with the clip's ``pose_mean`` / ``pose_std`` (3,) to undo it; ``blink`` (L,);
* sequences of L = 128 frames (``window``) starting at ``0, stride, ...`` (FACIAL: every start,
  ``stride=1``).

Choices where the reference leaves one:

* ``blink`` is talkdata's eye aspect ratio (about 0.3 open, near 0 closed), unnormalised like
  FACIAL's raw OpenFace ``AU45_r``, which grows when the eye closes (0-5);
* windows are cut from the whole clip's padded features, so only the clip's first and last 8
  frames see zero rows, as in FACIAL; the last full sequence is included (FACIAL's
  ``range(0, N - 128)`` leaves it out);
* a clip without ``deepspeech.npy`` is an error, never a silent switch to MFCC. For experiments
  without a DeepSpeech model, ``features="mfcc"`` explicitly uses each frame's 4 MFCC rows
  flattened (52 values), resampled and windowed the same way: ``audio`` (L, 16, 52);
* ``fps=None`` keeps the shards' rate (no resampling).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import UserError
from .decode import Clip, HOW_TO_GET
from .profile_base import ItemContext, Profile, choose
from .windows import facial_window_view, item_windows, resample_frames

PAD = 8
WIN = 16
#: pose.npy columns (yaw, pitch, roll, tx, ty, tz) -> FACIAL's pitch, yaw, roll
PITCH_YAW_ROLL = [1, 0, 2]


def zscore(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column z-score over time; columns with zero spread are only centred."""
    count = max(len(values), 1)
    mean = values.sum(axis=0) / count  # numpy's mean and std (ddof=0), operation for operation
    centred = values - mean
    std = np.sqrt((centred * centred).sum(axis=0) / count)
    safe = np.where(std > 1e-8, std, 1.0)
    return (centred / safe).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


class FACIAL(Profile):
    name = "facial"
    default_window = 128
    whole_clips = True
    options = {"fps": 30.0, "features": "deepspeech"}

    def field_sets(self, options):
        feature = "deepspeech.npy" if options["features"] == "deepspeech" else "mfcc.npy"
        return (feature, "pose.npy"), ("blink.npy",)

    def setup(self, dataset, fields, options):
        choose("features", options["features"], ("deepspeech", "mfcc"))
        if options["fps"] is not None and not (isinstance(options["fps"], (int, float)) and options["fps"] > 0):
            raise UserError(f"fps must be a positive number or None, got {options['fps']!r}")
        if options["features"] == "deepspeech" and "deepspeech" not in dataset.audio_features:
            raise UserError(f"profile 'facial' needs DeepSpeech features (deepspeech.npy) but {dataset.source} has "
                            f"none: {HOW_TO_GET['deepspeech.npy']}")
        return {}

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        fps = clip.fps if ctx.options["fps"] is None else float(ctx.options["fps"])
        if ctx.options["features"] == "deepspeech":
            features = clip.arrays["deepspeech"]
        else:
            features = clip.arrays["mfcc"].reshape(clip.frames_count, -1)
        features = features.astype(np.float32, copy=False)
        pose = clip.arrays["pose"][:, PITCH_YAW_ROLL].astype(np.float64, copy=False)
        blink = clip.arrays["blink"].astype(np.float32, copy=False) if "blink.npy" in ctx.fields else None
        columns = [features, pose] + ([blink[:, None]] if blink is not None else [])
        if len({len(c) for c in columns}) == 1 and abs(clip.fps - fps) >= 1e-9:
            # one interpolation for all the channels (per-channel arithmetic: the same values as apart)
            both = resample_frames(np.concatenate(columns, axis=1, dtype=np.float64), clip.fps, fps)
            width = features.shape[1]
            features, pose = both[:, :width].astype(np.float32), both[:, width : width + 3]
            blink = both[:, width + 3].astype(np.float32) if blink is not None else None
        else:
            features, pose = resample_frames(features, clip.fps, fps), resample_frames(pose, clip.fps, fps)
            blink = resample_frames(blink, clip.fps, fps) if blink is not None else None
        audio = facial_window_view(features, WIN, PAD)  # items copy their own rows (own_arrays)
        pose, mean, std = zscore(pose)
        total = len(audio)
        window, starts = item_windows(total, ctx.window, ctx.stride)
        for start in starts:
            item = {"__key__": clip.key, "start": start, "audio": audio[start : start + window],
                    "pose": pose[start : start + window], "pose_mean": mean, "pose_std": std}
            if blink is not None:
                item["blink"] = blink[start : start + window]
            yield item
