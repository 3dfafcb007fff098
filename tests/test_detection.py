"""Face detection and tracking in HD and 4K frames: the labelled set of ``face_placements`` (sample
clips placed on 720p/1080p/4K canvases with faces of 40-400 px, tilted +-30 degrees, mirrored,
blurred, turned), the size of the searched scales, and process_clip on encoded HD clips (faces found,
frames without a face still rejected)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import face_placements as fp
import media_factory as mf
from talkdata.config import BuildConfig, Face, resolve
from talkdata.errors import ClipError, UserError
from talkdata.face.detect import FaceDetector, detector_backend, make_detector
from talkdata.face.landmarks import landmark_backend
from talkdata.face.track import FaceTracker
from talkdata.media.decode import iter_frames
from talkdata.pipeline.clip import process_clip
from talkdata.corpora.records import ClipRecord

N = 20  # frames per placement


@pytest.fixture(scope="module")
def face_config() -> Face:
    return Face()


def _track(placement: fp.Placement, face: Face) -> FaceTracker:
    tracker = FaceTracker(make_detector(face), landmark_backend("dlib"), face.detect_every, face.redetect_iou)
    for rgb in fp.canvas_frames(placement, N):
        tracker.step(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), rgb)
    return tracker


def test_native_reference_landmarks_are_found():
    """The reference the labelled set is built on: the native clips' frontal frames have a face."""
    for clip in ("grid", "crema", "vox473"):
        _, _, found = fp.native_track(clip, N)
        assert found.all(), clip


@pytest.mark.parametrize("placement", fp.LABELLED, ids=lambda p: p.name)
def test_labelled_set_recall_and_landmark_error(placement, face_config):
    """The face is found in >= 95 % of the frames, and where the native clip's face is frontal the
    landmarks lie within 0.08 inter-ocular distance (mean NME) of the native landmarks moved by the
    placement."""
    tracker = _track(placement, face_config)
    landmarks, boxes, found = tracker.result()
    reference, centres, native_found = fp.truth(placement, N)
    print(f"{placement.name}: found {found.sum()} of {N}, detector calls {tracker.detector.calls}")
    assert found.mean() >= 0.95
    # the face centre is where the placement put it (within a quarter of the face width)
    both = found & native_found
    box_centres = (boxes[both, :2] + boxes[both, 2:]) / 2.0
    assert np.median(np.linalg.norm(box_centres - centres[both], axis=1)) < 0.25 * placement.face_px
    if placement.clip == "vox2":
        return  # its turned faces have no trustworthy native landmarks (HOG + dlib fail on them natively)
    error = fp.nme(landmarks[both], reference[both])
    print(f"  NME mean {error.mean():.4f} max {error.max():.4f}")
    assert error.mean() < 0.08


def test_search_scales_reach_the_smallest_face():
    """In a 4K frame the finest BlazeFace level shows a 40 px face at >= 10 % of the model input, the
    coarsest shows the whole padded frame; HOG's finest level scales a 40 px face to its 80 px window."""
    blaze = FaceDetector(detector_backend("blazeface"), 40.0)
    levels = blaze._levels((2160, 3840))
    (window, scale, size), = levels[0]
    assert window[2] - window[0] == 3840 + 2 * 960 and size == (192, 192)
    finest = levels[-1][0]
    assert 40.0 * finest[1] >= 0.1 * 192 - 1e-6
    assert len(levels[-2]) < len(levels[-1])  # finer levels have more tiles
    hog = FaceDetector(detector_backend("hog"), 40.0)
    hog_levels = hog._levels((2160, 3840))
    assert hog_levels[0][0][1] == pytest.approx(640 / (3840 + 1920))
    assert hog_levels[-1][0][1] == pytest.approx(2.0)


def test_coarse_search_stops_at_the_first_level_with_a_face():
    """A face of >= 10 % of the padded 4K frame (5760 px) costs one backend call; a 400 px face is
    found on the second level (two 2880 px tiles); a frame without a face costs every level."""
    for face_px, calls in ((700, 1), (400, 3)):
        rgb = next(fp.canvas_frames(fp.Placement("vox473", "4k", face_px), N))
        detector = FaceDetector(detector_backend("blazeface"), 40.0)
        found = detector.detect(rgb)
        assert len(found) == 1 and detector.calls == calls
        assert abs((found[0].box[2] - found[0].box[0]) - face_px) < 0.2 * face_px
    empty = FaceDetector(detector_backend("blazeface"), 40.0)
    assert empty.detect(np.full_like(rgb, fp.BACKGROUND)) == []
    assert empty.calls == sum(len(level) for level in empty._levels(rgb.shape[:2])) * 3  # upright, +25, -25


