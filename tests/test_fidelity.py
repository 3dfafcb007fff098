"""Each loader profile against the published system's own input construction, on real sample builds.

Every reference below is written for this test from reading the system's code (file and line cited);
it uses only the stored shard members (``audio.wav`` read with scipy, as the systems read wav files)
and the libraries the systems use (python_speech_features, numpy). Tolerances: float32 rounding for
MFCC and logits, 1e-5 for audio windows and codes, 0 for pixels at the native size.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from python_speech_features import mfcc as psf_mfcc
from scipy.io import wavfile
from scipy.signal import savgol_filter

import talkdata
from talkdata.loader.epoch_plan import rng_for
from talkdata.loader.shard_list import open_dataset

import media_factory as mf
from test_loader import deepspeech_grid, frames_of, npy, shard_clips

RATE = 16000


@pytest.fixture(scope="module")
def ds_grid(tmp_path_factory):
    return deepspeech_grid(tmp_path_factory)


def read_pcm(wav: bytes) -> np.ndarray:
    """``scipy.io.wavfile.read`` of the stored audio.wav: the int16 samples (FACIAL audio_preprocessing.py:56)."""
    rate, pcm = wavfile.read(io.BytesIO(wav))
    assert rate == RATE and pcm.dtype == np.int16
    return pcm


# ------------------------------------------------------------------------------------ 1. MFCC


def atvg_mfcc(wav: bytes) -> np.ndarray:
    """ATVGnet code/lrw_data.py audio2mfcc: ``librosa.load(wav, sr=16000)`` (PCM16 / 32768 as float32,
    no resampling at 16 kHz) then ``python_speech_features.mfcc(audio, 16000, winstep=0.01)``."""
    audio = read_pcm(wav).astype(np.float32) / np.float32(32768.0)
    return psf_mfcc(audio, RATE, winstep=0.01)


@pytest.mark.parametrize("which", ["grid_dataset", "crema_dataset"])
def test_mfcc_is_atvgs_mfcc_of_the_stored_audio(which, request):
    clips = shard_clips(request.getfixturevalue(which))
    assert len(clips) == {"grid_dataset": 3, "crema_dataset": 4}[which]  # every sample of the build
    for key, files in clips.items():
        stored = npy(files["mfcc.npy"])
        frames = stored.shape[0]
        reference = atvg_mfcc(files["audio.wav"])
        # the library frames 4T - 1 rows for T frames of audio (its last hop has no full window)
        assert len(read_pcm(files["audio.wav"])) == frames * 640 and reference.shape == (4 * frames - 1, 13)
        rows = stored.reshape(-1, 13)[: 4 * frames - 1]
        print(key, "max |diff|", float(np.abs(rows - reference).max()))
        np.testing.assert_allclose(rows, reference.astype(np.float32), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ 1-2. DeepSpeech


def facial_logits(wav: bytes, model_path: str) -> np.ndarray:
    """FACIAL audio2face/_utils/audio_handler.py:63-128 (VOCA's convert_to_deepspeech): int16 samples
    (resampy leaves 16 kHz as it is), mfcc numcep=26 every second frame, 9 frames of context, one global
    z-score, the acoustic model; returns the (S, 29) logits of the 50 Hz steps."""
    import onnxruntime as ort

    pcm = read_pcm(wav)
    features = psf_mfcc(pcm, samplerate=RATE, numcep=26)[::2]
    steps = len(features)
    padded = np.concatenate((np.zeros((9, 26)), features, np.zeros((9, 26))))
    inputs = np.stack([padded[i : i + 19].reshape(-1) for i in range(steps)])
    inputs = (inputs - np.mean(inputs)) / np.std(inputs)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    node = inputs.astype(np.float32).reshape(1, steps, 19, 26)  # the test model takes the windowed layout
    out = session.run(None, {names[0]: node, names[1]: np.array([steps], np.int32)})[0]
    return out[:, 0]


def facial_windows(logits: np.ndarray, n_audio_samples: int, fps: int) -> np.ndarray:
    """audio_handler.py:130-146 with audio_preprocessing.py:32-35 (window 16, stride 1, 2 at 25 fps);
    ``fps=60`` is VOCA's utils/audio_handler.py:123-134 (always interpolated, to 60 fps)."""
    if fps != 25:
        num_frames = int(round(n_audio_samples / RATE * fps))
        times = np.arange(len(logits)) / 50.0
        logits = np.stack([np.interp(np.arange(num_frames) / float(fps), times, logits[:, c])
                           for c in range(logits.shape[1])], axis=1)
    stride = 2 if fps == 25 else 1
    padded = np.concatenate((np.zeros((8, 29)), logits, np.zeros((8, 29))), axis=0)
    return np.array([padded[i : i + 16] for i in range(0, padded.shape[0] - 16, stride)])


def test_deepspeech_field_is_facials_50hz_logits_of_the_stored_audio(ds_grid):
    model = open_dataset(ds_grid).manifest["config"]["audio"]["deepspeech_model"]
    clips = shard_clips(ds_grid)
    assert len(clips) == 3  # every GRID sample
    for files in clips.values():
        stored = npy(files["deepspeech.npy"])
        reference = facial_logits(files["audio.wav"], model)
        assert stored.shape == reference.shape == (150, 29)  # 3 s at 50 steps per second
        np.testing.assert_allclose(stored, reference, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("fps", [30, 25, 60])
def test_facial_audio_windows_and_starts_match_facial(ds_grid, fps):
    window = 32
    clips = shard_clips(ds_grid)
    items = list(talkdata.load(ds_grid, profile="facial", split="all", window=window, stride=1, fps=fps,
                               shuffle=False))
    by_clip = {}
    for item in items:
        by_clip.setdefault(item["__key__"], []).append(item)
    assert set(by_clip) == set(clips)
    for key, files in clips.items():
        pcm = read_pcm(files["audio.wav"])
        windows = facial_windows(npy(files["deepspeech.npy"]).astype(np.float64), len(pcm), fps)
        n_params = round(75 / 25 * fps)  # the targets resampled to fps
        n = min(n_params, len(windows))  # dataset102.py:45-50
        assert len(windows) == {30: 90, 25: 75, 60: 180}[fps]
        # dataset102.py:56: starts range(0, N - 128), here with the window of 32
        assert [item["start"] for item in by_clip[key]] == list(range(0, n - window))
        for item in by_clip[key]:
            s = item["start"]
            assert item["audio"].shape == (window, 16, 29) and item["audio"].dtype == np.float32
            np.testing.assert_allclose(item["audio"], windows[s : s + window], rtol=1e-6, atol=1e-5)
    last = list(talkdata.load(ds_grid, profile="facial", split="all", window=window, stride=1, fps=fps,
                              include_last=True))
    assert len(last) == len(items) + 3  # the last full window of each clip


def test_facial_targets(ds_grid):
    """dataset102.py:38-55: columns 0-5 (pitch, yaw, roll, s, tx, ty) z-scored per video, AU45 raw."""
    clips = shard_clips(ds_grid)
    follows = []
    for item in talkdata.load(ds_grid, profile="facial", split="all", fps=None, whole_clips=True, shuffle=False):
        files = clips[item["__key__"]]
        pose = npy(files["pose.npy"]).astype(np.float64)
        affine = npy(files["affine.npy"]).astype(np.float64)
        lmk_src = npy(files["lmk_src.npy"]).astype(np.float64)
        target = item["target"]
        assert target.shape == (75, 7) and target.dtype == np.float32
        # angles: face3d matrix2angle signs (face_render/face3d/mesh/transform.py:18-24): pitch > 0 looking down;
        # fit_headpose.py:73: savgol_filter(headpose, 5, 3, axis=0) over every column before saving
        angles = savgol_filter(pose[:, [1, 0, 2]] * [-1, 1, 1], 5, 3, axis=0)
        z = (angles - angles.mean(0)) / angles.std(0)
        np.testing.assert_allclose(target[:, :3], z, atol=1e-5)
        np.testing.assert_allclose(target[:, :3] * item["target_std"][:3] + item["target_mean"][:3], angles, atol=1e-3)
        # s: source pixels per crop pixel; tx, ty: where the crop centre lies in the source, y up
        scale = savgol_filter(1.0 / np.sqrt(np.abs(np.linalg.det(affine[:, :, :2]))), 5, 3)
        np.testing.assert_allclose(target[:, 3], (scale - scale.mean()) / scale.std(), atol=1e-4)
        meta = json.loads(files["json"])
        inverse = np.linalg.inv(affine[:, :, :2])
        centre = np.einsum("tij,tj->ti", inverse, meta["crop_size"] / 2 - affine[:, :, 2])  # the crop's centre
        width, height = meta["source_size"]
        for column, values in ((4, centre[:, 0] - width / 2), (5, height / 2 - centre[:, 1])):
            values = savgol_filter(values, 5, 3)
            np.testing.assert_allclose(target[:, column], (values - values.mean()) / values.std(), atol=1e-4)
        # they follow the face: the stable points' centroid (x right, y up)
        stable = lmk_src[:, [33, 36, 39, 42, 45]].mean(axis=1)
        follows.append((np.corrcoef(target[:, 4], stable[:, 0])[0, 1], np.corrcoef(target[:, 5], -stable[:, 1])[0, 1]))
        # AU45 in 0..5, high when the eye aspect ratio drops: 0 at or above the clip's median EAR (the open
        # eye), 5 at or below 40 % of it, linear between (talkdata.loader.facial's documented mapping)
        au45, ear = target[:, 6], npy(files["blink.npy"])
        assert au45.min() >= 0 and au45.max() <= 5 and np.array_equal(item["blink"], ear)
        neutral = np.median(ear.astype(np.float64))
        expected = 5.0 * np.clip((neutral - ear) / (0.6 * neutral), 0.0, 1.0)
        assert (ear < neutral).any() and au45.max() > 0  # the eyes narrow in some frames of every clip
        np.testing.assert_allclose(au45, expected, atol=1e-5)
        assert np.corrcoef(au45, ear)[0, 1] < -0.5
    assert np.mean(follows, axis=0).min() > 0.75


# ----------------------------------------------------------------------------------------- ATVG


def test_atvg_window_count_and_mfcc_match_atvgnet(grid_dataset):
    """ATVGnet code/dataset.py:58-67 (LRW_1D_lstm_landmark_pca): example frame r, targets r+1..r+16, audio
    of target t = mfcc[(t - 3) * 4 : (t + 4) * 4, 1:] stacked with torch.stack, which needs 28 rows each."""
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"], split="all", stride=1,
                               shuffle=False))
    for key, files in clips.items():
        reference = atvg_mfcc(files["audio.wav"])
        frames = npy(files["mfcc.npy"]).shape[0]
        valid = [r for r in range(3, frames) if all(
            len(reference[(r + i - 3) * 4 : (r + i + 4) * 4]) == 28 for i in range(1, 17))]
        mine = [item for item in items if item["__key__"] == key]
        assert [item["example_index"] for item in mine] == valid and valid[-1] == frames - 21
        for item in mine:
            r = item["example_index"]
            expected = np.stack([reference[(r + i - 3) * 4 : (r + i + 4) * 4, 1:] for i in range(1, 17)])
            np.testing.assert_allclose(item["mfcc"], expected.astype(np.float32), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------- vid2vid


def dlib_pose(rgb: np.ndarray) -> np.ndarray:
    import cv2

    from talkdata.config import resolve
    from talkdata.face.detect import make_detector
    from talkdata.face.landmarks import DlibLandmarks
    from talkdata.face.pose import estimate_pose

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    detector = make_detector(resolve({}, "test", {"face.detector": "hog"}).face)
    box = detector.detect(detector.pick(gray, rgb))[0].box
    points = DlibLandmarks().predict(gray, None, box)
    return estimate_pose(points[None], rgb.shape[1], rgb.shape[0])[0, :3], points


def test_vid2vid_pose_is_hopenets_convention_on_rotated_and_mirrored_frames():
    """Hopenet code/utils.py:86-111 draw_axis: the nose axis ends at x = sin(-yaw), y = -cos(yaw) sin(pitch)
    (image y down), the x axis at y = sin(roll): yaw > 0 turns the face toward the image's left, pitch > 0
    up, roll > 0 clockwise. code/datasets.py:55-57: a mirrored image has yaw and roll negated."""
    from talkdata.loader.vid2vid import hopenet_pose

    for index in (0, 40):
        frame = mf.grid_frames()[index]
        pose, points = dlib_pose(frame)
        upright = hopenet_pose(pose)
        rotated = hopenet_pose(dlib_pose(mf.rotate_frame(frame, 10.0))[0])  # 10 deg counter-clockwise
        mirrored, mirrored_points = dlib_pose(mf.mirror_frame(frame))
        mirrored = hopenet_pose(mirrored)
        assert rotated[2] - upright[2] == pytest.approx(-10.0, abs=3.0)  # counter-clockwise is negative
        assert mirrored[0] == pytest.approx(-upright[0], abs=3.0) and mirrored[2] == pytest.approx(-upright[2], abs=3.0)
        assert mirrored[1] == pytest.approx(upright[1], abs=3.0)
        # the sign of yaw: the nose tip left of the eyes' midpoint = turned toward the image's left = yaw > 0
        for hop, pts in ((upright, points), (mirrored, mirrored_points)):
            offset = pts[30, 0] - (pts[36, 0] + pts[45, 0]) / 2
            if abs(offset) > 0.03 * (pts[45, 0] - pts[36, 0]):
                assert np.sign(hop[0]) == -np.sign(offset)
        assert np.all((upright >= -99) & (upright <= 96))


def test_vid2vid_fomm_pairs_and_pixels(grid_dataset, tmp_path):
    """FOMM frames_dataset.py (the re-implementation's loader): frame_idx = np.sort(np.random.choice(T,
    replace=True, size=2)); frames img_as_float32, untouched at the native size."""
    from talkdata.loader.vid2vid import hopenet_pose

    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="vid2vid", split="all", pairs_per_clip=40, shuffle=False))
    seen_same = False
    for key, files in clips.items():
        rng = rng_for(0, 0, key, "vid2vid")
        expected = [np.sort(rng.choice(75, size=2, replace=True)) for _ in range(40)]
        mine = [item for item in items if item["__key__"] == key]
        assert [(i["source_index"], i["driving_index"]) for i in mine] == [tuple(map(int, p)) for p in expected]
        video = frames_of(files["video.mp4"], tmp_path)
        pose = hopenet_pose(npy(files["pose.npy"]))
        for item in mine[:5]:
            assert np.array_equal(item["source"], video[item["source_index"]].transpose(2, 0, 1) / np.float32(255))
            assert np.array_equal(item["driving_pose"], pose[item["driving_index"]])
        seen_same |= any(i["source_index"] == i["driving_index"] for i in mine)
    assert seen_same  # with replacement: 120 draws of 75 frames make a repeated frame near certain


