"""A corpus of bad and awkward inputs, made from the real samples, through ``talkdata build``.

Broken clips must each become one row of ``rejects.parquet`` with the right reason code while every
good clip becomes a sample; awkward-but-valid clips (wrong extension, short audio, variable frame
rate, two faces, 4K, rotation metadata, non-ASCII paths) must come out as correct samples. A decoder
that crashes or hangs on one file is isolated in a child process: the test makes the child crash
(SIGSEGV) and hang (SIGSTOP) while it holds a given file, for real, and the build goes on.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

import media_factory as mf
from talkdata.media.encode import decode_wav
from talkdata.shards import read_shard

DATA = Path(__file__).parent / "data"
FPS = 25.0


def _mp4(path: Path, frames, audio, frame_ms=lambda i: 40, options: dict | None = None) -> Path:
    """H.264 + AAC mp4 with frame ``i`` lasting ``frame_ms(i)`` milliseconds."""
    container = av.open(str(path), mode="w", options=options or {})
    stream = container.add_stream("libx264", rate=25, options={"crf": "20", "preset": "ultrafast"})
    stream.pix_fmt = "yuv420p"
    stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
    stream.codec_context.time_base = Fraction(1, 1000)
    astream = container.add_stream("aac", rate=16000, layout="mono")
    pts = 0
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        pts += frame_ms(i)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    mf._encode_audio(container, astream, audio, 16000)
    container.close()
    return path


def _faststart_mp4(path: Path, frames, audio) -> Path:
    """An mp4 with its index (moov) before the media data, as web videos are written."""
    return _mp4(path, frames, audio, options={"movflags": "+faststart"})


def _vfr_mp4(path: Path, frames, audio) -> Path:
    """Variable frame rate: frame durations alternate between 20 ms and 60 ms (mean 40 ms)."""
    return _mp4(path, frames, audio, frame_ms=lambda i: 20 if i % 2 == 0 else 60)


def _set_display_rotation_90(path: Path) -> None:
    """Write a phone's portrait display matrix (rotate 90 degrees clockwise) into the mp4's tkhd box."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    version = data[box + 4]
    matrix = box + 8 + (20 if version == 0 else 32) + 8 + 8
    values = list(struct.unpack(">9i", data[matrix : matrix + 36]))
    values[0], values[1], values[3], values[4] = 0, 65536, -65536, 0
    data[matrix : matrix + 36] = struct.pack(">9i", *values)
    path.write_bytes(bytes(data))


BROKEN = {  # speaker folder -> reason code
    "zero_bytes": "unreadable", "not_video": "unreadable", "header_only": "unreadable",
    "cut_in_middle": "truncated", "no_audio": "no_audio_stream", "no_video": "no_video_stream",
    "one_frame": "too_short", "no_face": "no_face", "face_too_few": "face_missing",
}
AWKWARD = ("wrong_extension", "short_audio", "variable_rate", "two_faces", "uhd_4k", "phone_rotated",
           "Ünïcode speaker")


