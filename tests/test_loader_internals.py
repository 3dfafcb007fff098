"""The loader's fast paths give exactly what the plain ways give: the tar reader (vs ``tarfile`` and
webdataset's tar iteration), partial video decoding (vs decoding every frame), ``.npy`` decoding (vs
``np.lib.format`` and ``np.load``), vectorised resampling and MFCC windows (vs per-channel
``np.interp`` and a loop), and ``collate``
(vs torch's ``default_collate``, in the main process and in a worker). Speed is measured by
``benchmarks/loader.py``, never here."""

from __future__ import annotations

import io
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

import talkdata
from talkdata.errors import UserError
from talkdata.loader import collate
from talkdata.loader.collate import BY_VALUE_BYTES, is_sliding, sliding_rows, tensor_by_value_class
from talkdata.loader.fast import npy as fast_npy
from talkdata.loader.fast.interp import frame_grid, interp_rows
from talkdata.loader.fast.npy import decode_npy
from talkdata.loader.fast.tar import byte_sum, tar_members
from talkdata.loader.facial import zscore
from talkdata.loader.members import decode_video
from talkdata.loader.samples import member_filter, read_samples
from talkdata.loader.windows import (atvg_mfcc_windows, facial_window_view, resample_frames,
                                     sliding_view)
from talkdata.shards import read_shard