@pytest.mark.parametrize("name", ["hog", "mmod"])
def test_other_detectors_find_a_110px_face_in_720p(name, face_config):
    face = dataclasses.replace(face_config, detector=name)
    placement = fp.Placement("grid", "720p", 110)
    rgb = next(fp.canvas_frames(placement, N))
    detector = make_detector(face)
    found = detector.detect(detector.pick(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), rgb))
    _, centres, _ = fp.truth(placement, N)
    assert found, name
    centre = (found[0].box[:2] + found[0].box[2:]) / 2.0
    assert np.linalg.norm(centre - centres[0]) < 0.25 * 110
    assert 0.7 < (found[0].box[2] - found[0].box[0]) / 110 < 1.4


def test_unknown_detector_is_a_config_error():
    with pytest.raises(UserError, match=r"'face.detector' must be one of blazeface, hog, mmod, got 'yolo'"):
        resolve({}, "test", {"face.detector": "yolo"})
    with pytest.raises(UserError, match=r"'face.min_face_size' must be in \[16, 16384\], got 4"):
        resolve({}, "test", {"face.min_face_size": 4})
    with pytest.raises(UserError, match=r"'face.detect_rotations' takes a list with items in \[-90, 90\]"):
        resolve({}, "test", {"face.detect_rotations": [100]})


# --------------------------------------------------------------------------- process_clip on encoded HD clips


def _record(path) -> ClipRecord:
    return ClipRecord(dataset="videos", speaker="test", clip=path.stem, path=str(path), relpath=path.name)


