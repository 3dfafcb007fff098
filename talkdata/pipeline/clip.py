"""Per-clip processing: a pure function of (clip record, config) -> sample files + metadata.

Stages, each timed (the timings feed ``benchmarks/pipeline.py``, never the outputs):

1. ``audio``: decode the audio track, resample to 16 kHz mono (fails fast on files without audio);
2. ``track``: decode frames at the output fps and follow one face with detector + landmarks
   (pass 1); missing frames are interpolated or the clip is rejected;
3. ``align``: smoothed similarity transforms to the crop template; landmarks in crop space;
4. ``encode``: warp every frame and encode the crop video (pass 2: frames kept from pass 1 when
   they fit in ``video.cache_budget_mb``, cut down to the face's region when whole frames do not
   (HD and 4K), decoded again only when even the regions do not fit);
5. ``features``: head pose, blink, MFCC (and DeepSpeech when a model is configured), the audio
   features computed from exactly the PCM16 samples stored in ``audio.wav``.

Any problem with the clip raises ``ClipError`` with a reason code; the caller records it.
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..audio.mfcc import mfcc_per_frame
from ..audio.pcm import librosa_float, wav_pcm16
from ..errors import ClipError
from ..face.align import apply_affine, compute_affines, warp_crop
from ..face.blink import eye_aspect_ratio
from ..face.detect import make_detector
from ..face.landmarks import landmark_backend
from ..face.pose import estimate_pose
from ..face.template import crop_template
from ..face.track import FaceTracker, fill_missing
from ..media.decode import Picture, VideoStats, align_audio, decode_audio, iter_frames, report_progress
from ..files import sha256_file
from ..media.encode import H264Writer, encode_wav
from ..corpora.records import ClipRecord
from ..config import BuildConfig


@dataclass
class ClipOutput:
    files: dict[str, bytes]  # sample fields by name: "video.mp4", "lmk.npy", ...
    meta: dict  # the sample's ``json`` field, without the split (added when packing)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


#: half the side of the region kept around a tracked face box, in box sizes (the crop's source footprint
#: is about 0.85 box sizes from the centre upright, 1.2 when turned 45 degrees)
REGION_HALF = 1.6


#: frames with fewer pixels are converted to RGB whole, once, for both passes (cheap, and the crops'
#: bytes are those of warping the whole frame); larger ones (HD, 4K) only where the tracker and the
#: crop read them
REGION_MIN_PIXELS = 1280 * 720


@dataclass
class KeptFrame:
    """A decoded frame kept between the two passes: all of it, or the region around the face."""

    picture: Picture
    origin: tuple[int, int] = (0, 0)  # (x, y) of the picture's pixel (0, 0) in the frame
    frame_size: tuple[int, int] = (0, 0)  # (width, height) of the whole frame

    @property
    def whole(self) -> bool:
        return self.origin == (0, 0) and self.picture.shape == self.frame_size[::-1]


def _face_region(picture: Picture, box: np.ndarray | None) -> KeptFrame:
    h, w = picture.shape
    if box is None or not np.isfinite(box).all():
        return KeptFrame(picture, (0, 0), (w, h))
    size = max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    half = REGION_HALF * size
    x0, y0 = max(int(np.floor(cx - half)), 0), max(int(np.floor(cy - half)), 0)
    x1, y1 = min(int(np.ceil(cx + half)), w), min(int(np.ceil(cy + half)), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return KeptFrame(picture, (0, 0), (w, h))
    region, origin = picture.crop(x0, y0, x1, y1)
    return KeptFrame(region, origin, (w, h))


def _needed(affine: np.ndarray, size: int, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The frame pixels ``(x0, y0, x1, y1)`` the ``size`` x ``size`` crop under ``affine`` reads
    (bilinear sampling and the frame's replicated border included), clamped to the frame."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inverse = cv2.invertAffineTransform(affine)
    source = corners @ inverse[:, :2].T + inverse[:, 2]
    fw, fh = frame_size
    return (min(max(int(np.floor(source[:, 0].min())) - 2, 0), fw - 1),
            min(max(int(np.floor(source[:, 1].min())) - 2, 0), fh - 1),
            max(min(int(np.ceil(source[:, 0].max())) + 3, fw), 1),
            max(min(int(np.ceil(source[:, 1].max())) + 3, fh), 1))


def _shift(affine: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """``affine`` re-expressed for pixels whose (0, 0) is ``origin`` in the frame."""
    shifted = affine.astype(np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array(origin, dtype=np.float64)
    return shifted


def _covers(kept: KeptFrame, affine: np.ndarray, size: int) -> bool:
    """True when every pixel the crop under ``affine`` reads was kept."""
    if kept.whole:
        return True
    x0, y0, x1, y1 = _needed(affine, size, kept.frame_size)
    (ox, oy), (h, w) = kept.origin, kept.picture.shape
    return x0 >= ox and y0 >= oy and x1 <= ox + w and y1 <= oy + h


def _crop_source(kept: KeptFrame, affine: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The RGB pixels a crop is warped from (:func:`_covers` holds) and ``affine`` re-expressed for
    them: only the region the crop reads is converted, except in whole frames below
    ``REGION_MIN_PIXELS`` or that the crop reads most of (the same pixels and transform as ever; a
    region's shifted transform may round a sample differently, by one grey level at most)."""
    fw, fh = kept.frame_size
    x0, y0, x1, y1 = _needed(affine, size, kept.frame_size)
    if kept.whole and (fw * fh < REGION_MIN_PIXELS or 2 * (x1 - x0) * (y1 - y0) >= fw * fh):
        return kept.picture.rgb(), affine
    ox, oy = kept.origin
    lx0, ly0 = (x0 - ox) & ~1, (y0 - oy) & ~1  # a region of a yuv420p picture starts on even coordinates
    return kept.picture.rgb_region(lx0, ly0, x1 - ox, y1 - oy), _shift(affine, (ox + lx0, oy + ly0))


