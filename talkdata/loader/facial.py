"""``profile="facial"``: FACIAL (Zhang et al., ICCV 2021) audio2face training sequences.

Follows FACIAL's ``audio2face/_utils/audio_handler.py`` (``convert_to_deepspeech``, VOCA's code with
FACIAL's fps branch), ``audio2face/audio_preprocessing.py`` (window 16, stride 1, or 2 at 25 fps) and
``audio2face/dataset102.py`` (targets and sequence starts):

* audio (``audio`` (L, 16, 29)), from the 50 Hz DeepSpeech logits of ``deepspeech.npy``:

  - ``fps=30`` (default; any rate but 25): each logit channel is interpolated with ``np.interp``
    from the step times ``i / 50`` to ``j / fps`` for ``j < round(audio_seconds * fps)``, 8 zero rows
    are padded at both ends and window ``j`` is padded rows ``j .. j+15`` (row 8 is frame ``j``).
    ``fps=60`` is VOCA's recipe (VOCA always interpolates to 60 fps);
  - ``fps=25``: FACIAL's 25 fps branch: no interpolation, the 50 Hz logits are padded with 8 zero
    rows and window ``j`` is padded rows ``2 j .. 2 j + 15`` (16 steps = 0.32 s, centred on step
    ``2 j``, the time of frame ``j``);
  - ``fps=None``: the shards' rate (so a 25 fps build gives the 25 fps branch);

* targets (per frame of the output rate, the build's per-frame values resampled with ``np.interp``
  from ``i / build_fps`` to ``j / fps``), FACIAL's 71-d vector minus what talkdata cannot compute:

  - ``target`` (L, 7): FACIAL's columns 0-6, ``[pitch, yaw, roll, s, tx, ty]`` z-scored per clip
    (``dataset102.py`` lines 38-42: mean and ``ddof=0`` std over the whole clip; a constant column
    is only centred) and ``AU45`` (blink intensity 0-5, not normalised); ``target_mean`` /
    ``target_std`` (6,) undo the z-score. Columns 7-70 of FACIAL's vector, the 64 BFM expression
    coefficients of Deep3DFaceReconstruction, need a 3DMM fit talkdata does not do;
  - pitch, yaw, roll in degrees in FACIAL's signs (face3d ``matrix2angle`` of a fit in x-right,
    y-up image coordinates, ``fit_headpose.py``): pitch > 0 looking down (talkdata's pitch negated),
    yaw > 0 turned to the image's right and roll > 0 counter-clockwise (as talkdata's);
  - ``s, tx, ty`` from the per-frame similarity transform (``affine.npy``, source -> crop): ``s`` =
    source pixels per crop pixel, ``(tx, ty)`` = the crop centre in the source frame relative to the
    frame centre, y up. FACIAL's are the orthographic scale and translation of a BFM fit; after
    the per-clip z-score only the (affine) relation to the face's size and position matters;
  - ``AU45``: :func:`au45_from_ear`, a linear map of the eye aspect ratio relative to the clip's
    median (neutral, as OpenFace calibrates its AU intensities to the person's neutral), not
    OpenFace's AU45 regressor;
  - the angles and ``s, tx, ty`` are smoothed over time with FACIAL's Savitzky-Golay filter (window
    5, order 3, ``scipy.signal.savgol_filter``, ``fit_headpose.py``) at the output rate before the
    z-score (``smooth=False`` leaves them raw); AU45 is not smoothed (FACIAL reads it raw from the CSV);
  - ``pose`` (L, 3) (= ``target[:, :3]``), ``pose_mean`` / ``pose_std`` (3,) and ``blink`` (L,)
    (the raw eye aspect ratio) are kept for talkdata's ``facial-pose`` loop;

* sequences of L = 128 frames (``window``) at the starts ``range(0, N - 128, stride)`` of
  ``dataset102.py`` line 56 (N = min(target frames, audio windows), line 45), which leaves out the
  last full window; ``include_last=True`` adds it.

A clip without ``deepspeech.npy`` is an error, never a silent switch to MFCC. For experiments
without a DeepSpeech model, ``features="mfcc"`` uses each frame's 4 MFCC rows flattened (52
values), resampled to ``fps`` and windowed with stride 1: ``audio`` (L, 16, 52).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import UserError
from .members import Clip, HOW_TO_GET
from .profile_base import ItemContext, Profile, option
from .windows import DEEPSPEECH_RATE, deepspeech_steps, facial_window_view, logits_at_fps, resample_frames

PAD = 8
WIN = 16
#: FACIAL's fps at which the 50 Hz logits are windowed with stride 2 instead of interpolated
STRIDE_TWO_FPS = 25.0
#: pose.npy columns (yaw, pitch, roll, tx, ty, tz) -> pitch, yaw, roll, and their signs in FACIAL's convention
PITCH_YAW_ROLL = [1, 0, 2]
FACIAL_SIGNS = np.array([-1.0, 1.0, 1.0])
#: AU45 range of OpenFace's intensity regressors, and the eye aspect ratio (as a fraction of the clip's
#: neutral) that maps to its top
AU_MAX = 5.0
CLOSED_EAR_FRACTION = 0.4
#: FACIAL's Savitzky-Golay smoothing of the fitted pose over time (face_render/fit_headpose.py)
SAVGOL_WINDOW, SAVGOL_ORDER = 5, 3


def zscore(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column z-score over time; columns with zero spread are only centred."""
    count = max(len(values), 1)
    mean = values.sum(axis=0) / count  # numpy's mean and std (ddof=0), operation for operation
    centred = values - mean
    std = np.sqrt((centred * centred).sum(axis=0) / count)
    safe = np.where(std > 1e-8, std, 1.0)
    return (centred / safe).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