def _grid_on_canvas(canvas: tuple[int, int], scale: float) -> list[np.ndarray]:
    """GRID s1/bbaf2n scaled by ``scale``, centred on a plain canvas (the issue's examples)."""
    frames = mf.grid_frames()
    h, w = frames[0].shape[:2]
    offset = ((canvas[0] - int(w * scale)) // 2, (canvas[1] - int(h * scale)) // 2)
    return [mf.place_on_canvas(canvas, [(f, scale, offset)]) for f in frames]


def _crema_on_canvas(canvas: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    frames = mf.read_frames(mf.CREMA_ANG, "rgb24")
    h, w = frames[0].shape[:2]
    offset = ((canvas[0] - w) // 2, (canvas[1] - h) // 2)
    audio, _ = mf.read_audio(mf.CREMA_ANG)
    return [mf.place_on_canvas(canvas, [(f, 1.0, offset)]) for f in frames], audio


@pytest.mark.parametrize("clip, canvas, scale", [("grid", (1280, 720), 0.88), ("grid", (1920, 1080), 2.0),
                                                 ("crema", (1280, 720), 1.0)])
def test_clips_in_hd_are_not_rejected(clip, canvas, scale, tmp_path):
    """GRID at 0.88x on 720p, GRID at 2x on 1080p and CREMA-D at 1x on 720p were rejected no_face /
    face_missing before."""
    config = BuildConfig()
    if clip == "grid":
        frames, audio = _grid_on_canvas(canvas, scale), mf.grid_audio()
    else:
        frames, audio = _crema_on_canvas(canvas)
    path = mf.write_video(tmp_path / f"{clip}_hd.mkv", frames, 25.0, audio=audio)
    output = process_clip(_record(path), config)
    assert output.meta["face"]["frames_found"] >= 0.95 * output.meta["frames"]
    assert output.meta["backends"]["detector"] == "blazeface"
    assert output.meta["source_size"] == list(canvas)
    if clip == "grid":  # the crops look like the native clip's crops (measured: 2.1-2.5 gray levels, r 0.995)
        native = process_clip(_record(mf.GRID_S1), config)
        mine = np.stack(mf.read_frames(output.files["video.mp4"], "gray")).astype(float)
        theirs = np.stack(mf.read_frames(native.files["video.mp4"], "gray")).astype(float)
        assert mine.shape == theirs.shape
        assert np.abs(mine - theirs).mean(axis=(1, 2)).max() < 8.0
        assert np.corrcoef(mine.ravel(), theirs.ravel())[0, 1] > 0.98


def test_hd_clip_without_a_face_is_rejected(tmp_path):
    config = BuildConfig()
    frames = (np.full((720, 1280, 3), 128, np.uint8) for _ in range(30))
    path = mf.write_video(tmp_path / "empty_hd.mkv", frames, 25.0, audio=mf.grid_audio()[: 16000 * 30 // 25])
    with pytest.raises(ClipError) as info:
        process_clip(_record(path), config)
    assert info.value.reason == "no_face"


def test_hd_clip_is_decoded_once_and_region_crops_match_full_frames(tmp_path, monkeypatch):
    """Past video.cache_budget_mb the kept frames are cut to the face region, so a 1080p clip is
    decoded once; the crops equal those warped from whole frames (and from a second decoding)."""
    from talkdata.pipeline import clip as clip_module

    path = mf.write_video(tmp_path / "grid_1080.mkv", _grid_on_canvas((1920, 1080), 2.0)[:40], 25.0,
                          audio=mf.grid_audio()[: 16000 * 40 // 25])
    decodes = []
    original = clip_module.iter_frames
    monkeypatch.setattr(clip_module, "iter_frames", lambda *a, **k: decodes.append(a[0]) or original(*a, **k))
    outputs = {}
    for budget in (4096, 64, 0):  # all whole frames; regions (40 whole frames are 237 MiB); decoded again
        config = resolve({}, "test", {"video.cache_budget_mb": budget})
        decodes.clear()
        outputs[budget] = process_clip(_record(path), config)
        assert len(decodes) == (2 if budget == 0 else 1), budget
    assert outputs[4096].files["video.mp4"] == outputs[0].files["video.mp4"]
    assert outputs[64].files["lmk.npy"] == outputs[4096].files["lmk.npy"]
    crops = {b: np.stack(mf.read_frames(o.files["video.mp4"], "rgb24")).astype(int) for b, o in outputs.items()}
    assert np.abs(crops[64] - crops[4096]).mean() < 2.0  # after H.264 (bilinear rounding differences, amplified)
    # before encoding, a crop from the region is the crop from the whole frame (bilinear rounding aside)
    affines = np.load(__import__("io").BytesIO(outputs[4096].files["affine.npy"])).astype(np.float64)
    boxes = np.load(__import__("io").BytesIO(outputs[4096].files["bbox.npy"])).astype(np.float64)
    for t, picture in enumerate(list(iter_frames(path, 25.0, "picture"))[:10]):
        rgb = picture.rgb()
        kept = clip_module._face_region(picture, boxes[t])
        assert kept.picture.nbytes < rgb.nbytes / 4  # a region of the yuv420p planes, not the frame
        assert clip_module._covers(kept, affines[t], 256)
        pixels, shifted = clip_module._crop_source(kept, affines[t], 256)
        assert pixels.size < rgb.size / 4  # only what the crop reads is converted to RGB
        full = clip_module.warp_crop(rgb, affines[t], 256)
        part = clip_module.warp_crop(pixels, shifted, 256)
        assert np.abs(full.astype(int) - part).max() <= 1


@pytest.mark.parametrize("placement", [fp.Placement("vox473", "1080p", 110, centre=(0.3, 0.6)),
                                       fp.Placement("grid", "720p", 80, centre=(0.85, 0.2))], ids=lambda p: p.name)
def test_gray_around_the_face_gives_the_whole_frames_landmarks(placement, face_config, monkeypatch):
    """Given RGB only, the tracker converts to grayscale just the region around an upright face: the
    landmarks and boxes are exactly those of tracking with the whole frame's grayscale, and the
    68-point predictor is shown regions, not whole HD frames, between key frames."""
    frames = list(fp.canvas_frames(placement, N))
    whole = _track(placement, face_config)
    predictor = landmark_backend("dlib")
    shown = []
    original = type(predictor).predict
    monkeypatch.setattr(type(predictor), "predict",
                        lambda self, gray, rgb, box: shown.append(gray.shape) or original(self, gray, rgb, box))
    regions = FaceTracker(make_detector(face_config), predictor, face_config.detect_every, face_config.redetect_iou)
    for rgb in frames:
        regions.step(None, rgb)
    a, b = whole.result(), regions.result()
    assert b[2].all()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert len(shown) == N
    h, w = frames[0].shape[:2]
    assert all(s[0] * s[1] < 0.5 * w * h for s in shown)