def test_vid2vid_augmentations_flip_the_pose_with_the_frames(grid_dataset, tmp_path):
    from talkdata.loader.vid2vid import hopenet_pose

    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="vid2vid", split="test", pairs_per_clip=24, augment=True,
                               pairs="distinct"))
    flips = reverses = 0
    videos = {key: frames_of(files["video.mp4"], tmp_path) for key, files in clips.items()}
    for item in items:
        files, video = clips[item["__key__"]], videos[item["__key__"]]
        driving = video[item["driving_index"]].astype(np.float32).transpose(2, 0, 1) / 255
        pose = hopenet_pose(npy(files["pose.npy"]))[item["driving_index"]]
        plain = np.abs(item["driving"] - driving).mean()
        mirrored = np.abs(item["driving"] - driving[..., ::-1]).mean()
        if mirrored < plain:  # flipped frames come with the mirrored pose
            flips += 1
            np.testing.assert_allclose(item["driving_pose"], pose * [-1, 1, -1], atol=1e-6)
        else:
            np.testing.assert_allclose(item["driving_pose"], pose, atol=1e-6)
        assert min(plain, mirrored) < 0.15 and abs(plain - mirrored) > 0.03  # the jittered frame stays closer to one
        reverses += item["source_index"] > item["driving_index"]
    assert 0 < flips < len(items) and 0 < reverses < len(items)