def au45_from_ear(ear: np.ndarray) -> np.ndarray:
    """Blink intensity in AU45's 0-5 range from the eye aspect ratio (T,): 0 at or above the clip's
    median (the neutral, open eye), 5 at or below ``CLOSED_EAR_FRACTION`` of it, linear between."""
    ear = np.asarray(ear, dtype=np.float64)
    if not len(ear):
        return np.zeros(0, np.float32)
    neutral = float(np.median(ear))
    if neutral <= 0:
        return np.zeros(len(ear), np.float32)
    closing = (neutral - ear) / (neutral * (1.0 - CLOSED_EAR_FRACTION))
    return (AU_MAX * np.clip(closing, 0.0, 1.0)).astype(np.float32)


def similarity_params(affine: np.ndarray, crop_size: int, source_size: tuple[int, int]) -> np.ndarray:
    """(T, 2, 3) source -> crop similarity transforms -> (T, 3) ``s, tx, ty``: source pixels per crop
    pixel, and the crop centre in the source frame relative to its centre, x right, y up."""
    linear, shift = affine[:, :, :2].astype(np.float64), affine[:, :, 2].astype(np.float64)
    inverse = np.linalg.inv(linear)  # crop -> source
    centre = np.full(2, crop_size / 2.0)
    source_centre = np.einsum("tij,tj->ti", inverse, centre - shift)
    scale = np.sqrt(np.abs(np.linalg.det(inverse)))
    width, height = source_size
    return np.stack([scale, source_centre[:, 0] - width / 2.0, height / 2.0 - source_centre[:, 1]], axis=1)


