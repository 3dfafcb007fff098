"""Tests for talkdata.media.decode on real media: frame selection by timestamp, audio alignment and
sync, error reasons, and bounded memory.

References are computed independently of the code under test: source frames and timestamps with
plain PyAV decoding (``media_factory``) and with decord, source audio with decord's AudioReader and
with PyAV + ``scipy.signal.resample_poly``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.signal import correlate

import media_factory as mf
from talkdata.config import BuildConfig
from talkdata.errors import ClipError
from talkdata.media.decode import VideoStats, align_audio, decode_audio, iter_frames
from talkdata.media.encode import decode_wav
from talkdata.pipeline.clip import process_clip
from talkdata.corpora import crema_d, grid

import decord  # noqa: E402  (test extra: an independent decoder to check PyAV against)

FPS = 25.0
RATE = 16000
CREMA_FPS = 30000 / 1001  # nominal; the FLV stores 989/33 with millisecond timestamps
CREMA_VIDEO_START = 0.027  # the FLV's video stream starts 27 ms after its audio stream


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def config() -> BuildConfig:
    return BuildConfig()


@pytest.fixture(scope="module")
def grid_record(config):
    records = {r.clip: r for r in grid.index(mf.DATA / "grid", config)}
    return records["bbaf2n"]


@pytest.fixture(scope="module")
def crema_record(config):
    records = {r.clip: r for r in crema_d.index(mf.DATA / "crema_d", config)}
    return records["1001_DFA_ANG_XX"]


@pytest.fixture(scope="module")
def grid_output(grid_record, config):
    return process_clip(grid_record, config)


@pytest.fixture(scope="module")
def crema_output(crema_record, config):
    return process_clip(crema_record, config)


@pytest.fixture(scope="module")
def crema_decoded():
    stats = VideoStats()
    frames = list(iter_frames(mf.CREMA_ANG, FPS, "rgb24", stats))
    return frames, stats


def _best_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """Lag (samples) maximising the cross-correlation; positive = ``signal`` is late."""
    n = min(len(signal), len(reference))
    corr = correlate(signal[:n].astype(np.float64), reference[:n].astype(np.float64), mode="full", method="fft")
    lags = np.arange(-n + 1, n)
    window = np.abs(lags) <= max_lag
    return int(lags[window][np.argmax(corr[window])])


def _decord_audio(path: Path, video_start: float, length: int) -> np.ndarray:
    """decord's 16 kHz mono audio (timeline starts at the audio stream start), shifted so that
    sample 0 is ``video_start`` and cut to ``length`` samples (zero-padded)."""
    samples = decord.AudioReader(str(path), sample_rate=RATE, mono=True)[:].asnumpy().reshape(-1)
    offset = int(round(video_start * RATE))
    out = np.zeros(length, dtype=np.float32)
    part = samples[offset : offset + length]
    out[: len(part)] = part
    return out


# --------------------------------------------------------------------------- frame selection


def test_grid_25fps_is_identity():
    stats = VideoStats()
    frames = list(iter_frames(mf.GRID_S1, FPS, "rgb24", stats))
    assert len(frames) == stats.output_frames == stats.source_frames == 75
    assert stats.dropped_frames == 0
    assert (stats.width, stats.height) == (360, 288)
    assert frames[0].shape == (288, 360, 3) and frames[0].dtype == np.uint8
    assert all(f.flags["C_CONTIGUOUS"] for f in frames)
    np.testing.assert_allclose(stats.frame_times, np.arange(75) / FPS, rtol=0, atol=1e-6)
    assert stats.duration == pytest.approx(3.0, abs=1e-6)
    # every output frame is a distinct source frame, in order: the pixels of plain PyAV decoding up to
    # the rounding of the colour conversion (OpenCV's BT.601 I420 -> RGB instead of swscale's)
    source = mf.read_frames(mf.GRID_S1)
    assert len(source) == 75
    for t in (0, 1, 37, 74):
        diff = np.abs(frames[t].astype(int) - source[t])
        assert diff.max() <= 8 and diff.mean() < 1.5
        for other in (t - 1, t + 1):
            if 0 <= other < 75:
                assert diff.mean() < np.abs(frames[t].astype(int) - source[other]).mean()


def test_gray_output_matches_rgb_frame_count():
    stats = VideoStats()
    frames = list(iter_frames(mf.GRID_S1, FPS, "gray", stats))
    assert len(frames) == 75 and frames[0].shape == (288, 360) and frames[0].flags["C_CONTIGUOUS"]


def test_crema_2997_to_25_frame_count(crema_decoded):
    frames, stats = crema_decoded
    assert stats.start_time == pytest.approx(CREMA_VIDEO_START, abs=1e-9)
    assert stats.source_frames == 67
    assert stats.source_fps == pytest.approx(CREMA_FPS, abs=0.01)
    # duration: last frame's relative timestamp (2.202 s) + one nominal frame
    assert stats.duration == pytest.approx(2.202 + 33 / 989, abs=1e-6)
    assert len(frames) == stats.output_frames == math.ceil(stats.duration * FPS) == 56


def test_crema_frame_times_do_not_drift(crema_decoded):
    _, stats = crema_decoded
    times = np.asarray(stats.frame_times)
    wanted = np.arange(len(times)) / FPS
    # the frame used for t is on screen at t / 25: not after it, and not a whole source frame before it
    assert np.all(times <= wanted + 1e-4)
    assert np.all(times > wanted - 1.0 / CREMA_FPS)
    assert np.all(np.diff(times) >= 0)
    # with 29.97 -> 25, about one source frame in six is skipped; none is repeated
    assert len(np.unique(times)) == len(times)


def test_crema_frames_are_the_source_frames_on_screen(crema_decoded):
    """Output frame t has the pixels of the source frame with the largest pts <= t/25 (plain PyAV
    decode, up to colour-conversion rounding), and decord's timestamps and pixels pick the same source frame."""
    frames, stats = crema_decoded
    source, times = mf.read_frames_with_times(mf.CREMA_ANG)
    planes, _ = mf.read_frames_with_times(mf.CREMA_ANG, "planes")
    assert len(source) == len(planes) == 67
    reader = decord.VideoReader(str(mf.CREMA_ANG))
    decord_times = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    assert len(reader) == len(source)
    # decord's (relative, millisecond) timestamps agree with PyAV's
    np.testing.assert_allclose(decord_times, times, atol=1e-6)
    decord_frames = reader.get_batch(range(len(reader))).asnumpy()
    for t, frame in enumerate(frames):
        index = int(np.searchsorted(times, t / FPS + 1e-4, side="right")) - 1  # 1e-4: ms-rounded pts
        assert stats.frame_times[t] == pytest.approx(times[index], abs=1e-6)
        # exactly the decoder's picture of that source frame, converted to RGB (BT.601 I420)
        np.testing.assert_array_equal(frame, cv2.cvtColor(planes[index], cv2.COLOR_YUV2RGB_I420),
                                      err_msg=f"output frame {t}")
        # which is swscale's RGB of it up to rounding and chroma upsampling
        diff = np.abs(frame.astype(np.int16) - source[index].astype(np.int16))
        assert diff.max() <= 8 and diff.mean() < 1.5, f"output frame {t}"
        # decord's decode of the same index is closer to that source frame than its neighbours
        errors = {j: np.abs(source[index].astype(np.int16) - decord_frames[j].astype(np.int16)).mean()
                  for j in (index - 1, index, index + 1) if 0 <= j < len(decord_frames)}
        assert min(errors, key=errors.get) == index, (t, errors)


