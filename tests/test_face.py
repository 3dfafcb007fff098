"""Tests of the face stages of process_clip on real clips: landmarks, crop alignment, head pose,
tracking (tight crops, two faces, no face, face leaving), blink and MFCC features.

Test videos that tests/data does not hold (rotated, mirrored, two faces, no face) are made from the
GRID clip with ``media_factory`` and muxed with its audio (process_clip needs an audio track).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from python_speech_features import mfcc

import media_factory as mf
from talkdata.config import BuildConfig, Mfcc, resolve
from talkdata.errors import ClipError
from talkdata.face.align import apply_affine
from talkdata.face.detect import FaceDetector, box_iou, detector_backend
from talkdata.face.landmarks import landmark_backend
from talkdata.face.template import crop_template
from talkdata.media.decode import VideoStats, align_audio, decode_audio, iter_frames
from talkdata.media.encode import decode_wav
from talkdata.pipeline.clip import ClipOutput, process_clip
from talkdata.corpora import crema_d, grid, videos
from talkdata.corpora.records import ClipRecord

DATA = Path(__file__).parent / "data"
FPS = 25.0
RATE = 16000
STABLE = [33, 36, 39, 42, 45]
RIGHT_EYE, LEFT_EYE = list(range(36, 42)), list(range(42, 48))


def npy(output: ClipOutput, name: str) -> np.ndarray:
    return np.load(io.BytesIO(output.files[name]))


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners 36 and 45, for (..., 68, 2) points."""
    return np.linalg.norm(points[..., 36, :] - points[..., 45, :], axis=-1)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def config() -> BuildConfig:
    return BuildConfig()


@pytest.fixture(scope="module")
def grid_out(config) -> ClipOutput:
    record = {r.clip: r for r in grid.index(mf.DATA / "grid", config)}["bbaf2n"]
    return process_clip(record, config)


@pytest.fixture(scope="module")
def crema_out(config) -> ClipOutput:
    record = {r.clip: r for r in crema_d.index(mf.DATA / "crema_d", config)}["1001_DFA_ANG_XX"]
    return process_clip(record, config)


@pytest.fixture(scope="module")
def real_outputs(grid_out, crema_out) -> dict[str, ClipOutput]:
    return {"grid": grid_out, "crema": crema_out}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


def _record(path: Path) -> ClipRecord:
    return ClipRecord(dataset="videos", speaker="test", clip=path.stem, path=str(path), relpath=path.name)


def _make(video_dir: Path, name: str, frames) -> Path:
    """Write ``frames`` with the GRID clip's audio (PCM in mkv) and return the path."""
    return mf.write_video(video_dir / f"{name}.mkv", frames, FPS, audio=mf.grid_audio())


@pytest.fixture(scope="module")
def grid_variants(video_dir, config) -> dict[str, ClipOutput]:
    """process_clip on re-encoded, rotated (+10 deg) and mirrored copies of GRID s1/bbaf2n."""
    frames = mf.grid_frames()
    made = {
        "orig": frames,
        "rot10": [mf.rotate_frame(f, 10.0) for f in frames],
        "mirror": [mf.mirror_frame(f) for f in frames],
    }
    folder = video_dir / "variants"
    folder.mkdir()
    for name, images in made.items():
        _make(folder, name, images)
    # go through the 'videos' source, as a user's folder of clips would
    records = {r.clip: r for r in videos.index(folder, config)}
    assert sorted(records) == sorted(made)
    return {name: process_clip(records[name], config) for name in made}


# --------------------------------------------------------------------------- landmarks and crops


@pytest.mark.parametrize("which", ["grid", "crema"])
def test_crop_landmarks_agree_with_fresh_dlib(which, real_outputs):
    """dlib run afresh (HOG detection + 68-point predictor) on the decoded crop video agrees with
    lmk.npy: mean normalised point error < 0.05 of the inter-ocular distance."""
    output = real_outputs[which]
    lmk = npy(output, "lmk.npy")
    crops = mf.read_frames(output.files["video.mp4"], "gray")
    size = output.meta["crop_size"]
    assert len(crops) == len(lmk) == output.meta["frames"]
    assert crops[0].shape == (size, size)
    detector, predictor = FaceDetector(detector_backend("hog"), 32.0), landmark_backend("dlib")
    errors, undetected = [], 0
    for t, gray in enumerate(crops):
        found = detector.detect(gray)
        if found:
            box = found[0].box
        else:  # fall back to the landmarks' box (counted; must be rare)
            undetected += 1
            box = np.r_[lmk[t].min(0), lmk[t].max(0)]
        fresh = predictor.predict(np.ascontiguousarray(gray), None, box)
        errors.append(np.linalg.norm(fresh - lmk[t], axis=1).mean() / inter_ocular(lmk[t]))
    errors = np.asarray(errors)
    print(f"{which}: normalised landmark error mean {errors.mean():.4f} max {errors.max():.4f}, "
          f"{undetected} crops without a detection")
    assert undetected <= 0.1 * len(crops)
    assert errors.mean() < 0.05
    assert np.percentile(errors, 95) < 0.1