def all_frames(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def shard_paths(dataset: Path) -> list[Path]:
    return sorted((dataset / "shards").rglob("*.tar"))


# ---------------------------------------------------------------------------------------- tar


def webdataset_samples(path: Path, fields: set[str]) -> list[dict]:
    from webdataset import tariterators

    with open(path, "rb") as stream:
        members = tariterators.tar_file_expander([{"url": str(path), "stream": stream}],
                                                 select_files=member_filter(fields))
        return list(tariterators.group_by_keys(members))


def ours(stream, url: str, fields: set[str]) -> list[dict]:
    return list(read_samples([{"url": url, "stream": stream}], fields))


class Unseekable(io.RawIOBase):
    """A stream that cannot seek and returns short reads (like a socket)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 1000) if size > 0 else size)


def test_tar_reader_reads_what_webdataset_reads(crema_dataset):
    (path,) = shard_paths(crema_dataset)  # 4 samples in one shard
    for fields in ({"json", "pca.npy", "mfcc.npy"}, {"json", "video.mp4", "audio.wav", "lmk_src.npy"},
                   {"json", "deepspeech.npy"}):
        expected = webdataset_samples(path, fields)
        assert len(expected) == 4
        with open(path, "rb") as stream:
            assert ours(stream, str(path), fields) == expected
        assert ours(Unseekable(path.read_bytes()), str(path), fields) == expected


def test_tar_reader_long_names_pax_and_damage(tmp_path):
    def archive(fmt, names):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = len(name.encode())
                tar.addfile(info, io.BytesIO(name.encode()))
        return buffer.getvalue()

    long_key = "speaker/" + "x" * 150
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        names = [f"s1/{'y' * 80}/clip.json", "s1/clip2.json", "s1/clip2.pca.npy", "s1/clip2.lmk.npy"]
        if fmt != tarfile.USTAR_FORMAT:
            names = [f"{long_key}.json", f"{long_key}.pca.npy", "dir/é.json"] + names
        data = archive(fmt, names)
        for stream in (io.BytesIO(data), Unseekable(data)):
            members = list(tar_members(stream, "t.tar", lambda name: True))
            assert members == [(name, name.encode()) for name in names]
        samples = ours(io.BytesIO(data), "t.tar", {"json", "pca.npy"})
        assert [s["__key__"] for s in samples] == [n.rsplit(".json", 1)[0] for n in names if n.endswith(".json")]
        assert all(set(s) <= {"__key__", "__url__", "json", "pca.npy"} for s in samples)
    data = bytearray(archive(tarfile.GNU_FORMAT, ["s1/a.json", "s1/b.json"]))
    data[1024 + 130] ^= 0x01  # the size field of the second header
    with pytest.raises(UserError, match=r"shard t.tar is damaged \(bad tar header checksum at byte 1024\)"):
        list(tar_members(io.BytesIO(bytes(data)), "t.tar", lambda name: True))
    for cut in (515, 1100):  # inside the first member's data; inside the second header
        for stream in (io.BytesIO(bytes(data[:cut])), Unseekable(bytes(data[:cut]))):
            with pytest.raises(UserError, match="shard t.tar is truncated"):
                list(tar_members(stream, "t.tar", lambda name: True))


def tarfile_members(path: Path, keep) -> list[tuple[str, bytes]]:
    """The reference reader: the regular members of a tar as ``tarfile`` reads them."""
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile() and keep(m.name)]


def test_tar_reader_reads_what_tarfile_reads_on_real_shards(grid_dataset, crema_dataset):
    paths = shard_paths(grid_dataset) + shard_paths(crema_dataset)
    assert len(paths) >= 4
    for path in paths:
        for keep in (lambda name: True, member_filter({"json", "pca.npy"}), member_filter({"video.mp4"})):
            expected = tarfile_members(path, keep)
            assert expected
            with open(path, "rb") as stream:
                assert list(tar_members(stream, str(path), keep)) == expected


def test_header_checksum_sum_is_exact():
    rng = np.random.default_rng(0)
    headers = [bytes(512), b"\xff" * 512, b"\xff" * 256 + bytes(256), bytes(256) + b"\xff" * 256]
    headers += [rng.integers(0, 256, 512, dtype=np.uint8).tobytes() for _ in range(500)]
    headers += [rng.integers(200, 256, 512, dtype=np.uint8).tobytes() for _ in range(100)]  # sums past 65521
    for header in headers:
        assert byte_sum(header) == sum(header)


# -------------------------------------------------------------------------------------- video


def test_partial_decoding_gives_the_frames_of_a_full_decode(grid_dataset, crema_dataset):
    rng = np.random.default_rng(0)
    clips = 0
    for dataset in (grid_dataset, crema_dataset):  # 25 fps GRID crops; CREMA-D 29.97 -> 25 fps
        for path in shard_paths(dataset):
            for files in read_shard(path).values():
                clips += 1
                frames = all_frames(files["video.mp4"])
                assert np.array_equal(decode_video(files["video.mp4"]), frames)
                picks = [[0], [len(frames) - 1], [5, 5, 2], list(range(len(frames)))]
                picks += [list(rng.integers(0, len(frames), size=n)) for n in (1, 2, 2, 3, 7)]
                for indices in picks:
                    assert np.array_equal(decode_video(files["video.mp4"], indices), frames[indices]), indices
                with pytest.raises(ValueError, match="fewer frames"):
                    decode_video(files["video.mp4"], [len(frames)])
    assert clips == 3 + 4  # every GRID and CREMA-D sample


def test_partial_decoding_of_a_variable_frame_rate_stream(tmp_path):
    """Timestamps off the frame grid: frames are numbered in display order, as a full decode does."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"bf": "3"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for index in range(30):
            image = np.full((64, 64, 3), index * 8, dtype=np.uint8)
            image[index % 60 : index % 60 + 4] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 40 if index % 3 else 55  # not a constant frame rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = buffer.getvalue()
    frames = all_frames(data)
    assert len(frames) == 30
    for indices in ([3, 17], [29], [0, 28, 14]):
        assert np.array_equal(decode_video(data, indices), frames[indices])


# ----------------------------------------------------------------------------------- arrays


def test_npy_decoding_matches_np_load():
    arrays = [np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.arange(5, dtype=np.int64), np.zeros((0, 6), np.float32),
              np.float64(2.5) * np.ones(()), np.ones((3, 2), dtype=">f8"), np.asfortranarray(np.ones((3, 4))),
              np.array(["a", "bc"]), np.array([True, False]), np.arange(6, dtype=np.uint8).reshape(2, 3)]
    for array in arrays:
        buffer = io.BytesIO()
        np.save(buffer, array)
        decoded = decode_npy(buffer.getvalue())
        assert decoded.dtype == array.dtype and decoded.shape == array.shape and np.array_equal(decoded, array)
        assert decoded.flags.writeable


def test_npy_parser_matches_np_lib_format_on_real_shards(grid_dataset, crema_dataset, monkeypatch):
    members = [data for dataset in (grid_dataset, crema_dataset) for path in shard_paths(dataset)
               for files in read_shard(path).values() for name, data in files.items() if name.endswith(".npy")]
    assert len(members) > 20
    expected = [np.lib.format.read_array(io.BytesIO(data), allow_pickle=False) for data in members]

    def no_np_load(*args, **kwargs):
        raise AssertionError("np.load was called: the header parser fell back on a member talkdata wrote")

    monkeypatch.setattr(fast_npy.np, "load", no_np_load)  # every member the build writes takes the fast path
    for data, reference in zip(members, expected):
        decoded = decode_npy(data)
        assert decoded.dtype == reference.dtype and decoded.shape == reference.shape
        assert np.array_equal(decoded, reference) and decoded.flags.writeable


def test_interp_clone_is_np_interp_on_real_shard_values(grid_dataset):
    rows = [files for path in shard_paths(grid_dataset) for files in read_shard(path).values()]
    assert rows
    for files in rows[:4]:
        columns = [np.load(io.BytesIO(files[name])).astype(np.float64) for name in ("pose.npy", "blink.npy", "lmk.npy")]
        count = len(columns[0])
        values = np.concatenate([c.reshape(count, -1) for c in columns], axis=1)  # (T, 6 + 1 + 136)
        for fps_in, fps_out in ((25.0, 30.0), (25.0, 60.0), (50.0, 29.97), (25.0, 25.0 * 2 / 3)):
            n_out = int(round(len(values) / fps_in * fps_out))
            x, xp = np.arange(n_out) / fps_out, np.arange(len(values)) / fps_in
            reference = np.stack([np.interp(x, xp, values[:, c]) for c in range(values.shape[1])], axis=1)
            ours_ = interp_rows(frame_grid(len(values), fps_in, n_out, fps_out), values)
            assert ours_.shape == reference.shape and np.array_equal(ours_, reference)


def per_channel_interp(values: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    n_out = int(round(len(values) / fps_in * fps_out))
    flat = values.reshape(len(values), -1).astype(np.float64)
    out = np.stack([np.interp(np.arange(n_out) / fps_out, np.arange(len(values)) / fps_in, flat[:, c])
                    for c in range(flat.shape[1])], axis=1)
    return out.reshape((n_out,) + values.shape[1:]).astype(values.dtype if values.dtype.kind == "f" else np.float32)


def test_resampling_is_per_channel_np_interp_bit_for_bit():
    rng = np.random.default_rng(1)
    for frames in (1, 2, 47, 75):
        for shape in ((), (3,), (4, 13)):
            for fps_in, fps_out in ((25, 30), (30, 25), (29.97, 25), (25, 7)):
                for dtype in (np.float32, np.float64, np.int16):
                    values = (rng.normal(size=(frames,) + shape) * 100).astype(dtype)
                    ours_ = resample_frames(values, fps_in, fps_out)
                    theirs = per_channel_interp(values, fps_in, fps_out)
                    assert ours_.dtype == theirs.dtype and np.array_equal(ours_, theirs)
    special = rng.normal(size=(75, 4))
    special[10, 0], special[20:22, 1], special[30, 2] = np.nan, np.inf, -np.inf
    assert np.array_equal(resample_frames(special, 25, 30), per_channel_interp(special, 25, 30), equal_nan=True)


def test_zscore_is_numpys_mean_and_std_bit_for_bit():
    rng = np.random.default_rng(1)
    for count in (1, 2, 75, 128, 301):
        values = rng.normal(size=(count, 3)) * [0.1, 20.0, 3.0] + [5.0, -40.0, 0.0]
        values[:, 2] = 7.25 if count % 2 else values[:, 2]  # a constant column is only centred
        z, mean, std = zscore(values)
        safe = np.where(values.std(axis=0) > 1e-8, values.std(axis=0), 1.0)
        assert np.array_equal(mean, values.mean(axis=0).astype(np.float32))
        assert np.array_equal(std, values.std(axis=0).astype(np.float32))
        assert np.array_equal(z, ((values - values.mean(axis=0)) / safe).astype(np.float32))


def test_window_helpers_match_the_plain_versions():
    rng = np.random.default_rng(2)
    mfcc = rng.normal(size=(75, 4, 13)).astype(np.float32)
    flat = mfcc.reshape(300, 13)
    for targets in (list(range(4, 20)), list(range(56, 72)), [3, 10, 71], [5]):
        for drop in (True, False):
            expected = np.stack([flat[(t - 3) * 4 : (t + 4) * 4, 1 if drop else 0 :] for t in targets])
            got = atvg_mfcc_windows(mfcc, targets, 3, 3, drop_c0=drop)
            assert got.flags.c_contiguous and got.dtype == np.float32 and np.array_equal(got, expected)
    with pytest.raises(ValueError, match="frame 72 needs MFCC rows 276..303"):
        atvg_mfcc_windows(mfcc, [4, 72])
    for frames in (0, 5, 90):
        features = rng.normal(size=(frames, 29)).astype(np.float32)
        padded = np.concatenate((np.zeros((8, 29), np.float32), features, np.zeros((8, 29), np.float32)))
        plain = np.array([padded[j : j + 16] for j in range(len(padded) - 16)]).reshape(-1, 16, 29)
        assert np.array_equal(facial_window_view(features), plain)


# ------------------------------------------------------------------------------------ collate


def assert_same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("kwargs", [{}, {"profile": "atvg"}, {"profile": "sda"}, {"profile": "diffused_heads", "stride": 25},
                                    {"profile": "facial", "features": "mfcc", "window": 32}, {"profile": "vid2vid"}])
def test_collate_makes_the_default_batches(grid_dataset, kwargs):
    items = list(talkdata.load(grid_dataset, split="train", shuffle=False, **kwargs))[:3]
    assert len(items) >= 1
    assert_same_batch(collate(items), default_collate(items))


def test_collate_in_a_worker_sends_small_tensors_by_value_and_frames_in_shared_memory(grid_dataset):
    dataset = talkdata.load(grid_dataset, profile="atvg", split="all", shuffle=False)
    ours_ = list(DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=collate))
    theirs = list(DataLoader(dataset, batch_size=4, num_workers=0))
    assert len(ours_) == len(theirs) == 3
    for a, b in zip(ours_, theirs):
        assert_same_batch(a, b)
        for key in ("mfcc", "target_pca", "start", "frames"):
            assert type(a[key]) is torch.Tensor, key  # plain tensors on arrival
        assert a["frames"].nbytes >= BY_VALUE_BYTES and a["frames"].is_shared()
        assert a["mfcc"].nbytes < BY_VALUE_BYTES and not a["mfcc"].is_shared()


def scaled_in_the_worker(items):
    """A user's collate_fn that works on talkdata's batch inside the worker."""
    batch = collate(items)
    assert isinstance(batch["mfcc"], torch.Tensor) and isinstance(batch["start"], torch.Tensor)
    return {"mfcc": batch["mfcc"] * 2, "start": batch["start"].float() + 0.5, "by_value": type(batch["mfcc"]).__name__}


def test_collate_batches_work_as_tensors_inside_the_worker(grid_dataset):
    dataset = talkdata.load(grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"], split="all", shuffle=False)
    ours_ = list(DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=scaled_in_the_worker))
    theirs = list(DataLoader(dataset, batch_size=4, num_workers=0))
    assert len(ours_) == len(theirs) == 3
    for a, b in zip(ours_, theirs):
        assert a["by_value"] == "TensorByValue"
        assert type(a["mfcc"]) is torch.Tensor and torch.equal(a["mfcc"], b["mfcc"] * 2)
        assert torch.equal(a["start"], b["start"].float() + 0.5)


def switch_interval_of_the_worker(items):
    import sys

    return sys.getswitchinterval()


def test_dataloader_workers_hand_batches_over_promptly(grid_dataset):
    """Workers shorten the GIL switch interval (batches leave through threads that wait for the GIL);
    the main process keeps its own."""
    import sys

    from talkdata.loader.api import WORKER_SWITCH_INTERVAL

    before = sys.getswitchinterval()
    dataset = talkdata.load(grid_dataset, fields=["pca.npy"], split="all", shuffle=False)
    intervals = list(DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=switch_interval_of_the_worker))
    assert intervals and all(value == pytest.approx(WORKER_SWITCH_INTERVAL) for value in intervals)
    assert sys.getswitchinterval() == before
    list(dataset)  # iterating in the main process leaves it alone
    assert sys.getswitchinterval() == before