# --------------------------------------------------------------------------- audio alignment


def test_audio_lengths(grid_output, crema_output):
    for output, frames in ((grid_output, 75), (crema_output, 56)):
        samples, rate = decode_wav(output.files["audio.wav"])
        assert rate == RATE
        assert output.meta["frames"] == frames
        assert len(samples) == output.meta["audio_samples"] == round(frames / FPS * RATE)
    # GRID's mp2 track ends 22 ms before the video: padded with silence
    assert grid_output.meta["audio_padded_s"] == pytest.approx(0.022, abs=1e-3)
    assert crema_output.meta["audio_padded_s"] == 0.0


def test_crema_audio_starts_at_video_start(crema_decoded, crema_output):
    _, stats = crema_decoded
    track = decode_audio(mf.CREMA_ANG, RATE)
    assert track.start_time == 0.0
    offset = int(round((stats.start_time - track.start_time) * RATE))
    assert offset == 432  # 27 ms
    aligned, padded = align_audio(track, stats.start_time, stats.output_frames, FPS)
    assert padded == 0.0 and len(aligned) == round(56 / FPS * RATE)
    np.testing.assert_array_equal(aligned, track.samples[offset : offset + len(aligned)])
    # the sample's wav is the same audio, PCM16-quantised
    wav, _ = decode_wav(crema_output.files["audio.wav"])
    np.testing.assert_allclose(wav, np.clip(aligned, -1, 1), atol=1.0 / 32767 + 1e-6)
    # and it is not the un-shifted track: the 27 ms offset is really applied
    assert _best_lag(wav, track.samples[: len(wav)], 1000) == -offset