def track_face(path: str, config: BuildConfig, stats: VideoStats,
               hint: list[float] | None = None) -> tuple[FaceTracker, list[KeptFrame] | None]:
    """Pass 1: follow the face through every output frame; keep frames for pass 2 if they fit the budget.

    Frames are decoded to :class:`Picture` objects (yuv420p planes converted to RGB only where read).
    They are kept whole while they fit ``video.cache_budget_mb``; past it (HD and 4K clips) every
    kept frame is cut down to the region around its tracked face (``REGION_HALF`` box sizes each
    way), so that pass 2 does not decode the clip again. ``hint`` is the corpus's face box as
    fractions of the frame (``record.meta["face_box"]``)."""
    face = config.face
    detector = make_detector(face)
    predictor = landmark_backend(face.backend, face.fan_device)
    tracker = FaceTracker(detector, predictor, face.detect_every, face.redetect_iou, hint=hint)
    budget = config.video.cache_budget_mb * 2**20
    kept: list[KeptFrame] | None = []
    used = 0
    regions = False
    for picture in iter_frames(path, config.video.fps, "picture", stats):
        h, w = picture.shape
        if w * h < REGION_MIN_PIXELS:
            picture.rgb()  # small frames: converted whole once, read by both passes
        tracker.step(None, None, picture)  # else converted only where the detector and landmarks read it
        if kept is None:
            continue
        if regions:
            frame = _face_region(picture, tracker.boxes[-1])
        else:
            h, w = picture.shape
            frame = KeptFrame(picture, (0, 0), (w, h))
        kept.append(frame)
        used += frame.picture.nbytes
        if used > budget and not regions:
            regions = True  # cut what is kept so far down to the face regions
            kept = [_face_region(k.picture, b) for k, b in zip(kept, tracker.boxes)]
            used = sum(k.picture.nbytes for k in kept)
        if used > budget:
            kept = None  # too long even as face regions: pass 2 decodes again
    return tracker, kept


def render_crops(path: str, frames: list[KeptFrame] | None, affines: np.ndarray, config: BuildConfig) -> bytes:
    """Pass 2: warp each frame with its transform and encode the crop video (from the kept frames
    when every crop lies inside what was kept, else from a second decoding)."""
    crop, fps = config.crop, config.video.fps
    source = None
    if frames is not None and len(frames) >= len(affines) and all(
            _covers(k, a, crop.size) for k, a in zip(frames, affines)):
        source = (_crop_source(k, a, crop.size) for k, a in zip(frames, affines))
    if source is None:
        whole = (KeptFrame(p, (0, 0), p.shape[::-1]) for p in iter_frames(path, fps, "picture"))
        source = (_crop_source(k, a, crop.size) for k, a in zip(whole, affines))
    writer = H264Writer(crop.size, crop.size, fps, crop.crf, crop.preset)
    for rgb, matrix in source:
        report_progress()
        writer.write(warp_crop(rgb, matrix, crop.size, crop.border))
    if writer.frames != len(affines):
        raise ClipError("decode_error", f"second decoding pass gave {writer.frames} frames, first gave {len(affines)}",
                        stage="encode")
    return writer.finish()