def test_sliding_windows_are_found_bit_for_bit_and_rebuilt_from_their_rows():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(3, 20, 5)).astype(np.float32)
    rows[0, 4, 1], rows[1, 7, 0], rows[2, 9, 3] = -0.0, np.nan, np.inf
    batch = np.ascontiguousarray(sliding_view(rows, 6, axis=1))  # (3, 15, 6, 5)
    assert batch.shape == (3, 15, 6, 5) and np.array_equal(batch[:, 4, 2], rows[:, 6], equal_nan=True)
    assert is_sliding(batch)
    assert sliding_rows(batch).tobytes() == rows.tobytes()
    for change in ((1, 3, 2, 4), (2, 14, 4, 0), (0, 1, 0, 0)):  # a row seen by 2+ windows, changed in one
        broken = batch.copy()
        broken[change] = np.nextafter(broken[change], np.float32(np.inf))
        assert not is_sliding(broken) and sliding_rows(broken) is None
    for corner in ((0, 0, 0, 3), (2, 14, 5, 1)):  # the first and the last row are in one window only
        changed = batch.copy()
        changed[corner] = 1.5
        assert np.array_equal(sliding_view(sliding_rows(changed), 6, axis=1), changed, equal_nan=True)
    signed = batch.copy()
    signed[0, 4, 0, 1] = 0.0  # +0.0 where its neighbours hold -0.0: equal as numbers, not as bits
    assert not is_sliding(signed)
    assert not is_sliding(np.zeros((2, 1, 6, 5))) and not is_sliding(np.zeros((2, 6, 1)))
    assert is_sliding(np.arange(12).reshape(1, 12)[:, np.arange(8)[:, None] + np.arange(5)])  # (1, 8, 5) of ints