@pytest.mark.parametrize("name", ["hog", "blazeface"])
def test_detect_near_finds_the_tracked_face_and_only_there(name):
    """The key-frame check around a tracked box finds the same face as a full-frame detection, and
    nothing when the window holds no face."""
    detector = FaceDetector(detector_backend(name), 32.0)
    fmt = "gray" if name == "hog" else "rgb24"
    for path in (DATA / "grid" / "s1" / "bbaf2n.mpg", DATA / "crema_d" / "VideoFlash" / "1001_DFA_HAP_XX.flv"):
        image = next(iter_frames(path, 25.0, fmt))
        full = detector.detect(image)
        assert full, path.name
        near = detector.detect_near(image, full[0].box + np.array([6.0, -4.0, 6.0, -4.0]))  # a drifted track
        assert near and max(box_iou(d.box, full[0].box) for d in near) > 0.6, path.name
    image = next(iter_frames(DATA / "grid" / "s1" / "bbaf2n.mpg", 25.0, fmt))
    h, w = image.shape[:2]
    face = detector.detect(image)[0].box
    size = face[2] - face[0]
    corner = np.array([0.0, h - size / 3, size / 3, h])  # a small box in the bottom-left corner, far from the face
    assert box_iou(corner, face) == 0
    assert detector.detect_near(image, corner, margin=0.5) == []


@pytest.mark.parametrize("which", ["grid", "crema"])
def test_stable_points_sit_on_template(which, real_outputs, config):
    crop = config.crop
    template = crop_template(crop.size, crop.face_width, crop.face_center_y)
    assert list(crop.stable_points) == STABLE
    lmk = npy(real_outputs[which], "lmk.npy")
    distance = np.linalg.norm(lmk[:, STABLE] - template[STABLE], axis=-1)
    ratio = distance.mean() / inter_ocular(template)
    print(f"{which}: stable points off the template by {ratio:.4f} IOD on average, max {distance.max():.2f} px")
    assert ratio < 0.05
    # the non-stable points are not forced onto the template: the mouth moves while speaking
    mouth_opening = np.linalg.norm(lmk[:, 62] - lmk[:, 66], axis=-1)
    assert mouth_opening.max() - mouth_opening.min() > 5


@pytest.mark.parametrize("which", ["grid", "crema"])
def test_crop_landmarks_are_affine_of_source_landmarks(which, real_outputs):
    output = real_outputs[which]
    lmk, src, affine = npy(output, "lmk.npy"), npy(output, "lmk_src.npy"), npy(output, "affine.npy")
    T = output.meta["frames"]
    assert lmk.shape == src.shape == (T, 68, 2) and affine.shape == (T, 2, 3)
    mapped = np.einsum("tij,tnj->tni", affine[:, :, :2].astype(np.float64), src.astype(np.float64))
    mapped += affine[:, None, :, 2]
    np.testing.assert_allclose(mapped, lmk, atol=1e-3)
    np.testing.assert_allclose(apply_affine(src, affine.astype(np.float64)), lmk, atol=1e-3)
    # similarity transforms: equal scale on both axes, no shear, no reflection
    a, b, c, d = affine[:, 0, 0], affine[:, 0, 1], affine[:, 1, 0], affine[:, 1, 1]
    np.testing.assert_allclose(a, d, atol=1e-4)
    np.testing.assert_allclose(b, -c, atol=1e-4)
    # source landmarks lie inside the source frame
    width, height = output.meta["source_size"]
    assert src[..., 0].min() > -1 and src[..., 0].max() < width + 1
    assert src[..., 1].min() > -1 and src[..., 1].max() < height + 1


