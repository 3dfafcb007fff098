"""Hostile and damaged media, generated from the real samples: every file either decodes or becomes
one reject reason (a ``ClipError``) - never a traceback, a crash, or silently wrong samples.

Covers: 7.1 and 5.1 audio (PyAV 18's ``to_ndarray`` crashed the process on 8-plane frames), a
relative path whose first part holds a colon (ffmpeg read it as a protocol), mp4 audio cut short
(``truncated``, while a complete shorter track is kept and padded), frames too large to decode
(``too_large`` before any frame is decoded), and a batch of cut, zeroed and scrambled copies.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import media_factory as mf
from talkdata.errors import REASONS, ClipError
from talkdata.media.decode import MAX_PIXELS, VideoStats, align_audio, decode_audio, iter_frames

RATE = 16000
FPS = 25.0


def _reason(call, *args) -> ClipError:
    with pytest.raises(ClipError) as info:
        result = call(*args)
        if hasattr(result, "__next__"):
            list(result)
    return info.value


# --------------------------------------------------------------------------- multichannel audio

#: a different gain per channel, so that a dropped or repeated channel changes the mean
GAINS = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6, 0.4], dtype=np.float32)

_DECODE_IN_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from talkdata.media.decode import decode_audio
    track = decode_audio(sys.argv[1], 16000)
    np.save(sys.argv[2], track.samples)
    """
)