# ------------------------------------------------------------------------------- Diffused Heads


def test_diffused_heads_clip_audio_is_the_encoders_window_sequence(grid_dataset):
    """Diffused Heads utils.py get_audio_emb / AudioEncoder.forward / cut_n_stack: torchaudio.load
    (PCM16 / 32768), pad 1280 left and 1280 right (pad_samples 3200 - 640 split //2), windows of 3200
    every 640 samples, (len - 3200) // 640 + 1 of them, fed in order to the GRU."""
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="diffused_heads", split="all", audio="clip", shuffle=False))
    heads = [item for item in items if item["kind"] == "clip_audio"]
    assert len(heads) == 3
    for head in heads:
        audio = read_pcm(clips[head["__key__"]]["audio.wav"]) / 32768.0
        padded = np.concatenate([np.zeros(1280), audio, np.zeros(1280)])
        count = (len(padded) - 3200) // 640 + 1
        expected = np.stack([padded[i * 640 : i * 640 + 3200] for i in range(count)])
        assert head["audio_windows"].shape == (75, 3200) and count == 75
        np.testing.assert_allclose(head["audio_windows"], expected, rtol=0, atol=1e-5)
        assert np.array_equal(head["frame_indices"], np.arange(75))
    # then the clip's per-frame items, pointing at rows t-2..t+2 (edge replicated) of the embeddings
    position = items.index(heads[0])
    frames = items[position + 1 : position + 76]
    assert [f["index"] for f in frames] == list(range(75)) and all(f["kind"] == "frame" for f in frames)
    for f in frames:
        assert "audio" not in f
        assert np.array_equal(f["audio_index"], np.clip(np.arange(f["index"] - 2, f["index"] + 3), 0, 74))
    assert math.isclose(float(np.abs(heads[0]["audio_windows"][0, :1280]).max()), 0.0)