def make_corpus(root: Path) -> None:
    """One speaker folder per case, each holding one clip, all made from GRID s1/bbaf2n."""
    frames, audio = mf.grid_frames(), mf.grid_audio()

    def path(speaker: str, name: str = "clip.mp4") -> Path:
        (root / speaker).mkdir(parents=True, exist_ok=True)
        return root / speaker / name

    path("zero_bytes").write_bytes(b"")
    path("not_video").write_bytes(b"this is a text file, not a video\n" * 50)
    mp4 = _faststart_mp4(root / "whole.mp4", frames, audio).read_bytes()
    (root / "whole.mp4").unlink()
    path("header_only").write_bytes(mp4[:1500])
    path("cut_in_middle").write_bytes(mp4[: len(mp4) // 2])
    mf.write_video(path("no_audio"), frames)
    mf.write_wav(path("no_video", "clip.mkv"), audio)  # a video extension holding audio only
    os.replace(path("no_video", "clip.mkv"), path("no_video", "clip.mkv"))
    mf.write_video(path("one_frame"), frames[:1], audio=audio[:640])
    blank = [np.full_like(frames[0], 128) for _ in frames]
    mf.write_video(path("no_face"), blank, audio=audio)
    mf.write_video(path("face_too_few"), [f if t < 10 else blank[t] for t, f in enumerate(frames)], audio=audio)

    path("wrong_extension").write_bytes(mf.GRID_S1.read_bytes())  # MPEG-PS named .mp4
    mf.write_video(path("short_audio"), frames, audio=audio[: len(audio) // 2])
    _vfr_mp4(path("variable_rate"), frames, audio)
    mf.write_video(path("two_faces"), [mf.place_on_canvas((720, 360), [(f, 1.0, (0, 36)), (f, 0.6, (450, 100))])
                                       for f in frames], audio=audio)
    mf.write_video(path("uhd_4k"), [cv2.resize(f, (3840, 2160)) for f in frames[:25]], audio=audio[:16000])
    mf.write_video(path("phone_rotated"), [np.ascontiguousarray(np.rot90(f)) for f in frames], audio=audio)
    _set_display_rotation_90(path("phone_rotated"))
    mf.write_video(path("Ünïcode speaker", "clip with spaces.mp4"), frames, audio=audio)


def run_build(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "talkdata.cli", "build", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus built once per test run (never modified); the build's output and peak memory are kept
    beside it in ``build.json``."""
    from conftest import shared_build

    def make(folder: Path) -> None:
        make_corpus(folder / "corpus")
        built = run_build("videos", "--source", str(folder / "corpus"), "--out", str(folder / "out"))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        (folder / "build.json").write_text(json.dumps({"args": built.args, "returncode": built.returncode,
                                                       "stdout": built.stdout, "stderr": built.stderr,
                                                       "peak_rss_mb": peak}))

    root = shared_build(tmp_path_factory, "bad-input", make)
    kept = json.loads((root / "build.json").read_text())
    result = subprocess.CompletedProcess(kept["args"], kept["returncode"], kept["stdout"], kept["stderr"])
    peak_rss_mb, out, root = kept["peak_rss_mb"], root / "out", root / "corpus"
    assert result.returncode == 0, result.stderr
    index = {row["speaker"]: row for row in pq.read_table(out / "index.parquet").to_pylist()}
    rejects = {row["key"].split("/")[0]: row for row in pq.read_table(out / "rejects.parquet").to_pylist()}
    samples = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        samples.update(read_shard(shard))
    return root, out, result, index, rejects, samples, peak_rss_mb


def npy(sample: dict, name: str) -> np.ndarray:
    return np.load(io.BytesIO(sample[name]))


def test_broken_inputs_are_rejected_with_their_reason(corpus):
    root, out, result, index, rejects, _, _ = corpus
    assert {k: r["reason"] for k, r in rejects.items()} == BROKEN
    for case, row in rejects.items():
        assert row["message"] and "\n" not in row["message"], case
        assert str(root) not in row["message"] and "/tmp" not in row["message"], row["message"]  # versioned: no paths
    # the audio is decoded first, and is cut short as much as the video
    assert "index lists 2.98 s of audio but the file holds only" in rejects["cut_in_middle"]["message"]
    # the build summary names every reason and where the list is
    for reason in set(BROKEN.values()):
        assert reason in result.stdout
    assert "clips seen: 16" in result.stdout and str(out / "rejects.parquet") in result.stdout


def test_awkward_inputs_are_correct_samples(corpus, grid_dataset):
    _, _, _, index, _, samples, peak_rss_mb = corpus
    assert set(index) == set(AWKWARD)
    by_speaker = {json.loads(s["json"])["speaker"]: s for s in samples.values()}
    grid_s1 = next(s for shard in sorted((grid_dataset / "shards").rglob("*.tar"))
                   for key, s in read_shard(shard).items() if key == "s1/bbaf2n")
    grid_lmk = npy(grid_s1, "lmk_src.npy")
    iod = np.linalg.norm(grid_lmk[:, 36] - grid_lmk[:, 45], axis=-1).mean()

    for case in ("wrong_extension", "short_audio", "variable_rate", "phone_rotated", "Ünïcode speaker"):
        sample = by_speaker[case]
        meta = json.loads(sample["json"])
        assert meta["frames"] == 75 and npy(sample, "lmk_src.npy").shape == (75, 68, 2), case
        # the same picture as GRID's own decode: landmarks within a few percent of the inter-ocular distance
        error = np.linalg.norm(npy(sample, "lmk_src.npy") - grid_lmk, axis=-1).mean() / iod
        assert error < 0.05, (case, error)

    short = json.loads(by_speaker["short_audio"]["json"])
    assert short["audio_padded_s"] == pytest.approx(1.49, abs=0.03)  # flagged in the metadata
    wav, rate = decode_wav(by_speaker["short_audio"]["audio.wav"])
    assert len(wav) == 48000 and not wav[24500:].any() and np.abs(wav[:20000]).max() > 0.1

    rotated = json.loads(by_speaker["phone_rotated"]["json"])
    # the display matrix's angle (ffmpeg's convention: 270 = shown turned 90 degrees clockwise) was applied:
    # upright size, and the landmarks above match the upright GRID picture
    assert rotated["rotation"] == 270 and rotated["source_size"] == [360, 288]
    assert json.loads(by_speaker["wrong_extension"]["json"])["rotation"] == 0

    two = npy(by_speaker["two_faces"], "lmk_src.npy")
    assert two.shape == (75, 68, 2) and two[..., 0].max() < 360  # the larger (left) face, all the way

    uhd = json.loads(by_speaker["uhd_4k"]["json"])
    assert uhd["frames"] == 25
    assert peak_rss_mb < 2048  # the largest process of the build (the worker decoding 4K frames)

    key = next(k for k in samples if json.loads(samples[k]["json"])["speaker"] == "Ünïcode speaker")
    assert key.isascii() and " " not in key
    assert json.loads(samples[key]["json"])["source"]["path"] == "Ünïcode speaker/clip with spaces.mp4"


def _decoder_of(build: subprocess.Popen, name: str) -> int | None:
    """PID of the build's child process that has a file called ``name`` open (the clip's decoder)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != build.pid:
                continue
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd).endswith(name):
                    return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_decoder_crash_and_hang_do_not_stop_the_build(tmp_path):
    """The worker is killed with SIGSEGV while it decodes one clip and frozen (SIGSTOP) while it
    decodes another: the first is rejected as decoder_crash, the second as decode_timeout after
    --clip-timeout seconds, and the clip between them is a sample.

    The timeout is the longest silence the supervisor allows once a worker is ready (a fresh worker's
    imports and model loading are not counted); the good clip's worker is silent between decoding and
    storing, which takes a few seconds on a loaded machine. 10 s leaves room for that; the frozen
    worker waits it out once. The clips to crash and freeze are 720p, so that their decoding lasts
    long enough to be caught; the good clip is GRID's own 360x288, so that its silent stretch stays
    short when other tests load the machine."""
    frames = [cv2.resize(f, (1280, 720)) for f in mf.grid_frames()]
    for speaker in ("a_crash", "b_good", "c_hang"):
        (tmp_path / "src" / speaker).mkdir(parents=True)
        mf.write_video(tmp_path / "src" / speaker / f"{speaker}.mp4", mf.grid_frames() if speaker == "b_good" else frames,
                       audio=mf.grid_audio())
    out = tmp_path / "out"
    build = subprocess.Popen([sys.executable, "-m", "talkdata.cli", "build", "videos", "--source", str(tmp_path / "src"),
                              "--out", str(out), "--no-progress", "--clip-timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signalled = {}
    deadline = time.monotonic() + 600
    while build.poll() is None and time.monotonic() < deadline and len(signalled) < 2:
        for name, sig in (("a_crash.mp4", signal.SIGSEGV), ("c_hang.mp4", signal.SIGSTOP)):
            if name not in signalled:
                pid = _decoder_of(build, name)
                if pid is not None:
                    os.kill(pid, sig)
                    signalled[name] = pid
        time.sleep(0.01)
    stdout, stderr = build.communicate(timeout=600)
    assert set(signalled) == {"a_crash.mp4", "c_hang.mp4"}, "the test did not catch the worker on both clips"
    assert signalled["a_crash.mp4"] != signalled["c_hang.mp4"]  # a fresh worker after the crash
    assert build.returncode == 0, stderr
    rejects = {row["key"]: row for row in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert rejects["a_crash/a_crash"]["reason"] == "decoder_crash"
    assert "SIGSEGV" in rejects["a_crash/a_crash"]["message"]
    assert rejects["c_hang/c_hang"]["reason"] == "decode_timeout"
    assert [row["key"] for row in pq.read_table(out / "index.parquet").to_pylist()] == ["b_good/b_good"]
    assert "decoder_crash 1" in stdout and "decode_timeout 1" in stdout
    for pid in signalled.values():  # no worker left behind (the frozen one was killed)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _versioned_files(out: Path) -> dict[str, bytes]:
    skip = {"build_info.json"}
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".work" not in p.relative_to(out).parts and p.name not in skip}


def test_disk_full_stops_with_one_line_and_resumes(tmp_path, grid_dataset):
    """Writes fail with EFBIG past a 60 KB file-size limit (what a full disk looks like to the
    build): one clear line, exit 2, nothing half-written in the cache; the same command without the
    limit then finishes with the same bytes as an uninterrupted build."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "talkdata.cli", "build", "grid", "--source", str(DATA / "grid"), "--out", str(out),
            "--no-progress"]

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    full = subprocess.run(args, capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size)
    assert full.returncode == 2, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left while writing ") and "resume" in lines[0]
    assert "Traceback" not in full.stderr
    leftovers = [p for p in (out / ".work").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []  # no half-written cache entry
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _versioned_files(out) == _versioned_files(grid_dataset)


def test_the_worker_dies_with_a_killed_build(tmp_path):
    """kill -9 of the build takes its clip worker down too (no orphan writing into the cache later)."""
    frames = [cv2.resize(f, (1280, 720)) for f in mf.grid_frames()]
    (tmp_path / "src" / "a").mkdir(parents=True)
    mf.write_video(tmp_path / "src" / "a" / "long.mp4", frames * 3, audio=np.tile(mf.grid_audio(), 3))
    build = subprocess.Popen([sys.executable, "-m", "talkdata.cli", "build", "videos", "--source", str(tmp_path / "src"),
                              "--out", str(tmp_path / "out"), "--no-progress"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, worker = time.monotonic() + 300, None
    while worker is None and build.poll() is None and time.monotonic() < deadline:
        worker = _decoder_of(build, "long.mp4")
        time.sleep(0.01)
    assert worker is not None, "the test did not catch the worker"
    build.kill()
    build.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break  # dead, waiting to be reaped by init
        time.sleep(0.01)
    alive = Path(f"/proc/{worker}").exists() and Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    assert not alive
    assert not list((tmp_path / "out" / ".work").rglob("status.json"))  # it never finished the clip