def _decode_in_child(path: Path, out: Path) -> np.ndarray:
    """decode_audio in a child process: a decoder crash fails this test, not the test session."""
    done = subprocess.run([sys.executable, "-c", _DECODE_IN_CHILD, str(path), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"decode_audio died with {done.returncode}: {done.stderr[-2000:]}"
    return np.load(out)


@pytest.mark.parametrize("layout,count,suffix", [("7.1", 8, ".mkv"), ("7.1", 8, ".mp4"), ("5.1", 6, ".mkv"),
                                                 ("5.1", 6, ".mp4"), ("hexadecagonal", 16, ".mkv")])
def test_surround_audio_is_averaged_to_mono(tmp_path, layout, count, suffix):
    """7.1 (8 planes) no longer crashes the process; 5.1, 7.1 and 16 channels give the mean of the
    channels."""
    speech = mf.grid_audio()
    gains = np.resize(GAINS, count) * np.linspace(1.0, 0.8, count, dtype=np.float32)
    if suffix == ".mp4":
        gains[3] = 0.0  # AAC keeps only the lowest frequencies of the LFE channel (the 4th of 5.1 and 7.1)
    path = mf.write_multichannel_audio(tmp_path / f"surround{suffix}", gains[:, None] * speech[None, :], layout)
    samples = _decode_in_child(path, tmp_path / "out.npy")
    expected = speech * gains.mean()
    if suffix == ".mkv":  # PCM16: exact up to quantisation
        assert len(samples) == len(speech)
        assert np.abs(samples - expected).max() < 1e-3
    else:  # AAC: lossy, with encoder delay trimmed; compare the level and the waveform
        n = min(len(samples), len(expected))
        assert abs(len(samples) - len(expected)) <= 1024
        correlation = np.corrcoef(samples[:n], expected[:n])[0, 1]
        assert correlation > 0.98
        assert abs(np.sqrt(np.mean(samples[:n] ** 2)) / np.sqrt(np.mean(expected[:n] ** 2)) - 1) < 0.05


# --------------------------------------------------------------------------- paths ffmpeg would misread


@pytest.mark.parametrize("folder", ["cam:1", "file:x", "http:", "a|b"])
def test_relative_path_with_a_colon_decodes(tmp_path, monkeypatch, folder):
    (tmp_path / folder).mkdir()
    shutil.copy(mf.GRID_S1, tmp_path / folder / "bbaf2n.mpg")
    monkeypatch.chdir(tmp_path)
    relative = f"{folder}/bbaf2n.mpg"
    assert len(list(iter_frames(relative, FPS, "gray"))) == 75
    assert abs(len(decode_audio(relative, RATE).samples) - len(mf.grid_audio())) <= 512


# --------------------------------------------------------------------------- audio cut short


@pytest.fixture(scope="module")
def audio_last(tmp_path_factory) -> Path:
    """GRID s1 as an mp4 with the index at the front and the audio after the video."""
    return mf.write_audio_last_mp4(tmp_path_factory.mktemp("audio_last") / "clip.mp4", mf.grid_frames(),
                                   mf.grid_audio())


def test_audio_cut_short_is_truncated(tmp_path, audio_last):
    audio = mf.packet_positions(audio_last, "audio")
    video = mf.packet_positions(audio_last, "video")
    # the layout this test relies on: all audio after all video but the last video packet
    assert audio[0][0] > video[-2][0]
    cut = audio[len(audio) // 2][0]  # half of the audio packets are lost, and the last video frame
    path = tmp_path / "cut.mp4"
    path.write_bytes(audio_last.read_bytes()[:cut])
    err = _reason(decode_audio, path, RATE)
    assert err.reason == "truncated" and err.stage == "audio"
    assert "cut.mp4" in str(err) and "index lists 2.98 s of audio but the file holds only 1.4" in str(err)
    # the complete file decodes in full
    assert abs(len(decode_audio(audio_last, RATE).samples) - len(mf.grid_audio())) <= 1024


@pytest.mark.parametrize("name,codec", [("pcm.mov", None), ("pcm.avi", None), ("pcm24.mov", "pcm_s24le"),
                                        ("aac.mp4", "aac"), ("mp3.mp4", "mp3"), ("alac.mp4", "alac"),
                                        ("opus.mp4", "opus")])
def test_complete_audio_in_indexed_containers_is_not_truncated(tmp_path, name, codec):
    """The index counts PCM in mov / avi in samples, AAC or MP3 in packets, Opus at 48 kHz: a whole
    track is never taken for a cut one."""
    path = mf.write_video(tmp_path / name, mf.grid_frames()[:25], FPS, audio=mf.grid_audio()[:RATE], audio_codec=codec)
    track = decode_audio(path, RATE)
    assert abs(len(track.samples) - RATE) <= 400


def test_complete_short_audio_track_is_padded_not_rejected(tmp_path):
    """A whole audio track of 1 s under 3 s of video is legitimate: kept, padded with silence."""
    speech = mf.grid_audio()[:RATE]
    path = mf.write_audio_last_mp4(tmp_path / "short_audio.mp4", mf.grid_frames(), speech)
    track = decode_audio(path, RATE)
    assert abs(len(track.samples) - RATE) <= 1024
    stats = VideoStats()
    n_frames = len(list(iter_frames(path, FPS, "gray", stats)))
    assert n_frames == 75
    samples, padded = align_audio(track, stats.start_time, n_frames, FPS)
    assert len(samples) == 3 * RATE
    assert 1.9 < padded < 2.1
    assert not samples[-RATE:].any()


# --------------------------------------------------------------------------- frames too large


_PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    from talkdata.errors import ClipError
    from talkdata.media.decode import iter_frames
    try:
        print("frames", sum(1 for _ in iter_frames(sys.argv[1], 25.0, "rgb24")))
    except ClipError as err:
        print("reject", err.reason)
    with open("/proc/self/status") as handle:
        print("peak_kb", [int(l.split()[1]) for l in handle if l.startswith("VmHWM:")][0])
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for the peak RSS")
def test_huge_frames_are_rejected_before_decoding(tmp_path):
    """A 16000x16000 MJPEG (2 MB a frame on disk, 768 MB a frame as RGB) is ``too_large``, with its
    size in the message, and the decoder never holds one of its frames."""
    path = mf.write_mjpeg(tmp_path / "huge.mkv", 16000, 16000)
    err = _reason(iter_frames, path, FPS, "gray")
    assert err.reason == "too_large" and err.reason in REASONS
    assert "huge.mkv" in str(err) and "16000x16000" in str(err)
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=120, check=True)
    lines = dict(line.split() for line in done.stdout.splitlines())
    assert lines["reject"] == "too_large"
    assert int(lines["peak_kb"]) < 256 * 1024  # one 16000x16000 gray plane alone is 244 MB


def test_frames_at_the_limit_side_decode(tmp_path):
    """The limit is on the area: a long thin frame over 7680 pixels wide still decodes."""
    width, height = 16000, 64
    assert width * height < MAX_PIXELS
    path = mf.write_mjpeg(tmp_path / "wide.mkv", width, height)
    stats = VideoStats()
    frames = list(iter_frames(path, FPS, "gray", stats))
    assert len(frames) == 2 and frames[0].shape == (height, width)
    assert (frames[0] == 128).all()


# --------------------------------------------------------------------------- a batch of damaged copies


def _damaged_copies(folder: Path) -> list[Path]:
    """Cut, zeroed, scrambled and spliced copies of every real sample (GRID mpg, CREMA-D flv,
    VoxCeleb2-style mp4)."""
    rng = np.random.default_rng(15)
    sources = [mf.GRID_S1, mf.CREMA_ANG, mf.VOX_00002]
    made = []
    for source in sources:
        data = source.read_bytes()
        n = len(data)
        variants = {
            "head_1k": data[:1024],
            "head_third": data[: n // 3],
            "tail_cut_1pct": data[: n - n // 100],
            "tail_cut_half": data[: n // 2],
            "no_head": data[n // 4 :],
            "zeroed_middle": data[: n // 3] + bytes(n // 3) + data[2 * (n // 3) :],
            "zeroed_head": bytes(4096) + data[4096:],
            "random_bytes_middle": data[: n // 2] + rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()
            + data[n // 2 + 8192 :],
            "flipped_bits": bytes(b ^ 0x10 if i % 997 == 0 else b for i, b in enumerate(data)),
            "doubled": data + data,
            "spliced": data[: n // 2] + sources[(sources.index(source) + 1) % 3].read_bytes()[n // 2 :],
        }
        for name, content in variants.items():
            path = folder / f"{source.stem}_{name}{source.suffix}"
            path.write_bytes(content)
            made.append(path)
    made.append(mf.write_multichannel_audio(folder / "surround71.mkv", GAINS[:, None] * mf.grid_audio()[None, :], "7.1"))
    made.append(mf.write_mjpeg(folder / "huge.avi", 16000, 16000, n_frames=1))
    (folder / "empty.mp4").write_bytes(b"")
    made.append(folder / "empty.mp4")
    (folder / "text.mp4").write_text("not a video\n")
    made.append(folder / "text.mp4")
    return made


def test_damaged_copies_decode_or_reject(tmp_path):
    """Every damaged copy ends in samples or a known reject reason; the counts are printed."""
    inputs = _damaged_copies(tmp_path)
    outcomes: dict[str, str] = {}
    for path in inputs:
        results = []
        for call in (lambda p: decode_audio(p, RATE), lambda p: list(iter_frames(p, FPS, "gray"))):
            try:
                call(path)
                results.append("ok")
            except ClipError as err:
                assert err.reason in REASONS
                assert str(tmp_path) not in str(err)  # messages name the file, never the folder
                results.append(err.reason)
        outcomes[path.name] = "/".join(results)
    for name, outcome in sorted(outcomes.items()):
        print(f"{name}: audio/video {outcome}")
    print(f"inputs tried: {len(inputs)}, handled: {len(outcomes)}, tracebacks: {len(inputs) - len(outcomes)}")
    assert len(outcomes) == len(inputs) == 37
    assert outcomes["huge.avi"].endswith("too_large")
    assert outcomes["empty.mp4"] == outcomes["text.mp4"] == "unreadable/unreadable"
    # cutting off the first bytes of an mp4 loses its header: unreadable
    assert outcomes["00002_head_1k.mp4"] == "unreadable/unreadable"
    # zeroed bytes inside the mp4's audio: decoding fails part-way, never a shortened track
    assert outcomes["00002_zeroed_middle.mp4"] == "decode_error/decode_error"
    # half an mp4 whose index is at its end cannot be opened
    assert outcomes["00002_tail_cut_half.mp4"] == "unreadable/unreadable"


def test_build_from_a_relative_source_with_a_colon(tmp_path, monkeypatch):
    """``talkdata build videos cam:1 out`` from the folder holding ``cam:1``: the clip is a sample
    (every clip was ``unreadable``: "Protocol not found")."""
    import pyarrow.parquet as pq

    from talkdata.pipeline.build import build

    (tmp_path / "cam:1" / "spk").mkdir(parents=True)
    shutil.copy(mf.GRID_S1, tmp_path / "cam:1" / "spk" / "bbaf2n.mpg")
    monkeypatch.chdir(tmp_path)
    build("videos", "cam:1", "out", sets={"split.train": 1.0, "split.val": 0.0, "split.test": 0.0},
          isolate=False)
    assert pq.read_table(tmp_path / "out" / "rejects.parquet").num_rows == 0
    assert pq.read_table(tmp_path / "out" / "index.parquet").column("key").to_pylist() == ["spk/bbaf2n"]
