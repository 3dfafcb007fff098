"""Make and read test media with PyAV, independently of ``talkdata.media``.

Tests use this module to build the media files that ``tests/data`` does not hold (rotated or
mirrored copies of a real clip, clips without audio, audio-only files, two faces in one frame,
long synthetic clips) and to read media back without going through the code under test.

Conventions:

- frames are ``uint8`` RGB arrays ``(H, W, 3)``, always C-contiguous (dlib misreads strided arrays,
  and PyAV's ``to_ndarray`` returns views with padded rows);
- audio is ``float32`` mono in ``[-1, 1]`` at :data:`SAMPLE_RATE` unless stated otherwise;
- the container format follows the file extension; audio is muxed as AAC in ``.mp4``/``.m4v`` and as
  PCM16 (bit exact) in ``.mkv``/``.mov``/``.avi``.

Import it from a test module as ``import media_factory`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import wave
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np
from scipy.signal import resample_poly

#: the real sample media (see tests/data/SOURCES.md)
DATA = Path(__file__).parent / "data"
GRID_S1 = DATA / "grid" / "s1" / "bbaf2n.mpg"
GRID_S1_ALIGN = DATA / "grid" / "alignments" / "s1" / "bbaf2n.align"
GRID_S2 = DATA / "grid" / "s2" / "swwp2s.mpg"
CREMA_ANG = DATA / "crema_d" / "VideoFlash" / "1001_DFA_ANG_XX.flv"
VOX_00002 = DATA / "voxceleb2_like" / "00002.mp4"
VOX_00473 = DATA / "voxceleb2_like" / "00473.mp4"

SAMPLE_RATE = 16000

_PCM_CONTAINERS = {".mkv", ".mov", ".avi"}


# --------------------------------------------------------------------------- reading


def read_frames_with_times(path: str | Path, fmt: str = "rgb24") -> tuple[list[np.ndarray], np.ndarray]:
    """Every decoded frame of the first video stream and its timestamp relative to the first frame.

    Plain PyAV decoding in presentation order, no frame-rate conversion: this is the "source frame"
    reference that frame-selection tests compare against. ``fmt="planes"`` gives the decoder's own
    picture (yuv420p planes stacked, as ``VideoFrame.to_ndarray()`` returns them) without any colour
    conversion.
    """
    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            image = frame.to_ndarray() if fmt == "planes" else frame.to_ndarray(format=fmt)
            frames.append(np.ascontiguousarray(image))
            times.append(frame.time)
    times = np.asarray(times, dtype=np.float64)
    return frames, times - times[0] if len(times) else times


def read_frames(path: str | Path, fmt: str = "rgb24") -> list[np.ndarray]:
    """Every decoded frame of ``path`` (a path, or mp4 ``bytes`` such as a sample's ``video.mp4``)."""
    if isinstance(path, (bytes, bytearray)):
        import io

        with av.open(io.BytesIO(path)) as container:
            return [np.ascontiguousarray(f.to_ndarray(format=fmt)) for f in container.decode(video=0)]
    return read_frames_with_times(path, fmt)[0]


def video_info(path: str | Path) -> dict:
    """Width, height, frame count, stream start times (s) and audio presence of a media file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        info = {
            "has_video": video is not None,
            "has_audio": audio is not None,
            "width": video.codec_context.width if video is not None else 0,
            "height": video.codec_context.height if video is not None else 0,
            "video_start": float(video.start_time * video.time_base) if video is not None and video.start_time is not None else None,
            "audio_start": float(audio.start_time * audio.time_base) if audio is not None and audio.start_time is not None else None,
            "audio_rate": audio.sample_rate if audio is not None else 0,
        }
    if video is not None:
        info["frames"] = len(read_frames_with_times(path, "gray")[1])
    return info


def read_audio_native(path: str | Path) -> tuple[np.ndarray, int, float]:
    """The first audio stream at its own sample rate, channels averaged: ``(samples, rate, start)``."""
    chunks = []
    start = None
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.sample_rate
        for frame in container.decode(stream):
            if start is None:
                start = frame.time or 0.0
            data = frame.to_ndarray().astype(np.float64)
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                mono = data.reshape(channels, -1).mean(axis=0)
            else:
                mono = data.reshape(-1, channels).mean(axis=1)
            if frame.format.name.startswith("s16"):
                mono = mono / 32768.0
            elif frame.format.name.startswith("s32"):
                mono = mono / 2147483648.0
            chunks.append(mono)
    return np.concatenate(chunks), rate, float(start or 0.0)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Mono float32 audio at ``sample_rate`` and the start time (s) of its first sample.

    Resampled with ``scipy.signal.resample_poly`` (a zero-phase polyphase filter), so it has no
    delay of its own: a reference that does not share talkdata's (libswresample) code path.
    """
    samples, rate, start = read_audio_native(path)
    if rate != sample_rate:
        ratio = Fraction(sample_rate, rate)
        samples = resample_poly(samples, ratio.numerator, ratio.denominator)
    return samples.astype(np.float32), start


@lru_cache(maxsize=1)
def _grid_frames_cached() -> tuple[np.ndarray, ...]:
    frames = read_frames(GRID_S1)
    for frame in frames:
        frame.flags.writeable = False
    return tuple(frames)


def grid_frames() -> list[np.ndarray]:
    """The 75 RGB frames (288 x 360) of GRID ``s1/bbaf2n.mpg`` (read-only arrays, decoded once)."""
    return list(_grid_frames_cached())


@lru_cache(maxsize=1)
def _grid_audio_cached() -> np.ndarray:
    samples, _ = read_audio(GRID_S1, SAMPLE_RATE)
    samples.flags.writeable = False
    return samples


def grid_audio() -> np.ndarray:
    """GRID ``s1/bbaf2n.mpg``'s speech as float32 mono 16 kHz (about 2.98 s, read-only)."""
    return _grid_audio_cached()


# --------------------------------------------------------------------------- writing


def _audio_codec_for(path: Path) -> str:
    return "pcm_s16le" if path.suffix.lower() in _PCM_CONTAINERS else "aac"


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    codec: str = "libx264",
    audio_codec: str | None = None,
    crf: int = 12,
    preset: str = "ultrafast",
    frame_format: str = "rgb24",
) -> Path:
    """Encode ``frames`` (any iterable, consumed lazily) at ``fps`` into ``path``.

    Frames are RGB ``(H, W, 3)`` uint8, or with ``frame_format="yuv420p"`` I420 arrays ``(H * 3 // 2, W)``
    as ``cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)`` makes them (much faster to encode: no colour
    conversion in PyAV). ``audio`` (float32 mono in [-1, 1] at ``sample_rate``) is muxed as a second
    stream: AAC for ``.mp4``, PCM16 for ``.mkv``/``.mov``/``.avi`` (``audio_codec`` overrides). Frame
    sizes must be even (yuv420p). Returns ``path``.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    container = av.open(str(path), mode="w")
    try:
        options = {"crf": str(crf), "preset": preset} if codec == "libx264" else {}
        vstream = container.add_stream(codec, rate=rate, options=options)
        vstream.pix_fmt = "yuv420p"
        vstream.codec_context.time_base = 1 / rate
        astream = None
        if audio is not None:
            astream = container.add_stream(audio_codec or _audio_codec_for(path), rate=sample_rate, layout="mono")
        count = 0
        if frame_format not in ("rgb24", "yuv420p"):
            raise ValueError(f"frame_format must be rgb24 or yuv420p, got {frame_format!r}")
        for index, image in enumerate(frames):
            image = np.ascontiguousarray(image, dtype=np.uint8)
            if index == 0:
                height, width = image.shape[:2]
                if frame_format == "yuv420p":
                    height = height * 2 // 3
                if width % 2 or height % 2:
                    raise ValueError(f"frame size {width}x{height} must be even for yuv420p")
                vstream.width, vstream.height = width, height
            frame = av.VideoFrame.from_ndarray(image, format=frame_format)
            frame.pts = index
            frame.time_base = vstream.codec_context.time_base
            for packet in vstream.encode(frame):
                container.mux(packet)
            count += 1
        if count == 0:
            raise ValueError("write_video needs at least one frame")
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, np.asarray(audio, dtype=np.float32), sample_rate)
    finally:
        container.close()
    return path


def _encode_audio(container, stream, samples: np.ndarray, sample_rate: int, block: int = 1024,
                  layout: str = "mono") -> None:
    """Encode float samples in blocks: mono ``(N,)`` or the rows of ``(C, N)`` for ``layout``, written
    packed (``flt``: PyAV 18 cannot build frames of 8 planes); PyAV converts to the codec's format."""
    channels = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1, np.shape(samples)[-1]), -1.0, 1.0)
    for start in range(0, channels.shape[1], block):
        packed = np.ascontiguousarray(channels[:, start : start + block].T.reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """An audio-only PCM16 mono wav file."""
    path = Path(path)
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())
    return path