def test_sliding_window_tensors_travel_as_their_rows():
    import pickle

    by_value = tensor_by_value_class()
    rows = np.random.default_rng(3).normal(size=(8, 47, 52)).astype(np.float32)
    windows = torch.from_numpy(np.ascontiguousarray(sliding_view(rows, 16, axis=1)))
    sent = pickle.dumps(windows.as_subclass(by_value))
    assert len(sent) < windows.nbytes / 10  # the 47 rows, not the 32 x 16
    received = pickle.loads(sent)
    assert type(received) is torch.Tensor and received.is_contiguous() and torch.equal(received, windows)
    other = torch.from_numpy(np.random.default_rng(4).normal(size=(8, 32, 16, 52)).astype(np.float32))
    sent = pickle.dumps(other.as_subclass(by_value))
    assert len(sent) > other.nbytes and torch.equal(pickle.loads(sent), other)


def test_facial_batches_leave_a_worker_as_rows_and_arrive_whole(grid_dataset):
    dataset = talkdata.load(grid_dataset, profile="facial", features="mfcc", window=32, split="all", shuffle=False)
    ours_ = list(DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=collate))
    theirs = list(DataLoader(dataset, batch_size=4, num_workers=0))
    assert len(ours_) == len(theirs) >= 2
    for a, b in zip(ours_, theirs):
        assert_same_batch(a, b)
        assert a["audio"].nbytes >= BY_VALUE_BYTES or len(a["__key__"]) < 4
        assert type(a["audio"]) is torch.Tensor and a["audio"].is_contiguous() and not a["audio"].is_shared()