class FACIAL(Profile):
    name = "facial"
    default_window = 128
    whole_clips = True
    options = {
        "fps": option(float | None, 30.0, "output frame rate (25: FACIAL's stride-2 branch; None: the shards' rate)",
                      gt=0),
        "features": option(str, "deepspeech", "audio features: DeepSpeech logits, or MFCC for experiments",
                           choices=("deepspeech", "mfcc")),
        "include_last": option(bool, False, "also the last full window, which dataset102.py leaves out"),
        "smooth": option(bool, True, "Savitzky-Golay smoothing of the pose (fit_headpose.py)"),
    }

    def field_sets(self, options):
        feature = "deepspeech.npy" if options["features"] == "deepspeech" else "mfcc.npy"
        return (feature, "pose.npy"), ("blink.npy", "affine.npy")

    def setup(self, dataset, fields, options):
        if options["features"] == "deepspeech" and "deepspeech" not in dataset.audio_features:
            raise UserError(f"profile 'facial' needs DeepSpeech features (deepspeech.npy) but {dataset.source} has "
                            f"none: {HOW_TO_GET['deepspeech.npy']}")
        return {}

    def fewest_frames(self, window, options, fps):
        if window is None:
            return 1, "whole clips"
        rate = fps if options["fps"] is None else float(options["fps"])
        needed = window + (0 if options["include_last"] else 1)
        frames = max(1, int((needed - 0.5) / rate * fps))
        while int(round(frames / fps * rate)) < needed:  # resample_frames' count of frames at the output rate
            frames += 1
        last = "" if options["include_last"] else " and one more, as dataset102.py leaves the last full window out"
        return frames, f"{needed} frames at {rate:g} fps: the window{last}"

    @staticmethod
    def audio_windows(clip: Clip, fps: float, features: str) -> np.ndarray:
        """The clip's (N, 16, C) audio windows at ``fps`` (a read-only view)."""
        if features == "mfcc":
            mfcc = clip.arrays["mfcc"].reshape(clip.frames_count, -1).astype(np.float32, copy=False)
            return facial_window_view(resample_frames(mfcc, clip.fps, fps), WIN, PAD)
        logits = clip.arrays["deepspeech"]
        steps = deepspeech_steps(int(clip.meta["audio_samples"]))
        if logits.shape != (steps, 29):
            raise UserError(f"sample {clip.key}: deepspeech.npy has shape {logits.shape}, expected the ({steps}, 29) "
                            "logits of DeepSpeech's 50 Hz steps (datasets built before talkdata stored them at 50 Hz "
                            "hold per-frame logits): rebuild the dataset with the current talkdata")
        if abs(fps - STRIDE_TWO_FPS) < 1e-9:
            return facial_window_view(logits, WIN, PAD, stride=int(round(DEEPSPEECH_RATE / STRIDE_TWO_FPS)))
        seconds = int(clip.meta["audio_samples"]) / clip.audio_rate
        return facial_window_view(logits_at_fps(logits, int(round(seconds * fps)), fps), WIN, PAD)

    def items(self, clip: Clip, ctx: ItemContext) -> Iterator[dict]:
        fps = clip.fps if ctx.options["fps"] is None else float(ctx.options["fps"])
        audio = self.audio_windows(clip, fps, ctx.options["features"])
        columns = [clip.arrays["pose"][:, PITCH_YAW_ROLL].astype(np.float64) * FACIAL_SIGNS]
        if "affine.npy" in ctx.fields:
            columns.append(similarity_params(clip.arrays["affine"], int(clip.meta["crop_size"]),
                                             tuple(clip.meta["source_size"])))
        if "blink.npy" in ctx.fields:
            ear = clip.arrays["blink"].astype(np.float64)
            columns.append(np.stack([au45_from_ear(ear).astype(np.float64), ear], axis=1))
        # one interpolation for all the channels (np.interp per channel, the same values as apart)
        per_frame = resample_frames(np.concatenate(columns, axis=1), clip.fps, fps)
        width = 6 if "affine.npy" in ctx.fields else 3
        pose = per_frame[:, :width]
        if ctx.options["smooth"] and len(pose) >= SAVGOL_WINDOW:
            # imported here: scipy.signal probes array backends (torch) on import; the loader works without torch
            from scipy.signal import savgol_filter

            pose = savgol_filter(pose, SAVGOL_WINDOW, SAVGOL_ORDER, axis=0)  # fit_headpose.py, before the z-score
        params, mean, std = zscore(pose)
        total = min(len(audio), len(per_frame))  # dataset102.py: both truncated to the shorter
        if ctx.window is None:
            window, starts = total, [0]
        else:
            window = ctx.window
            starts = list(range(0, total - window + (1 if ctx.options["include_last"] else 0), ctx.stride))
        for start in starts:
            span = slice(start, start + window)
            item = {"__key__": clip.key, "start": start, "audio": audio[span],
                    "pose": params[span, :3], "pose_mean": mean[:3], "pose_std": std[:3]}
            if "blink.npy" in ctx.fields:
                item["blink"] = per_frame[span, width + 1].astype(np.float32)
                if width == 6:
                    au45 = per_frame[span, width : width + 1].astype(np.float32)
                    item["target"] = np.concatenate([params[span], au45], axis=1)
                    item["target_mean"], item["target_std"] = mean, std
            yield item