@pytest.mark.parametrize("which", ["grid", "crema"])
def test_audio_sync_against_decord(which, grid_output, crema_output):
    """process_clip's audio.wav against decord's audio shifted by the video start time: the
    cross-correlation peaks within +-2 ms; against a zero-phase (scipy) resampling of PyAV's native
    decode it peaks at exactly 0."""
    output, path = (grid_output, mf.GRID_S1) if which == "grid" else (crema_output, mf.CREMA_ANG)
    info = mf.video_info(path)
    video_start = info["video_start"] - info["audio_start"]
    assert video_start == pytest.approx(0.0 if which == "grid" else CREMA_VIDEO_START, abs=1e-9)
    wav, _ = decode_wav(output.files["audio.wav"])
    reference = _decord_audio(path, video_start, len(wav))
    lag = _best_lag(wav, reference, max_lag=800)
    print(f"{which}: lag vs decord = {lag} samples")
    assert abs(lag) <= 32
    # the correlation is a real match, not noise
    n = min(len(wav), len(reference))
    shifted = np.roll(reference, lag)[:n]
    similarity = float(np.dot(wav[:n], shifted) / np.sqrt(np.dot(wav[:n], wav[:n]) * np.dot(shifted, shifted)))
    assert similarity > 0.95
    # decord's 1 ms lag is its own resampler's delay: a zero-phase reference gives exactly 0
    native, start = mf.read_audio(path, RATE)
    offset = int(round((video_start - start) * RATE))
    exact = np.zeros(len(wav), np.float32)
    part = native[offset : offset + len(wav)]
    exact[: len(part)] = part
    assert _best_lag(wav, exact, max_lag=800) == 0


def test_mono_audio_level_is_kept():
    """A mono source (CREMA-D's mp3) keeps its level through decode_audio."""
    ours = decode_audio(mf.CREMA_ANG, RATE).samples.astype(np.float64)
    reference = mf.read_audio(mf.CREMA_ANG, RATE)[0].astype(np.float64)
    n = min(len(ours), len(reference))
    gain = float(np.dot(ours[:n], reference[:n]) / np.dot(reference[:n], reference[:n]))
    assert gain == pytest.approx(1.0, abs=0.01)


def test_stereo_downmix_stays_in_range(grid_output):
    track = decode_audio(mf.GRID_S1, RATE)
    reference = mf.read_audio(mf.GRID_S1, RATE)[0]  # mean of the two channels, zero-phase resampling
    n = min(len(track.samples), len(reference))
    gain = float(np.dot(track.samples[:n], reference[:n]) / np.dot(reference[:n], reference[:n]))
    print(f"GRID stereo->mono gain {gain:.4f}, peak {np.abs(track.samples).max():.3f}")
    wav, _ = decode_wav(grid_output.files["audio.wav"])
    clipped = int((np.abs(wav) >= 1.0).sum())
    print(f"{clipped} clipped samples in audio.wav")
    assert np.abs(track.samples).max() <= 1.0  # AudioTrack documents samples in [-1, 1]
    # the source itself touches full scale on a sample; the 3 dB downmix bug clipped 40 of them
    assert clipped <= 2
    assert gain == pytest.approx(1.0, abs=0.05)


