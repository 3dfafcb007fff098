"""The streaming loader on real built samples: windows in sync with the shard fields, every profile's
shapes, ranges and published windowing, worker/rank splitting without loss or duplicates,
determinism, fsspec URLs, numpy-only iteration without torch, and one-line errors."""

from __future__ import annotations

import io
import itertools
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

import talkdata
from talkdata.errors import UserError
from talkdata.face.shape import load_shape_model
from talkdata.loader.members import decode_sample
from talkdata.loader.epoch_plan import Consumer, plan_epoch
from talkdata.loader.shard_list import Shard
from talkdata.media.encode import decode_wav
from talkdata.shards import read_shard

DATA = Path(__file__).parent / "data"


def deepspeech_grid(tmp_path_factory) -> Path:
    """The GRID samples built with a tiny linear DeepSpeech ONNX model (built once per test run)."""
    from conftest import shared_build

    def make(folder: Path) -> None:
        from talkdata.pipeline.build import build
        from test_deepspeech import _linear_onnx

        model = _linear_onnx(folder / "deepspeech.onnx")
        build("grid", DATA / "grid", folder / "grid", {"audio.deepspeech_model": str(model)})

    return shared_build(tmp_path_factory, "ds-grid", make) / "grid"


@pytest.fixture(scope="session")
def ds_grid(tmp_path_factory) -> Path:
    return deepspeech_grid(tmp_path_factory)


# ----------------------------------------------------------------------------------------- helpers


def shard_clips(out: Path) -> dict[str, dict[str, bytes]]:
    clips = {}
    for path in sorted((out / "shards").rglob("*.tar")):
        clips.update(read_shard(path))
    return clips


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data))