def test_sample_arrays_have_the_documented_shapes(grid_out):
    T = grid_out.meta["frames"]
    shapes = {"bbox.npy": (T, 4), "pose.npy": (T, 6), "blink.npy": (T,), "mfcc.npy": (T, 4, 13)}
    for name, shape in shapes.items():
        array = npy(grid_out, name)
        assert array.shape == shape, name
        assert np.isfinite(array).all(), name


# --------------------------------------------------------------------------- head pose


def test_pose_rotation_changes_roll(grid_variants):
    """Every frame rotated +10 deg (counter-clockwise, cv2.getRotationMatrix2D) -> roll +10 deg."""
    orig, rot = npy(grid_variants["orig"], "pose.npy"), npy(grid_variants["rot10"], "pose.npy")
    difference = rot[:, 2] - orig[:, 2]
    print(f"roll difference {difference.mean():.2f} +- {difference.std():.2f} deg; "
          f"yaw change {np.mean(rot[:, 0] - orig[:, 0]):.2f}, pitch change {np.mean(rot[:, 1] - orig[:, 1]):.2f}")
    assert difference.mean() == pytest.approx(10.0, abs=2.0)
    assert np.abs(difference - 10.0).max() < 4.0
    # an in-plane rotation leaves yaw and pitch about where they were
    assert abs(np.mean(rot[:, 0] - orig[:, 0])) < 3.0
    assert abs(np.mean(rot[:, 1] - orig[:, 1])) < 3.0
    # and the alignment undoes it: the crops' landmarks are the same as the upright clip's
    lmk_orig, lmk_rot = npy(grid_variants["orig"], "lmk.npy"), npy(grid_variants["rot10"], "lmk.npy")
    error = np.linalg.norm(lmk_rot - lmk_orig, axis=-1).mean() / inter_ocular(lmk_orig).mean()
    print(f"crop landmarks rotated vs upright: {error:.4f} IOD")
    assert error < 0.05


def test_pose_mirror_negates_yaw_and_roll(grid_variants):
    orig, mirror = npy(grid_variants["orig"], "pose.npy"), npy(grid_variants["mirror"], "pose.npy")
    yaw, roll = orig[:, 0], orig[:, 2]
    print(f"mean yaw {yaw.mean():.2f} -> {mirror[:, 0].mean():.2f}, roll {roll.mean():.2f} -> "
          f"{mirror[:, 2].mean():.2f}, pitch {orig[:, 1].mean():.2f} -> {mirror[:, 1].mean():.2f}")
    assert abs(yaw.mean()) > 3  # the speaker is turned enough for the sign to be meaningful
    assert np.sign(mirror[:, 0].mean()) == -np.sign(yaw.mean())
    assert abs(np.mean(yaw + mirror[:, 0])) < 2.0
    assert np.median(np.abs(yaw + mirror[:, 0])) < 3.0
    assert abs(np.mean(roll + mirror[:, 2])) < 2.0
    assert abs(np.mean(orig[:, 1] - mirror[:, 1])) < 2.0  # pitch unchanged


# --------------------------------------------------------------------------- tracking


@pytest.mark.parametrize("name, frames", [("00002", 126), ("00473", 158)])
def test_tracking_on_tight_crops(name, frames, config):
    path = mf.DATA / "voxceleb2_like" / f"{name}.mp4"
    output = process_clip(_record(path), config)
    found = output.meta["face"]["frames_found"]
    print(f"{name}: {found} of {output.meta['frames']} frames with a face")
    assert output.meta["frames"] == frames
    assert found >= 0.9 * frames
    assert npy(output, "lmk.npy").shape == (frames, 68, 2)


@pytest.mark.parametrize("big_side", ["left", "right"])
def test_two_faces_track_the_larger_one(big_side, video_dir, config, grid_out):
    """Two copies of the GRID speaker on a 720x360 canvas, scaled 1.0 and 0.6: only the larger
    face is tracked, in every frame."""
    offsets = {"left": ((0, 36), (450, 100)), "right": ((360, 36), (60, 100))}[big_side]
    frames = [mf.place_on_canvas((720, 360), [(f, 1.0, offsets[0]), (f, 0.6, offsets[1])]) for f in mf.grid_frames()]
    output = process_clip(_record(_make(video_dir, f"two_faces_{big_side}", frames)), config)
    src = npy(output, "lmk_src.npy")
    x = src[..., 0]
    print(f"big face {big_side}: landmark x in [{x.min():.0f}, {x.max():.0f}]")
    assert output.meta["face"]["frames_found"] == output.meta["frames"] == 75
    if big_side == "left":
        assert x.max() < 360
    else:
        assert x.min() >= 360
    # it is the same face as in the original clip, moved by the paste offset
    shifted = npy(grid_out, "lmk_src.npy") + np.array(offsets[0], dtype=np.float32)
    error = np.linalg.norm(src - shifted, axis=-1).mean() / inter_ocular(shifted).mean()
    print(f"  vs original landmarks: {error:.4f} IOD")
    assert error < 0.05