def test_grid_alignment_falls_on_speech(grid_record, grid_output):
    words = grid_record.meta["words"]
    assert [w["word"] for w in words] == ["bin", "blue", "at", "f", "two", "now"]
    first, last = words[0]["start"], words[-1]["end"]
    assert (first, last) == pytest.approx((0.95, 2.12))  # 23750 / 25000, 53000 / 25000
    samples, _ = decode_wav(grid_output.files["audio.wav"])
    hop = RATE // 100  # 10 ms
    n = len(samples) // hop
    rms = np.sqrt((samples[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))
    times = np.arange(n) * 0.01
    energy = rms**2
    speech = energy[(times >= first) & (times < last)].mean()
    lead = energy[times < first - 0.1].mean()
    print(f"speech/lead energy ratio = {speech / lead:.1f}")
    assert speech > 5 * lead
    onset = times[np.argmax(rms > 0.1 * rms.max())]
    print(f"onset {onset:.2f} s, first word {first:.2f} s")
    assert abs(onset - first) <= 0.1


# --------------------------------------------------------------------------- failure paths


def _reason(call, path) -> ClipError:
    with pytest.raises(ClipError) as info:
        call(path)
    return info.value


def _frames(path):
    return list(iter_frames(path, FPS))


def _audio(path):
    return decode_audio(path, RATE)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mpg"
    path.write_bytes(b"")
    for call in (_frames, _audio):
        err = _reason(call, path)
        assert err.reason == "unreadable" and "empty.mpg" in str(err)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.mpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    for call in (_frames, _audio):
        err = _reason(call, path)
        assert err.reason == "unreadable" and "noise.mpg" in str(err)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "gone.mpg"
    for call in (_frames, _audio):
        err = _reason(call, path)
        assert err.reason == "missing_source" and "gone.mpg" in str(err)


def test_truncated_file(tmp_path, config):
    """The first 2 KB of the GRID mpg: one (partial) video frame and no audio packet yet.

    Observed: iter_frames yields that single frame without an error (a short clip; the too_short
    check lives in process_clip), decode_audio finds no audio stream, so process_clip rejects the
    file as no_audio_stream (its audio stage runs first).
    """
    path = tmp_path / "trunc.mpg"
    path.write_bytes(mf.GRID_S1.read_bytes()[:2048])
    stats = VideoStats()
    frames = list(iter_frames(path, FPS, "rgb24", stats))
    assert len(frames) == stats.output_frames == 1 and stats.source_frames == 1
    err = _reason(_audio, path)
    assert err.reason == "no_audio_stream" and "trunc.mpg" in str(err)
    from talkdata.corpora.records import ClipRecord

    record = ClipRecord(dataset="videos", speaker="x", clip="trunc", path=str(path), relpath="trunc.mpg")
    err = _reason(lambda _: process_clip(record, config), path)
    assert err.reason == "no_audio_stream"
    # a longer truncation (32 KB: 6 frames, with audio) is rejected as too short
    path32 = tmp_path / "trunc32.mpg"
    path32.write_bytes(mf.GRID_S1.read_bytes()[:32768])
    record = ClipRecord(dataset="videos", speaker="x", clip="trunc32", path=str(path32), relpath="trunc32.mpg")
    err = _reason(lambda _: process_clip(record, config), path32)
    assert err.reason == "too_short" and "6 frames" in str(err)


def test_video_without_audio(tmp_path):
    path = mf.write_video(tmp_path / "silent.mp4", mf.grid_frames()[:10], FPS)
    assert len(_frames(path)) == 10
    err = _reason(_audio, path)
    assert err.reason == "no_audio_stream" and "silent.mp4" in str(err)


def test_audio_without_video(tmp_path):
    path = mf.write_wav(tmp_path / "speech.wav", mf.grid_audio())
    err = _reason(_frames, path)
    assert err.reason == "no_video_stream" and "speech.wav" in str(err)
    track = decode_audio(path, RATE)
    assert abs(len(track.samples) - len(mf.grid_audio())) <= 1


# --------------------------------------------------------------------------- memory

_RSS_SCRIPT = textwrap.dedent(
    """
    import sys
    from talkdata.media.decode import iter_frames

    def peak_kb():
        # VmHWM: this process's peak RSS. (ru_maxrss is no good here: it survives exec, so a child
        # of a big pytest process reports at least the parent's RSS.)
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    limit, keep_every = int(sys.argv[2]), int(sys.argv[3])
    kept = []  # keep_every > 0 simulates a leak, to show that the measurement sees one
    n = 0
    for frame in iter_frames(sys.argv[1], 25.0, "rgb24"):
        n += 1
        if keep_every and n % keep_every == 0:
            kept.append(frame)
        if n >= limit:
            break
    print(n, peak_kb())
    """
)


def _peak_rss_kb(path: Path, limit: int, keep_every: int = 0) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path), str(limit), str(keep_every)],
                          capture_output=True, text=True, timeout=120, check=True)
    frames, rss = done.stdout.split()
    return int(frames), int(rss)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for the peak RSS")