def process_clip(record: ClipRecord, config: BuildConfig) -> ClipOutput:
    timer = _Timer()
    fps = config.video.fps
    rate = config.audio.sample_rate
    if record.skip:
        raise ClipError(record.skip, record.skip_message or "skipped by the recipe", stage="index")
    if not Path(record.path).is_file():
        raise ClipError("missing_source", f"file not found: {record.relpath}", stage="index")

    with timer.stage("audio"):
        track = decode_audio(record.path, rate)
    stats = VideoStats()
    with timer.stage("track"):
        tracker, kept = track_face(record.path, config, stats, record.meta.get("face_box"))
        n_frames = stats.output_frames
        if n_frames < config.video.min_frames:
            raise ClipError("too_short", f"{n_frames} frames at {fps:g} fps (video.min_frames="
                            f"{config.video.min_frames})", stage="decode")
        raw_landmarks, raw_boxes, found = tracker.result()
        face = config.face
        landmarks_src = fill_missing(raw_landmarks, found, face.max_gap_frames, face.max_missing_fraction)
        boxes = fill_missing(raw_boxes, found, face.max_gap_frames, face.max_missing_fraction)

    with timer.stage("align"):
        crop = config.crop
        template = crop_template(crop.size, crop.face_width, crop.face_center_y)
        affines = compute_affines(landmarks_src, template, list(crop.stable_points), crop.smooth_window)
        landmarks_crop = apply_affine(landmarks_src, affines)

    with timer.stage("encode"):
        video = render_crops(record.path, kept, affines, config)
        del kept

    with timer.stage("features"):
        samples, padded = align_audio(track, stats.start_time, n_frames, fps)
        pose = estimate_pose(landmarks_src, stats.width, stats.height, config.pose.focal_scale)
        blink = eye_aspect_ratio(landmarks_src)
        wav = encode_wav(samples, rate)
        pcm, _ = wav_pcm16(wav)  # the stored samples: features recomputed from audio.wav match
        mfcc = mfcc_per_frame(librosa_float(pcm), n_frames, fps, rate, config.mfcc)
        files = {
            "video.mp4": video,
            "audio.wav": wav,
            "lmk.npy": npy_bytes(landmarks_crop.astype(np.float32)),
            "lmk_src.npy": npy_bytes(landmarks_src.astype(np.float32)),
            "affine.npy": npy_bytes(affines.astype(np.float32)),
            "bbox.npy": npy_bytes(boxes.astype(np.float32)),
            "pose.npy": npy_bytes(pose),
            "blink.npy": npy_bytes(blink),
            "mfcc.npy": npy_bytes(mfcc),
        }
        audio_features = ["mfcc"]
        if config.audio.deepspeech_model:
            from ..audio.deepspeech import deepspeech_logits, load_deepspeech

            model = load_deepspeech(config.audio.deepspeech_model)
            files["deepspeech.npy"] = npy_bytes(deepspeech_logits(pcm, model))  # (S, 29) at 50 Hz
            audio_features.append("deepspeech")

    meta = {
        "dataset": record.dataset,
        "key": record.key,
        "speaker": record.speaker,
        "clip": record.clip,
        "source": {"path": record.relpath, "sha256": sha256_file(record.path), "bytes": Path(record.path).stat().st_size},
        "fps_in": round(stats.source_fps, 6),
        "fps": fps,
        "frames": n_frames,
        "duration": n_frames / fps,
        "source_frames": stats.source_frames,
        "dropped_frames": stats.dropped_frames,
        "source_size": [stats.width, stats.height],
        "rotation": stats.rotation,
        "audio_rate": rate,
        "audio_samples": len(samples),
        "audio_padded_s": round(padded, 6),
        "crop_size": crop.size,
        "face": {
            "frames_found": int(found.sum()),
            "frames_interpolated": int((~found).sum()),
            "detector_runs": tracker.n_detector_runs,
            "hint_seeds": tracker.n_hint_seeds,
        },
        "backends": {"detector": face.detector, "landmarks": face.backend, "audio_features": audio_features},
        **record.meta,
    }
    return ClipOutput(files=files, meta=meta, timings=timer.seconds)