def frames_of(mp4: bytes, tmp_path: Path) -> np.ndarray:
    """Every frame of the mp4, decoded from a file on disk (the loader decodes from memory)."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(mp4)
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def half_size(frames: np.ndarray) -> np.ndarray:
    """Exact 2x2 box downsampling (what area interpolation does for a factor of 2)."""
    f = frames.astype(np.float64)
    return (f[:, 0::2, 0::2] + f[:, 1::2, 0::2] + f[:, 0::2, 1::2] + f[:, 1::2, 1::2]) / 4


def frame_counts(out: Path) -> dict[str, int]:
    table = pq.read_table(out / "index.parquet").to_pylist()
    return {row["key"]: row["frames"] for row in table}


def ids(items) -> list[tuple[str, int]]:
    return [(item["__key__"], int(item.get("start", item.get("index", -1)))) for item in items]


# ----------------------------------------------------------------------------------- raw windows


def test_raw_windows_are_the_shard_rows_of_the_same_frames(grid_dataset, tmp_path):
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, split="all", window=16, stride=8, shuffle=False))
    expected = {(key, s) for key, t in frame_counts(grid_dataset).items() for s in range(0, t - 16 + 1, 8)}
    assert sorted(ids(items)) == sorted(expected) and len(items) == len(expected) == 3 * 8
    videos = {key: frames_of(files["video.mp4"], tmp_path) for key, files in clips.items()}
    for item in items:
        files, s = clips[item["__key__"]], item["start"]
        for name in ("mfcc", "pca", "lmk", "lmk_norm", "pose", "blink"):
            assert np.array_equal(item[name], npy(files[f"{name}.npy"])[s : s + 16]), name
        assert item["mfcc"].shape == (16, 4, 13) and item["mfcc"].dtype == np.float32
        audio, rate = decode_wav(files["audio.wav"])
        assert rate == 16000 and item["audio"].shape == (16 * 640,)
        assert np.array_equal(item["audio"], audio[s * 640 : (s + 16) * 640])
        assert item["video"].shape == (16, 256, 256, 3) and item["video"].dtype == np.uint8
        assert np.array_equal(item["video"], videos[item["__key__"]][s : s + 16])
    assert "deepspeech" not in items[0]  # this build has no DeepSpeech model


def test_raw_windows_carry_the_deepspeech_steps_of_their_frames(ds_grid):
    clips = shard_clips(ds_grid)
    items = list(talkdata.load(ds_grid, fields=["deepspeech.npy", "mfcc.npy"], window=10, stride=7, split="all"))
    assert len(items) == 3 * 10  # starts 0, 7, ..., 63
    for item in items:
        logits = npy(clips[item["__key__"]]["deepspeech.npy"])
        assert logits.shape == (150, 29)  # 3 s at DeepSpeech's 50 steps per second
        # 10 frames at 25 fps = 20 steps, from step 2 * start (zero rows past the last step)
        padded = np.concatenate([logits, np.zeros((20, 29), np.float32)])
        assert item["deepspeech"].shape == (20, 29)
        assert np.array_equal(item["deepspeech"], padded[2 * item["start"] : 2 * item["start"] + 20])
    assert "deepspeech" in next(iter(talkdata.load(ds_grid)))  # read by default when the build has it


def test_video_is_decoded_in_memory_and_only_asked_fields_are_read(grid_dataset, monkeypatch):
    import tempfile

    def no_temp_files(*args, **kwargs):
        raise AssertionError("the loader must not write temporary files")

    for name in ("NamedTemporaryFile", "TemporaryFile", "mkstemp", "mkdtemp", "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, no_temp_files)
    items = list(talkdata.load(grid_dataset, fields=["video.mp4"], size=64, shuffle=False))
    assert items and all(item["video"].shape == (16, 64, 64, 3) for item in items)

    import talkdata.media.mp4_frames as mp4_frames

    monkeypatch.setattr(mp4_frames.av, "open", no_temp_files)  # no field needs the video decoder now
    items = list(talkdata.load(grid_dataset, fields=["mfcc.npy"], shuffle=False))
    assert items and all(set(item) == {"__key__", "start", "mfcc"} for item in items)


def test_whole_clips_give_one_item_per_clip(crema_dataset):
    counts = frame_counts(crema_dataset)
    items = list(talkdata.load(crema_dataset, fields=["pose.npy", "audio.wav"], whole_clips=True, shuffle=False))
    assert sorted(item["__key__"] for item in items) == sorted(counts)
    for item in items:
        frames = counts[item["__key__"]]
        assert item["pose"].shape == (frames, 6)
        assert item["audio"].shape == (round(frames / 25 * 16000),)


# ------------------------------------------------------------------------------------ atvg profile


def test_atvg_windows_follow_atvgnet(grid_dataset, tmp_path):
    clips = shard_clips(grid_dataset)
    manifest = json.loads((grid_dataset / "dataset.json").read_text())
    basis = load_shape_model(grid_dataset / "stats/shape_model.npz").basis
    items = list(talkdata.load(grid_dataset, profile="atvg", split="all", shuffle=False))
    # T = 75: example frames r = 3, 19, 35, 51 (r + 16 + 3 < 75), targets r+1 .. r+16
    assert sorted(ids(items)) == sorted((key, s) for key in clips for s in (4, 20, 36, 52))
    for item in items:
        files, s, r = clips[item["__key__"]], item["start"], item["example_index"]
        assert r == s - 1
        # x5 6-d PCA of the identity-removed landmarks, from lmk_norm and the basis (not from pca.npy)
        flat = npy(files["lmk_norm.npy"]).astype(np.float64).reshape(75, 136)
        codes = (5.0 * flat - 5.0 / basis.scale * basis.mean) @ basis.components[:6].T
        assert item["example_pca"].shape == (6,) and item["target_pca"].shape == (16, 6)
        assert np.allclose(item["example_pca"], codes[r], atol=1e-5)
        assert np.allclose(item["target_pca"], codes[s : s + 16], atol=1e-5)
        # 28 MFCC rows (frames t-3 .. t+3, 4 rows each) without c0 for target t
        rows = npy(files["mfcc.npy"]).reshape(75 * 4, 13)
        assert item["mfcc"].shape == (16, 28, 12)
        for i, t in enumerate(range(s, s + 16)):
            assert np.array_equal(item["mfcc"][i], np.stack([rows[j, 1:] for j in range(4 * t - 12, 4 * t + 16)]))
        # 128 x 128 region frames in [-1, 1]
        video = half_size(frames_of(files["video.mp4"], tmp_path))
        assert item["frames"].shape == (16, 3, 128, 128) and item["frames"].dtype == np.float32
        assert -1.0 <= item["frames"].min() and item["frames"].max() <= 1.0
        expected = video[s : s + 16].transpose(0, 3, 1, 2) / 127.5 - 1
        assert np.abs(item["frames"] - expected).max() < 2 / 127.5
        assert np.abs(item["example_frame"] - video[r].transpose(2, 0, 1) / 127.5 + 1).max() < 2 / 127.5
    assert manifest["shape_model"]["settings"]["scale"] == 1.0  # so the x5 above was applied by the loader


def test_atvg_windows_keep_the_audio_context_inside_the_clip(grid_dataset):
    items = list(talkdata.load(grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"], split="test", stride=1,
                               shuffle=False))
    # first target 4 (example frame 3), last target 70: its MFCC context ends with frame 73, because
    # python_speech_features gives 4 * 75 - 1 rows for 75 frames and ATVG's slice needs all 28
    assert [item["start"] for item in items] == list(range(4, 56))


def test_atvg_without_video_for_atnet(grid_dataset):
    items = list(talkdata.load(grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"]))
    assert items and set(items[0]) == {"__key__", "start", "example_index", "example_pca", "target_pca", "mfcc"}
    with pytest.raises(UserError, match="needs the field"):
        talkdata.load(grid_dataset, profile="atvg", fields=["mfcc.npy"])


# ------------------------------------------------------------------------------------- sda profile


def test_sda_frames_and_raw_audio_windows(grid_dataset, tmp_path):
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="sda", split="all", shuffle=False))
    assert len(items) == 3 * 4  # 75 frames, windows of 16
    for item in items:
        files, s = clips[item["__key__"]], item["start"]
        audio, _ = decode_wav(files["audio.wav"])
        assert item["audio"].shape == (16, 3200) and item["audio"].dtype == np.float32
        for i, t in enumerate(range(s, s + 16)):
            # window t covers samples [640 t - 1280, 640 t + 1920), zeros outside the clip
            expected = np.array([audio[j] if 0 <= j < len(audio) else 0.0 for j in range(640 * t - 1280, 640 * t + 1920)])
            assert np.array_equal(item["audio"][i], expected.astype(np.float32))
        assert item["frames"].shape == (16, 3, 128, 96) and item["identity"].shape == (3, 128, 96)
        assert -1.0 <= item["frames"].min() and item["frames"].max() <= 1.0
        # the centre 3/4 of the width (192 of 256 px), halved
        video = half_size(frames_of(files["video.mp4"], tmp_path)[:, :, 32:224])
        assert np.abs(item["frames"] - (video[s : s + 16].transpose(0, 3, 1, 2) / 127.5 - 1)).max() < 2 / 127.5
        assert np.abs(item["identity"] - (video[0].transpose(2, 0, 1) / 127.5 - 1)).max() < 2 / 127.5
    first = [item for item in items if item["start"] == 0][0]
    assert np.abs(first["audio"][0, :1280]).max() == 0 and np.abs(first["audio"][0, 1280:]).max() > 0


# ------------------------------------------------------------------------- diffused heads profile


def test_diffused_heads_items(grid_dataset):
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="diffused_heads", split="test", shuffle=False))
    key = items[0]["__key__"]
    assert [item["index"] for item in items] == list(range(75))  # one item per target frame
    by_index = {item["index"]: item for item in items}
    pcm = np.frombuffer(clips[key]["audio.wav"][44:], "<i2")
    audio = pcm / 32768.0  # torchaudio.load's scale (Diffused Heads utils.py:get_audio_emb)
    landmarks = npy(clips[key]["lmk.npy"])
    for t, item in by_index.items():
        identity = item["identity_index"]
        assert identity != t and 0 <= identity < 75
        assert item["frame"].shape == item["identity"].shape == (3, 128, 128)
        assert np.array_equal(item["identity"], by_index[identity]["frame"])
        # motion: grayscale frames t-2, t-1, the identity frame standing in before the clip starts
        past = [identity] * max(2 - t, 0) + list(range(max(t - 2, 0), t))
        gray = [0.2989 * by_index[p]["frame"][0] + 0.587 * by_index[p]["frame"][1] + 0.114 * by_index[p]["frame"][2]
                for p in past]
        assert item["motion"].shape == (2, 128, 128)
        assert np.allclose(item["motion"], np.stack(gray), atol=1e-5)
        # audio: SDA windows of frames t-2 .. t+2 with edge replication
        assert item["audio"].shape == (5, 3200)
        for row, u in enumerate(range(t - 2, t + 3)):
            u = min(max(u, 0), 74)
            expected = [audio[j] if 0 <= j < len(audio) else 0.0 for j in range(640 * u - 1280, 640 * u + 1920)]
            assert np.array_equal(item["audio"][row], np.float32(expected))
        # lips of the identity frame in 128-px coordinates, and lip_loss's +-5 px box
        lips = landmarks[identity, 48:68] / 2
        assert np.allclose(item["lips"], lips, atol=1e-5)
        x0, y0, x1, y1 = item["lip_box"]
        assert (x0, y0) == (max(0, math.floor(lips[:, 0].min()) - 5), max(0, math.floor(lips[:, 1].min()) - 5))
        assert (x1, y1) == (min(128, math.ceil(lips[:, 0].max()) + 5), min(128, math.ceil(lips[:, 1].max()) + 5))
    again = [item["identity_index"] for item in talkdata.load(grid_dataset, profile="diffused_heads", split="test",
                                                             shuffle=False)]
    other = [item["identity_index"] for item in talkdata.load(grid_dataset, profile="diffused_heads", split="test",
                                                             shuffle=False, seed=1)]
    assert again == [item["identity_index"] for item in items] and other != again


def test_identity_frame_is_any_frame_but_the_target():
    from talkdata.loader.diffused_heads import other_frame

    for t in (0, 1, 37, 74):
        assert sorted(other_frame(draw, t) for draw in range(74)) == [i for i in range(75) if i != t]


def test_diffused_heads_first_identity_mode(grid_dataset):
    items = list(talkdata.load(grid_dataset, profile="diffused_heads", split="test", shuffle=False,
                               identity="first", stride=10))
    assert [item["index"] for item in items] == list(range(1, 75, 10))
    assert all(item["identity_index"] == 0 for item in items)


# -------------------------------------------------------------------------------- vid2vid profile


def test_vid2vid_pairs(grid_dataset, tmp_path):
    clips = shard_clips(grid_dataset)
    items = list(talkdata.load(grid_dataset, profile="vid2vid", split="all", pairs_per_clip=3, pairs="distinct",
                               shuffle=False))
    assert len(items) == 9
    for item in items:
        files = clips[item["__key__"]]
        s, d = item["source_index"], item["driving_index"]
        assert 0 <= s < d < 75
        video = frames_of(files["video.mp4"], tmp_path)
        assert item["source"].shape == item["driving"].shape == (3, 256, 256)
        assert np.array_equal(item["source"], video[s].transpose(2, 0, 1).astype(np.float32) / 255)
        assert np.array_equal(item["driving"], video[d].transpose(2, 0, 1).astype(np.float32) / 255)
        # Hopenet's convention: talkdata's yaw and roll negated (the values here are inside [-99, 96])
        assert np.array_equal(item["driving_pose"], npy(files["pose.npy"])[d, :3] * np.float32([-1, 1, -1]))
    big = next(iter(talkdata.load(grid_dataset, profile="vid2vid", size=512, fields=["video.mp4"])))
    assert big["source"].shape == (3, 512, 512) and 0 <= big["source"].min() and big["source"].max() <= 1
    for bad, message in (({"size": 300}, "option 'size' of profile 'vid2vid' must be one of 256, 512, got 300"),
                         ({"window": 16}, "profile 'vid2vid' does not take a window"),
                         ({"stride": 2}, "profile 'vid2vid' does not take a stride")):
        with pytest.raises(UserError) as err:
            talkdata.load(grid_dataset, profile="vid2vid", **bad)
        assert message in str(err.value) and "\n" not in str(err.value), bad


# --------------------------------------------------------------------------------- facial profile


def test_facial_targets_are_per_clip_z_scored_pitch_yaw_roll_and_blink(ds_grid):
    clips = shard_clips(ds_grid)
    items = list(talkdata.load(ds_grid, profile="facial", split="all", fps=None, whole_clips=True, smooth=False,
                               shuffle=False))
    assert len(items) == 3
    for item in items:
        pose = npy(clips[item["__key__"]]["pose.npy"]).astype(np.float64)
        pitch_yaw_roll = pose[:, [1, 0, 2]] * [-1, 1, 1]  # FACIAL's pitch is > 0 looking down
        assert item["pose"].shape == (75, 3)
        assert np.allclose(item["pose"].mean(0), 0, atol=1e-4) and np.allclose(item["pose"].std(0), 1, atol=1e-3)
        assert np.allclose(item["pose_mean"], pitch_yaw_roll.mean(0), atol=1e-4)
        assert np.allclose(item["pose"] * item["pose_std"] + item["pose_mean"], pitch_yaw_roll, atol=1e-3)
        assert np.array_equal(item["blink"], npy(clips[item["__key__"]]["blink.npy"]))
        assert item["target"].shape == (75, 7) and item["target_mean"].shape == item["target_std"].shape == (6,)
    # FACIAL's 128-frame sequences do not fit in a 3 s GRID clip (90 frames at 30 fps): load() says so
    with pytest.raises(UserError, match=r"window=128: no clip of split train\+val\+test .* the longest has 75 frames"):
        talkdata.load(ds_grid, profile="facial", split="all")


def test_facial_without_deepspeech_says_how_to_get_it(grid_dataset):
    for call in (lambda: talkdata.load(grid_dataset, profile="facial"),
                 lambda: talkdata.load(grid_dataset, fields=["deepspeech.npy"])):
        with pytest.raises(UserError) as err:
            call()
        assert "audio.deepspeech_model" in str(err.value) and "\n" not in str(err.value)
    items = list(talkdata.load(grid_dataset, profile="facial", features="mfcc", window=32, split="all"))
    assert items and items[0]["audio"].shape == (32, 16, 52)


def test_a_sample_missing_a_field_is_a_clear_error():
    sample = {"__key__": "s1/x", "json": json.dumps({"frames": 3, "fps": 25.0}).encode()}
    with pytest.raises(UserError, match=r"s1/x .* no deepspeech.npy: .*deepspeech_model"):
        decode_sample(sample, {"deepspeech.npy"}, "somewhere")


# ------------------------------------------------------------------------ splitting and workers


@pytest.mark.parametrize("shards, consumers", [(3, 2), (3, 3), (7, 4), (1, 2), (3, 4), (2, 5)])
def test_epoch_plans_partition_the_samples(shards, consumers):
    listing = [Shard(f"s{i}.tar", 2 + i, sum(2 + j for j in range(i))) for i in range(shards)]
    seen = Counter()
    for index in range(consumers):
        plan = plan_epoch(listing, Consumer(index, consumers), seed=3, epoch=1, shuffle=True)
        if shards >= consumers:
            assert plan.keep_count == 1  # shard-level: each shard opened by one consumer
        for shard in plan.shards:
            for i in range(shard.samples):
                if (shard.offset + i) % plan.keep_count == plan.keep_index:
                    seen[(shard.url, i)] += 1
    assert sorted(seen) == sorted((s.url, i) for s in listing for i in range(s.samples))
    assert set(seen.values()) == {1}


def loader_ids(dataset, workers: int, batch_size: int = 2) -> list[tuple[str, int]]:
    from torch.utils.data import DataLoader

    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        out += list(zip(batch["__key__"], batch["start"].tolist()))
    return out


def test_dataloader_workers_read_different_shards_without_loss_or_duplicates(ds_grid):
    counts = frame_counts(ds_grid)
    expected = sorted((key, s) for key, t in counts.items() for s in range(0, t - 16 + 1, 16))
    dataset = talkdata.load(ds_grid, fields=["mfcc.npy"], split="all")  # 3 shards, one per split
    assert len(dataset.shards) == 3
    two = loader_ids(dataset, workers=2)
    assert sorted(two) == expected and len(set(two)) == len(two)
    assert sorted(loader_ids(dataset, workers=0)) == expected


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_dataloader_workers_split_samples_when_there_are_fewer_shards(crema_dataset):
    counts = frame_counts(crema_dataset)
    assert len(counts) == 4
    expected = sorted((key, s) for key, t in counts.items() for s in range(0, t - 8 + 1, 8))
    dataset = talkdata.load(crema_dataset, fields=["pca.npy"], window=8)
    assert len(dataset.shards) == 1
    for workers in (2, 3):
        got = loader_ids(dataset, workers=workers)
        assert sorted(got) == expected and len(set(got)) == len(got)


def test_ranks_split_the_epoch(crema_dataset, monkeypatch):
    everything = sorted(ids(talkdata.load(crema_dataset, fields=["blink.npy"], window=8)))
    parts = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        parts.append(ids(talkdata.load(crema_dataset, fields=["blink.npy"], window=8)))
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == everything


def test_order_is_seeded(crema_dataset):
    def order(**kwargs):
        return ids(talkdata.load(crema_dataset, fields=["pca.npy"], window=8, **kwargs))

    first = order(seed=0)
    assert first == order(seed=0) and first != order(seed=1)
    assert sorted(first) == sorted(order(seed=1))
    ordered = order(shuffle=False)
    assert ordered == sorted(ordered)  # tar order: keys sorted, windows in time order
    dataset = talkdata.load(crema_dataset, fields=["pca.npy"], window=8)
    dataset.set_epoch(1)
    assert ids(dataset) != first and sorted(ids(dataset)) == sorted(first)
    # the same windows whatever the number of workers
    assert sorted(loader_ids(talkdata.load(crema_dataset, fields=["pca.npy"], window=8), 2)) == sorted(first)


def test_set_epoch_reaches_persistent_workers(crema_dataset):
    from torch.utils.data import DataLoader

    def epoch_ids(loader) -> list[tuple[str, int]]:
        return [pair for batch in loader for pair in zip(batch["__key__"], batch["start"].tolist())]

    dataset = talkdata.load(crema_dataset, fields=["pca.npy"], window=8)
    persistent = DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        seen.append(epoch_ids(persistent))
        fresh = talkdata.load(crema_dataset, fields=["pca.npy"], window=8)
        fresh.set_epoch(epoch)
        assert seen[-1] == epoch_ids(DataLoader(fresh, batch_size=2, num_workers=2)), epoch
    assert seen[0] != seen[1] != seen[2] and sorted(seen[0]) == sorted(seen[2])


def test_resampled_stream_is_endless_and_seeded(grid_dataset):
    def take(seed):
        dataset = talkdata.load(grid_dataset, fields=["blink.npy"], resampled=True, seed=seed, split="all")
        return ids(itertools.islice(iter(dataset), 40))

    drawn = take(0)
    assert len(drawn) == 40  # more than the 12 windows of one pass
    assert set(drawn) <= {(k, s) for k in frame_counts(grid_dataset) for s in (0, 16, 32, 48)}
    assert drawn == take(0) and drawn != take(1)


# ------------------------------------------------------------------------------- sources, no torch


def test_fsspec_url_source_gives_the_same_items(grid_dataset):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in grid_dataset.rglob("*"):
        relative = path.relative_to(grid_dataset).as_posix()
        if path.is_file() and not relative.startswith(".work"):
            with memory.open(f"/talkdata-test/grid/{relative}", "wb") as handle:
                handle.write(path.read_bytes())
    local = list(talkdata.load(grid_dataset, fields=["pca.npy", "audio.wav"], split="all", seed=5))
    for url in ("memory://talkdata-test/grid", grid_dataset.as_uri()):
        remote = list(talkdata.load(url, fields=["pca.npy", "audio.wav"], split="all", seed=5))
        assert ids(remote) == ids(local)
        assert all(np.array_equal(a["audio"], b["audio"]) for a, b in zip(remote, local))
    with pytest.raises(UserError, match="not a talkdata dataset"):
        talkdata.load("memory://talkdata-test/nothing-here")


def test_numpy_iteration_without_torch(grid_dataset):
    script = f"""