def stand_in_basis(folder, landmarks: np.ndarray) -> dict:
    """Arrays with the shapes of ATVGnet's basics/ files (the real ones are not reachable here): S with
    100 orthonormal rows, a pixel-scale mean shape, its procrustes-standardised version, an orthonormal
    136 x 136 PCA and a x5 mean."""
    from scipy.spatial import procrustes

    rng = np.random.default_rng(7)
    S = np.linalg.qr(rng.normal(size=(136, 136)))[0][:, :100].T
    mean_img = landmarks.mean(axis=0) * 3.0 + 100.0
    mean_norm = procrustes(mean_img, mean_img)[0].reshape(1, 136)
    U = np.linalg.qr(rng.normal(size=(136, 136)))[0]
    arrays = {"S.npy": S, "mean_shape_img.npy": mean_img, "mean_shape_norm.npy": mean_norm,
              "U_lrw1.npy": U, "mean_lrw1.npy": 5.0 * mean_norm[0] + rng.normal(0, 0.01, 136)}
    for name, array in arrays.items():
        np.save(folder / name, array)
    return arrays


def atvg_norm_lmarks(lmarks: np.ndarray, S, mean_norm, ms_img) -> np.ndarray:
    """ATVGnet code/utils.py:79-100 normLmarks, with MSK / SK as utils.py:54-55 reshape them."""
    from scipy.spatial import procrustes

    MSK = np.reshape(mean_norm, [1, 136])
    SK = np.reshape(S, [1, S.shape[0], 136])
    mouthParams = np.zeros((1, 100))
    mouthParams[:, 1] = -0.06
    tmp = MSK.copy()
    tmp[:, 48 * 2:] += np.dot(mouthParams, SK)[0, :, 48 * 2:]
    open_mouth_params = np.reshape(np.dot(S, tmp[0, :] - MSK[0, :]), (1, 100))
    norm_list = []
    for i in range(lmarks.shape[0]):
        mtx1, mtx2, _ = procrustes(ms_img, lmarks[i, :, :])
        mtx1 = np.reshape(mtx1, [1, 136])
        norm_list.append(np.reshape(mtx2, [1, 136])[0, :])
    init_params = np.reshape(np.dot(S, norm_list[-1] - mtx1[0, :]), (1, 100))
    pred_seq = []
    for i in range(lmarks.shape[0]):
        params = np.reshape(np.dot(S, norm_list[i] - mtx1[0, :]), (1, 100)) - init_params - open_mouth_params
        pred_seq.append((np.dot(params, SK)[0, :, :] + MSK)[0, :])
    return np.array(pred_seq)