# --------------------------------------------------------------------------- frame transforms


def rotate_frame(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the frame centre by ``degrees`` (positive = counter-clockwise on screen, as in
    ``cv2.getRotationMatrix2D``), same size, black corners."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    return np.ascontiguousarray(cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR))


def mirror_frame(rgb: np.ndarray) -> np.ndarray:
    """Left-right mirror image."""
    return np.ascontiguousarray(cv2.flip(rgb, 1))


def place_on_canvas(canvas_size: tuple[int, int], items: list[tuple[np.ndarray, float, tuple[int, int]]],
                    background: int = 0) -> np.ndarray:
    """A ``(width, height)`` canvas with each ``(rgb, scale, (x, y))`` pasted, scaled, at top-left x, y."""
    width, height = canvas_size
    canvas = np.full((height, width, 3), background, dtype=np.uint8)
    for rgb, scale, (x, y) in items:
        image = rgb if scale == 1.0 else cv2.resize(
            rgb, (int(round(rgb.shape[1] * scale)), int(round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        h = min(image.shape[0], height - y)
        w = min(image.shape[1], width - x)
        canvas[y : y + h, x : x + w] = image[:h, :w]
    return canvas


def moving_square_frames(width: int, height: int, n_frames: int, square: int = 64, seed: int = 0,
                         frame_format: str = "rgb24") -> Iterator[np.ndarray]:
    """Synthetic frames: a solid background that changes colour every second (25 frames) and a white
    square moving across it. Cheap to make and to encode; no face.

    ``frame_format="yuv420p"`` yields I420 arrays for ``write_video(..., frame_format="yuv420p")``
    (a 60 s 720p clip then takes a few seconds to make). The yielded array is reused: copy it to keep it.
    """
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    background = np.empty_like(frame)
    for t in range(n_frames):
        if t % 25 == 0:
            background[:] = rng.integers(0, 200, size=3, dtype=np.uint8)
        np.copyto(frame, background)
        x = (t * 8) % max(1, width - square)
        y = (t * 5) % max(1, height - square)
        frame[y : y + square, x : x + square] = 255
        yield cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420) if frame_format == "yuv420p" else frame


def noise_frames(width: int, height: int, n_frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Mid-gray frames with mild uniform noise: no face in them."""
    rng = np.random.default_rng(seed)
    for _ in range(n_frames):
        yield (128 + rng.integers(-20, 21, size=(height, width, 3))).astype(np.uint8)


# --------------------------------------------------------------------------- hostile inputs


def write_multichannel_audio(path: str | Path, channels: np.ndarray, layout: str,
                             sample_rate: int = SAMPLE_RATE, codec: str | None = None) -> Path:
    """An audio-only file whose channels are the rows of ``channels`` (float32 ``(C, N)``), e.g.
    ``layout="7.1"`` with 8 rows. Frames are written packed (``flt``): PyAV 18 cannot build frames
    of 8 planes. PCM16 in ``.mkv``, AAC in ``.mp4`` unless ``codec`` says otherwise."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec or _audio_codec_for(path), rate=sample_rate, layout=layout)
        _encode_audio(container, stream, channels, sample_rate, layout=layout)
    return path


def write_audio_last_mp4(path: str | Path, frames: list[np.ndarray], audio: np.ndarray, fps: float = 25.0) -> Path:
    """An mp4 with its index (moov) at the front and the audio packets after the video packets, so
    that cutting the end of the file cuts the audio (a remux of :func:`write_video`'s output)."""
    path = Path(path)
    plain = write_video(path.with_suffix(".plain.mp4"), frames, fps, audio=audio)
    with av.open(str(plain)) as source, av.open(str(path), "w", format="mp4",
                                                 options={"movflags": "faststart", "max_interleave_delta": "1"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        packets = [p for p in source.demux() if p.dts is not None]
        for packet in sorted(packets, key=lambda p: p.stream.type != "video"):
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    plain.unlink()
    return path


def packet_positions(path: str | Path, kind: str) -> list[tuple[int, int]]:
    """``(byte offset, size)`` of every packet of the first ``kind`` ("audio"/"video") stream."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(p.pos, p.size) for p in container.demux(stream) if p.size]


def flat_jpeg(width: int, height: int) -> bytes:
    """A baseline grayscale JPEG of any size, mid-gray, without an image in memory: every 8x8 block
    is coded as DC difference 0 and end-of-block (2 bits each with one-code Huffman tables), so a
    16000 x 16000 picture is 2 MB."""
    import struct

    def segment(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    one_code_of_two_bits = bytes([0, 1] + [0] * 14)
    quant = segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    tables = segment(0xC4, b"\x00" + one_code_of_two_bits + b"\x00" + b"\x10" + one_code_of_two_bits + b"\x00")
    scan = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    return b"\xff\xd8" + quant + frame + tables + scan + bytes((blocks * 4 + 7) // 8) + b"\xff\xd9"


def write_mjpeg(path: str | Path, width: int, height: int, n_frames: int = 2, fps: int = 25) -> Path:
    """An MJPEG video (``.mkv``/``.avi``) of :func:`flat_jpeg` frames, muxed without encoding."""
    path = Path(path)
    picture = flat_jpeg(width, height)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p"
        for index in range(n_frames):
            packet = av.Packet(picture)
            packet.stream = stream
            packet.pts = packet.dts = index
            packet.duration = 1
            packet.time_base = Fraction(1, fps)
            container.mux(packet)
    return path