import sys
sys.modules["torch"] = None  # as if torch were not installed
import talkdata
assert "talkdata.loader" not in sys.modules  # import talkdata stays light
import numpy as np
items = list(talkdata.load({str(grid_dataset)!r}, profile="atvg", split="all"))
assert len(items) == 12 and isinstance(items[0]["frames"], np.ndarray)
assert items[0]["mfcc"].shape == (16, 28, 12)
raw = list(talkdata.load({str(grid_dataset)!r}, fields=["video.mp4", "audio.wav"]))
assert raw[0]["video"].shape == (16, 256, 256, 3)
try:
    import torch
except ImportError:
    print("ok without torch")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ok without torch" in result.stdout


# ----------------------------------------------------------------------------------------- errors


def test_bad_input_is_one_clear_line(grid_dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = [
        (lambda: talkdata.load(grid_dataset, profile="wav2lip"), "unknown profile 'wav2lip'; known profiles: atvg"),
        (lambda: talkdata.load(tmp_path / "empty"), "is not a talkdata dataset"),
        (lambda: talkdata.load(tmp_path / "missing"), "dataset folder not found"),
        (lambda: talkdata.load(tmp_path / "file.txt"), "not a dataset folder"),
        (lambda: talkdata.load(grid_dataset, split="dev"), "unknown split 'dev'"),
        (lambda: talkdata.load(grid_dataset, profile="atvg", colour=True), "has no option 'colour'"),
        (lambda: talkdata.load(grid_dataset, fields=["mfcc"]), "did you mean mfcc.npy"),
        (lambda: talkdata.load(grid_dataset, window=0), "window must be a positive integer"),
        (lambda: talkdata.load(grid_dataset, profile="diffused_heads", window=16), "does not take a window"),
        (lambda: talkdata.load(grid_dataset, profile="sda", identity="last"),
         "option 'identity' of profile 'sda' must be one of first, random"),
    ]
    for call, message in cases:
        with pytest.raises(UserError) as err:
            call()
        assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_shard_is_a_clear_error(grid_dataset, tmp_path):
    import shutil

    copy = tmp_path / "grid"
    shutil.copytree(grid_dataset, copy, ignore=shutil.ignore_patterns(".work"))
    next((copy / "shards" / "val").glob("*.tar")).unlink()
    dataset = talkdata.load(copy, fields=["pca.npy"], split="all", shuffle=False)
    with pytest.raises(UserError, match=r"shard .*grid-val-000000.tar listed in dataset.json is missing"):
        list(dataset)


def test_crema_val_split_is_empty_and_says_so(crema_dataset):
    with pytest.raises(UserError, match="split val of .* has no samples"):
        talkdata.load(crema_dataset, split="val")