def test_decoding_memory_is_bounded(tmp_path):
    """30 s of 1280x720 (750 frames, 2 GB as RGB) decode in about the memory of 10 s."""
    path = mf.write_video(tmp_path / "long.mp4", mf.moving_square_frames(1280, 720, 750, frame_format="yuv420p"),
                          FPS, crf=30, frame_format="yuv420p")
    frames_short, rss_short = _peak_rss_kb(path, 250)
    frames_long, rss_long = _peak_rss_kb(path, 10**9)
    assert (frames_short, frames_long) == (250, 750)
    growth_mb = (rss_long - rss_short) / 1024.0
    print(f"peak RSS 10 s: {rss_short / 1024:.0f} MB, 30 s: {rss_long / 1024:.0f} MB, growth {growth_mb:.1f} MB")
    assert growth_mb < 100
    assert rss_long / 1024.0 < 300 + rss_short / 1024.0
    # the measurement is sensitive: holding on to every 5th frame (150 x 2.6 MB) shows up
    _, rss_leak = _peak_rss_kb(path, 10**9, keep_every=5)
    print(f"peak RSS 30 s keeping 150 frames: {rss_leak / 1024:.0f} MB")
    assert (rss_leak - rss_long) / 1024.0 > 300


# --------------------------------------------------------------------------- pictures (decode by region)


@pytest.mark.parametrize("path", [mf.GRID_S1, mf.CREMA_ANG, mf.DATA / "voxceleb2_like" / "00473.mp4"],
                         ids=["grid_mpg", "crema_flv", "vox_mp4"])
def test_pictures_give_any_region_exactly_as_the_whole_frames_rgb(path):
    """``iter_frames(..., "picture")`` keeps yuv420p frames as planes (half the bytes of RGB) and
    converts to RGB only the region asked for: every region, odd bounds included, equals the same
    slice of the ``rgb24`` frame, and so does a kept copy of a region (which starts on even pixels)."""
    frames = list(iter_frames(path, FPS, "rgb24"))
    pictures = list(iter_frames(path, FPS, "picture"))
    assert len(pictures) == len(frames)
    rng = np.random.default_rng(0)
    for frame, picture in zip(frames[::5], pictures[::5]):
        h, w = frame.shape[:2]
        assert picture.shape == (h, w)
        assert picture.nbytes == frame.nbytes // 2  # not converted yet
        for _ in range(6):
            x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
            y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
            np.testing.assert_array_equal(picture.rgb_region(x0, y0, x1, y1), frame[y0:y1, x0:x1])
            region, (ox, oy) = picture.crop(x0, y0, x1, y1)
            assert ox % 2 == 0 and oy % 2 == 0 and ox <= x0 and oy <= y0
            rh, rw = region.shape
            assert ox + rw >= x1 and oy + rh >= y1
            np.testing.assert_array_equal(region.rgb(), frame[oy:oy + rh, ox:ox + rw])
        np.testing.assert_array_equal(picture.rgb(), frame)


def test_pictures_of_other_pixel_formats_hold_rgb(tmp_path):
    """An MJPEG clip with odd sides (not yuv420p with even sides) gives pictures holding the RGB
    frames themselves: regions and crops are slices of the ``rgb24`` frames."""
    path = mf.write_mjpeg(tmp_path / "odd.avi", 97, 61, n_frames=3)
    frames = list(iter_frames(path, FPS, "rgb24"))
    pictures = list(iter_frames(path, FPS, "picture"))
    assert len(frames) == len(pictures) > 0
    for frame, picture in zip(frames, pictures):
        assert picture.nbytes == frame.nbytes
        np.testing.assert_array_equal(picture.rgb(), frame)
        np.testing.assert_array_equal(picture.rgb_region(3, 5, 96, 60), frame[5:60, 3:96])
        region, origin = picture.crop(3, 5, 96, 60)
        assert origin == (3, 5)
        np.testing.assert_array_equal(region.rgb(), frame[5:60, 3:96])