def test_atvg_published_basis_reproduces_normlmarks_and_codes(grid_dataset, tmp_path):
    clips = shard_clips(grid_dataset)
    first = npy(next(iter(clips.values()))["lmk.npy"]).astype(np.float64)
    arrays = stand_in_basis(tmp_path, first)
    items = list(talkdata.load(grid_dataset, profile="atvg", basis=str(tmp_path), fields=["lmk.npy", "mfcc.npy"],
                               split="all", stride=10, shuffle=False))
    assert items
    for item in items:
        lmk = npy(clips[item["__key__"]]["lmk.npy"]).astype(np.float64)
        shapes = 5.0 * atvg_norm_lmarks(lmk, arrays["S.npy"], arrays["mean_shape_norm.npy"],
                                        arrays["mean_shape_img.npy"])
        # code/dataset.py:51 (x 5), demo.py: (lmark - mean) @ U[:, :6]
        codes = (shapes - arrays["mean_lrw1.npy"]) @ arrays["U_lrw1.npy"][:, :6]
        s, r = item["start"], item["example_index"]
        np.testing.assert_allclose(item["target_pca"], codes[s : s + 16], rtol=0, atol=1e-5)
        np.testing.assert_allclose(item["example_pca"], codes[r], rtol=0, atol=1e-5)