@pytest.mark.parametrize("kind", ["noise", "gray"])
def test_no_face_is_rejected(kind, video_dir, config):
    if kind == "noise":
        frames = mf.noise_frames(360, 288, 75)
    else:
        frames = (np.full((288, 360, 3), 128, np.uint8) for _ in range(75))
    path = _make(video_dir, f"no_face_{kind}", frames)
    with pytest.raises(ClipError) as info:
        process_clip(_record(path), config)
    assert info.value.reason == "no_face"
    assert "75 frames" in str(info.value)


def _face_then(video_dir, filler: str) -> Path:
    """The GRID face for the first 30% of the frames (22 of 75), then ``filler`` frames."""
    frames = mf.grid_frames()
    keep = int(0.3 * len(frames))
    fills = {
        "black": lambda f: np.zeros_like(f),
        "gray": lambda f: np.full_like(f, 128),
    }
    return _make(video_dir, f"face_then_{filler}", [f if t < keep else fills[filler](f) for t, f in enumerate(frames)])


def test_face_leaving_is_rejected_black(video_dir, config):
    with pytest.raises(ClipError) as info:
        process_clip(_record(_face_then(video_dir, "black")), config)
    assert info.value.reason == "face_missing"


def test_face_leaving_is_rejected_gray(video_dir, config):
    with pytest.raises(ClipError) as info:
        process_clip(_record(_face_then(video_dir, "gray")), config)
    assert info.value.reason == "face_missing"


# --------------------------------------------------------------------------- features


def test_blink_ear_is_plausible(grid_out):
    blink = npy(grid_out, "blink.npy")
    src = npy(grid_out, "lmk_src.npy").astype(np.float64)

    def ear(eye):  # Soukupova & Cech 2016, p1..p6
        return (np.linalg.norm(eye[:, 1] - eye[:, 5], axis=-1) + np.linalg.norm(eye[:, 2] - eye[:, 4], axis=-1)) / (
            2 * np.linalg.norm(eye[:, 0] - eye[:, 3], axis=-1))

    expected = (ear(src[:, RIGHT_EYE]) + ear(src[:, LEFT_EYE])) / 2
    print(f"EAR median {np.median(blink):.3f}, range [{blink.min():.3f}, {blink.max():.3f}]")
    assert 0.1 < np.median(blink) < 0.5
    assert blink.dtype == np.float32
    np.testing.assert_allclose(blink, expected, atol=1e-4)


def _reference_mfcc(samples: np.ndarray, frames: int) -> np.ndarray:
    """python_speech_features' defaults (ATVG) with a 10 ms hop; 240 zeros so the last 25 ms window fits."""
    padded = np.concatenate([np.asarray(samples, dtype=np.float64), np.zeros(240)])
    return mfcc(padded, RATE, winstep=0.01).reshape(frames, 4, 13)


@pytest.mark.parametrize("which, path", [("grid", mf.GRID_S1), ("crema", mf.CREMA_ANG)])
def test_mfcc_matches_python_speech_features(which, path, real_outputs):
    output = real_outputs[which]
    T = output.meta["frames"]
    features = npy(output, "mfcc.npy")
    assert features.shape == (T, 4, 13) and features.dtype == np.float32
    stats = VideoStats()
    assert sum(1 for _ in iter_frames(path, FPS, "gray", stats)) == T
    samples, _ = align_audio(decode_audio(path, RATE), stats.start_time, T, FPS)
    # the features are computed from the PCM16 samples audio.wav stores, as librosa reads them (/ 32768)
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767), -32768, 32767)
    reference = mfcc((pcm / 32768).astype(np.float32), RATE, winstep=0.01)  # 4T - 1 rows
    rows = features.reshape(-1, 13)[: len(reference)]
    print(f"{which}: max |mfcc - reference| = {np.abs(rows - reference).max():.2e}")
    assert len(reference) == 4 * T - 1
    np.testing.assert_allclose(rows, reference, atol=1e-3)


def test_mfcc_matches_the_shipped_wav_for_mono_audio(crema_out):
    """From the PCM16 audio.wav (what a user of the shards has) the MFCCs agree up to quantisation
    noise, which only matters in the quietest rows (CREMA-D's audio is mono: no clipping)."""
    T = crema_out.meta["frames"]
    samples, _ = decode_wav(crema_out.files["audio.wav"])
    reference = _reference_mfcc(samples, T).reshape(-1, 13)
    features = npy(crema_out, "mfcc.npy").reshape(-1, 13)
    difference = np.abs(features - reference)
    loud = features[:, 0] > -10  # log frame energy
    print(f"wav-based mfcc: max diff {difference.max():.3f} (loud rows {difference[loud].max():.3f}), "
          f"mean {difference.mean():.4f}")
    assert loud.sum() > 0.3 * len(loud)
    assert difference[loud].max() < 0.5
    assert difference.mean() < 0.1


def test_mfcc_chunks_and_fractional_hops_are_exact(monkeypatch):
    """Chunked computation equals one pass, and at 30 fps (hop 133.33 samples) every row is the
    library's MFCC of the 25 ms window starting at round(row time * 16000): no drift."""
    from talkdata.audio import mfcc as mfcc_module

    samples = decode_audio(mf.GRID_S1, RATE).samples
    settings = Mfcc()
    whole = mfcc_module.mfcc_per_frame(samples, 75, FPS, RATE, settings)
    monkeypatch.setattr(mfcc_module, "CHUNK_ROWS", 7)
    np.testing.assert_array_equal(mfcc_module.mfcc_per_frame(samples, 75, FPS, RATE, settings), whole)
    monkeypatch.undo()

    fps30 = mfcc_module.mfcc_per_frame(samples, 90, 30.0, RATE, settings).reshape(-1, 13)
    emphasised = np.concatenate([samples[:1], samples[1:] - 0.97 * samples[:-1]]).astype(np.float64)
    for row in (0, 1, 3, 200, 359):
        start = int(np.floor(row * RATE / 120 + 0.5))
        window = emphasised[start:start + 400]
        window = np.concatenate([window, np.zeros(400 - len(window))])
        reference = mfcc(window, RATE, winstep=0.01, preemph=0.0)[0]
        np.testing.assert_allclose(fps30[row], reference, rtol=1e-5, atol=1e-5, err_msg=f"row {row}")
    # the library's own rounded hop (133 samples) would have drifted by 120 samples (7.5 ms) at row 359
    assert int(np.floor(359 * RATE / 120 + 0.5)) - 359 * 133 == 120


def test_corpus_face_box_seeds_the_tracker():
    """VoxCeleb2's face box (record.meta["face_box"]) starts the track on the first frames of the real
    sample, where dlib's HOG finds no face, and the landmarks it gives there are the face's."""
    from talkdata.pipeline.clip import track_face
    from talkdata.corpora.voxceleb2 import FACE_BOX

    path = DATA / "voxceleb2_like" / "00002.mp4"
    config = resolve({}, "test", {
        "face.detector": "hog",  # BlazeFace (and HOG on rotated copies) find the turned faces of frames 0-2
        "face.detect_rotations": [],
        "face.min_face_size": 80,  # one HOG level, the padded frame at 1x, as before face.min_face_size existed
    })
    plain, _ = track_face(str(path), config, VideoStats())
    hinted, _ = track_face(str(path), config, VideoStats(), FACE_BOX)
    plain_lmk, _, plain_found = plain.result()
    hinted_lmk, _, hinted_found = hinted.result()
    assert not plain_found[:3].any() and plain_found[3]  # the detector misses frames 0-2
    assert hinted_found.all() and hinted.n_hint_seeds == 1
    first = int(np.argmax(plain_found))
    error = np.linalg.norm(hinted_lmk[0] - plain_lmk[first], axis=-1).mean() / inter_ocular(plain_lmk[first])
    assert error < 0.25, error  # the same face three frames later (measured 0.18: the head moves)
    later = np.linalg.norm(hinted_lmk[first:] - plain_lmk[first:], axis=-1).mean(axis=1) / inter_ocular(plain_lmk[first:])
    assert np.nanmedian(later) < 0.1  # then both follow the same face where both have one (measured median 0.02)