def test_atvg_basis_errors_are_one_line(grid_dataset, tmp_path):
    from talkdata.errors import UserError

    with pytest.raises(UserError, match="S.npy not found") as err:
        talkdata.load(grid_dataset, profile="atvg", basis=str(tmp_path))
    assert "\n" not in str(err.value)
    stand_in_basis(tmp_path, np.random.default_rng(0).normal(size=(1, 68, 2)))
    np.save(tmp_path / "U_lrw1.npy", np.zeros((136, 6)))
    with pytest.raises(UserError, match=r"U_lrw1.npy has shape \(136, 6\)"):
        talkdata.load(grid_dataset, profile="atvg", basis=str(tmp_path))


def test_atvg_vgnet_items(grid_dataset, tmp_path):
    """ATVGnet code/dataset.py:318-360 (LRWdataset1D_lstm_gt): 16 frames, landmark1d x 5 of the same
    frames (16, 136), an example frame drawn from the whole clip with its x5 landmarks."""
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="atvg", vgnet=True, split="test", stride=20, shuffle=False))
    assert items
    drawn = set()
    for item in items:
        files = clips[item["__key__"]]
        video = frames_of(files["video.mp4"], tmp_path)
        norm = npy(files["lmk_norm.npy"]).reshape(-1, 136) * 5.0
        s, e = item["start"], item["example_frame_index"]
        drawn.add(e)
        assert item["frames"].shape == (16, 3, 128, 128) and item["landmarks"].shape == (16, 136)
        np.testing.assert_allclose(item["landmarks"], norm[s : s + 16], atol=1e-5)
        np.testing.assert_allclose(item["example_landmark"], norm[e], atol=1e-5)
        # 256-px crops halved by area interpolation, ToTensor + Normalize(0.5, 0.5)
        half = video[e].astype(np.float64).reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(item["example_frame"], half.transpose(2, 0, 1) / 127.5 - 1, atol=1 / 127.5 + 1e-6)
    assert len(drawn) > 1


def test_the_loader_does_not_import_the_feature_math():
    """The FACIAL / VOCA windowing lives in the loader; python_speech_features is the build's."""
    import subprocess
    import sys

    code = ("import sys, talkdata, talkdata.loader, talkdata.loader.profiles as p; p.registry(); "
            "print(sorted(m for m in sys.modules if m.startswith(('python_speech_features', 'talkdata.audio'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_per_frame_deepspeech_of_an_older_build_is_a_clear_error():
    from talkdata.errors import UserError
    from talkdata.loader.members import Clip
    from talkdata.loader.facial import FACIAL
    from talkdata.loader.profiles import ItemContext

    meta = {"frames": 75, "fps": 25.0, "audio_rate": 16000, "audio_samples": 48000}
    arrays = {"deepspeech": np.zeros((75, 29), np.float32), "pose": np.zeros((75, 6), np.float32)}
    ctx = ItemContext(frozenset({"deepspeech.npy", "pose.npy"}), 32, 1, 0, 0, FACIAL().resolve_options({}))
    with pytest.raises(UserError, match=r"deepspeech.npy has shape \(75, 29\), expected the \(150, 29\)") as err:
        list(FACIAL().items(Clip("s1/x", meta, arrays), ctx))
    assert "\n" not in str(err.value)
    arrays["deepspeech"] = np.ones((150, 29), np.float32)
    assert len(list(FACIAL().items(Clip("s1/x", meta, arrays), ctx))) == 90 - 32
