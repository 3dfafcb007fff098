"""VoxCeleb2, LRW and TalkingHead-1KH: parsing on the real metadata files, then end-to-end builds.

Fixtures are laid out exactly as the official archives extract:

- VoxCeleb2: the two real VoxCeleb2-style clips as ``dev/mp4/id00012/21Uxsk56VDQ/00001.mp4`` and
  ``mp4/id00017/01dfn2spqyE/00001.mp4`` (id00012 is a dev speaker, id00017 a test speaker in the real
  ``vox2_meta.csv``), with a face-track txt in the documented format;
- LRW (never redistributable): synthetic clips made from the real GRID clip, re-encoded to 29 frames of
  256 x 256 around the word "bin", in ``lipread_mp4/BIN/{train,val,test}/``;
- TalkingHead-1KH: yt-dlp's real API against a loopback HTTP server that serves a real sample clip
  (placed on a 640 x 360 canvas) as a direct mp4 for one id, as a DASH manifest with separate video
  and audio for another, and 404 for a third.
"""

from __future__ import annotations

import http.server
import io
import json
import sys
import threading
import urllib.parse
from fractions import Fraction
from importlib import resources
from pathlib import Path

import av
import cv2
import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import media_factory as mf
from talkdata.cli import main
from talkdata.config import BuildConfig
from talkdata.errors import REASONS, UserError
from talkdata.face.detect import FaceDetector, box_iou, detector_backend
from talkdata.pipeline.build import build
from talkdata.recipe import load_schema, parse_recipe
from talkdata.shards import read_shard
from talkdata.acquire import tubes, youtube
from talkdata.acquire.hooks import talkinghead1kh as th_download
from talkdata.corpora import lrw, talkinghead1kh as th, voxceleb2

DATA = Path(__file__).parent / "data"
VOX = DATA / "voxceleb2_like"
TH_LISTS = DATA / "talkinghead_1kh" / "data_list"

# the example txt of reference/datasets.md, byte for byte (tabs, padding spaces, trailing spaces)
VOX_TXT_HEADER = ("Identity  : \tid00012\nReference : \t_raOc3-IRsw\nOffset    : \t2\nFV Conf   : \t20.230\t(1)\n"
                  "ASD Conf  : \t2.765\n\nFRAME \tX \tY \tW \tH \n")


def samples_of(out: Path) -> dict[str, dict]:
    """Every sample of a built dataset by key, with its json decoded."""
    samples = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        for key, files in read_shard(shard).items():
            files["meta"] = json.loads(files["json"])
            samples[key] = files
    return samples


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# =========================================================================== VoxCeleb2


def test_vox2_meta_csv_bom_and_trailing_spaces():
    raw = (VOX / "vox2_meta.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"id00012 ,n000012 ,m ,dev " in raw  # the real file's quirks
    meta = voxceleb2.read_meta(VOX / "vox2_meta.csv")
    assert len(meta) == 6114
    assert meta["id00012"] == {"vggface2_id": "n000012", "gender": "m", "set": "dev"}
    assert meta["id00017"]["set"] == "test"
    counts: dict[tuple[str, str], int] = {}
    for row in meta.values():
        counts[(row["set"], row["gender"])] = counts.get((row["set"], row["gender"]), 0) + 1
    # the counts of reference/datasets.md: dev 5,994 (3,682 m / 2,312 f), test 120 (81 m / 39 f)
    assert counts == {("dev", "m"): 3682, ("dev", "f"): 2312, ("test", "m"): 81, ("test", "f"): 39}


def test_vox2_txt_parser_on_the_documented_format(tmp_path):
    path = tmp_path / "00001.txt"
    path.write_text(VOX_TXT_HEADER + "000349 \t0.319 \t0.067 \t0.424 \t0.753 \n000350 \t0.320 \t0.066 \t0.425 \t0.752 \n")
    parsed = voxceleb2.parse_txt(path)
    assert parsed == {
        "identity": "id00012", "reference": "_raOc3-IRsw", "offset": 2, "fv_conf": 20.23, "asd_conf": 2.765,
        "boxes": [[349, 0.319, 0.067, 0.424, 0.753], [350, 0.32, 0.066, 0.425, 0.752]],
    }


@pytest.fixture(scope="module")
def vox_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vox2") / "VoxCeleb2"
    dev = root / "dev" / "mp4" / "id00012" / "21Uxsk56VDQ"
    test = root / "mp4" / "id00017" / "01dfn2spqyE"
    txt = root / "txt" / "id00012" / "21Uxsk56VDQ"
    for folder in (dev, test, txt):
        folder.mkdir(parents=True)
    (dev / "00001.mp4").write_bytes((VOX / "00002.mp4").read_bytes())
    (test / "00001.mp4").write_bytes((VOX / "00473.mp4").read_bytes())
    (root / "vox2_meta.csv").write_bytes((VOX / "vox2_meta.csv").read_bytes())
    # one txt row per frame of the 126-frame clip, frames 349..474 of the original video
    rows = "".join(f"{349 + i:06d} \t{0.319 + 0.001 * (i % 7):.3f} \t0.067 \t0.424 \t0.753 \n" for i in range(126))
    (txt / "00001.txt").write_text(VOX_TXT_HEADER.replace("_raOc3-IRsw", "21Uxsk56VDQ") + rows)
    return root


@pytest.fixture(scope="module")
def vox_out(vox_source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vox2-out") / "voxceleb2"
    report = build("voxceleb2", vox_source, out)
    assert report.samples == {"train": 1, "val": 0, "test": 1} and not report.rejects
    return out


def test_vox2_build_official_split_and_metadata(vox_out, vox_source):
    samples = samples_of(vox_out)
    assert sorted(samples) == ["id00012/21Uxsk56VDQ_00001", "id00017/01dfn2spqyE_00001"]
    dev = samples["id00012/21Uxsk56VDQ_00001"]["meta"]
    test = samples["id00017/01dfn2spqyE_00001"]["meta"]
    assert (dev["split"], dev["vox2_set"], test["split"], test["vox2_set"]) == ("train", "dev", "test", "test")
    assert (dev["gender"], dev["vggface2_id"], test["vggface2_id"]) == ("m", "n000012", "n000017")
    assert dev["source"]["path"] == "dev/mp4/id00012/21Uxsk56VDQ/00001.mp4"
    assert (dev["youtube_id"], dev["clip_index"], dev["txt"]) == ("21Uxsk56VDQ", 1, "txt/id00012/21Uxsk56VDQ/00001.txt")
    assert (dev["av_offset"], dev["fv_conf"], dev["asd_conf"]) == (2, 20.23, 2.765)
    assert (dev["youtube_start_frame"], dev["youtube_end_frame"], dev["track_fps"]) == (349, 474, 25)
    # the per-frame boxes are not copied into every sample (16.7 KB of json each): the txt the sample names has them
    assert "track_boxes" not in dev and "track_boxes" not in test
    boxes = voxceleb2.parse_txt(vox_source / dev["txt"])["boxes"]
    assert len(boxes) == dev["frames"] == 126 and boxes[1] == [350, 0.32, 0.067, 0.424, 0.753]
    # no txt for that clip: its string fields are empty (one type per field), its numbers null
    assert test["txt"] == "" and test["av_offset"] is None
    assert dev["face_box"] == test["face_box"] == voxceleb2.FACE_BOX
    rows = {r["key"]: r for r in pq.read_table(vox_out / "index.parquet").to_pylist()}
    assert rows["id00012/21Uxsk56VDQ_00001"]["gender"] == "m" and rows["id00017/01dfn2spqyE_00001"]["split"] == "test"
    assert json.loads(rows["id00012/21Uxsk56VDQ_00001"]["face_box"]) == voxceleb2.FACE_BOX


def test_vox2_face_box_agrees_with_the_tracked_face(vox_out):
    """The hint is where the face really is: dlib detections and the build's tracked boxes overlap it."""
    hint = np.array(voxceleb2.FACE_BOX) * 224
    detector = FaceDetector(detector_backend("hog"), 32.0)
    frames = mf.read_frames(VOX / "00473.mp4", "gray")
    detections = [b[0].box for b in (detector.detect(f) for f in frames[::10]) if b]
    assert len(detections) >= 12
    assert box_iou(np.median(detections, axis=0), hint) > 0.7
    for sample in samples_of(vox_out).values():
        boxes = np.load(io.BytesIO(sample["bbox.npy"]))
        assert box_iou(np.median(boxes, axis=0), hint) > 0.5, np.median(boxes, axis=0)


def test_vox2_without_meta_csv_is_one_clear_line(tmp_path):
    folder = tmp_path / "nometa" / "dev" / "mp4" / "id00012" / "21Uxsk56VDQ"
    folder.mkdir(parents=True)
    (folder / "00001.mp4").write_bytes((VOX / "00002.mp4").read_bytes())
    line = one_line_error(["build", "voxceleb2", "--source", str(tmp_path / "nometa"), "--out", str(tmp_path / "o")])
    assert "vox2_meta.csv not found" in line and voxceleb2.META_URL in line


def test_vox2_index_unlisted_speaker_and_duplicates(tmp_path):
    for parts in (("dev", "mp4", "id00012", "21Uxsk56VDQ"), ("dev", "mp4", "id99999", "abcdefghijk")):
        folder = tmp_path.joinpath(*parts)
        folder.mkdir(parents=True)
        (folder / "00001.mp4").write_bytes(b"not read by the index")
    (tmp_path / "vox2_meta.csv").write_bytes((VOX / "vox2_meta.csv").read_bytes())
    records = {r.key: r for r in voxceleb2.index(tmp_path, BuildConfig())}
    assert records["id00012/21Uxsk56VDQ_00001"].split == "train"
    unlisted = records["id99999/abcdefghijk_00001"]
    assert unlisted.split == "" and unlisted.meta["gender"] is None and unlisted.meta["vox2_set"] is None
    copy = tmp_path / "mp4" / "id00012" / "21Uxsk56VDQ"
    copy.mkdir(parents=True)
    (copy / "00001.mp4").write_bytes(b"x")
    with pytest.raises(UserError, match="two copies of the VoxCeleb2 clip id00012/21Uxsk56VDQ/00001"):
        list(voxceleb2.index(tmp_path, BuildConfig()))


# =========================================================================== LRW


def test_lrw_txt_and_word_frames(tmp_path):
    # only the "Text:" line and the "Duration:" line (line index 4, where mpc001 reads it) are documented;
    # the lines between are left empty
    path = tmp_path / "ABOUT_00001.txt"
    path.write_text("Text:  ABOUT\n\n\n\nDuration: 0.270000 seconds\n")
    assert lrw.parse_txt(path) == {"word": "ABOUT", "duration": 0.27}
    path.write_text("Text:  ABOUT\n")
    assert lrw.parse_txt(path) == {"word": "ABOUT", "duration": None}
    # mid = 14, half = int(d / 2 * 25): the word is centred in the 29 frames, end exclusive
    assert lrw.word_frames(0.27) == (10, 18)
    assert lrw.word_frames(0.23) == (11, 17)
    assert lrw.word_frames(0.0) == (13, 15)
    assert lrw.word_frames(1.16) == (0, 29)  # a word as long as the clip is clipped to it


def _lrw_clip(path: Path, first: int) -> None:
    """29 frames of the real GRID clip from ``first`` on, centre-cropped to 256 x 256, with their audio."""
    frames = mf.grid_frames()[first : first + 29]
    crops = [np.ascontiguousarray(cv2.resize(f[:, 36:324], (256, 256), interpolation=cv2.INTER_AREA)) for f in frames]
    audio = mf.grid_audio()[first * 640 : (first + 29) * 640]
    mf.write_video(path, crops, fps=25.0, audio=audio)


@pytest.fixture(scope="module")
def lrw_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lrw") / "lrw"
    # "bin" is spoken 0.95-1.18 s in s1/bbaf2n (alignment), i.e. centred near frame 26.6: clips start at 12
    for split, number, first in (("train", 1, 12), ("train", 3, 11), ("val", 1, 13), ("test", 1, 12)):
        folder = root / "lipread_mp4" / "BIN" / split
        folder.mkdir(parents=True, exist_ok=True)
        _lrw_clip(folder / f"BIN_{number:05d}.mp4", first)
        if (split, number) != ("train", 3):
            (folder / f"BIN_{number:05d}.txt").write_text("Text:  BIN\n\n\n\nDuration: 0.230000 seconds\n")
    return root


def test_lrw_build_splits_and_word_metadata(lrw_source, tmp_path):
    out = tmp_path / "lrw-out"
    report = build("lrw", lrw_source, out)
    assert report.samples == {"train": 2, "val": 1, "test": 1} and not report.rejects
    samples = samples_of(out)
    assert sorted(samples) == ["BIN/test_BIN_00001", "BIN/train_BIN_00001", "BIN/train_BIN_00003", "BIN/val_BIN_00001"]
    for key, sample in samples.items():
        meta = sample["meta"]
        assert meta["split"] == key.split("/")[1].split("_")[0]  # the folder is the split
        assert (meta["word"], meta["lrw_fps"], meta["frames"]) == ("BIN", 25, 29)
        assert meta["source"]["path"] == f"lipread_mp4/BIN/{meta['split']}/{key.split('_', 1)[1]}.mp4"
    train = samples["BIN/train_BIN_00001"]["meta"]
    assert (train["clip_index"], train["word_duration"], train["word_start_frame"], train["word_end_frame"]) == (1, 0.23, 11, 17)
    assert train["txt"] == "lipread_mp4/BIN/train/BIN_00001.txt" and "txt_word" not in train
    no_txt = samples["BIN/train_BIN_00003"]["meta"]
    # no txt: the numbers are null, the txt string empty (one type per field)
    assert (no_txt["clip_index"], no_txt["word_duration"], no_txt["word_start_frame"], no_txt["txt"]) == (3, None, None, "")
    rows = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert rows["BIN/val_BIN_00001"]["split"] == "val" and rows["BIN/val_BIN_00001"]["word_end_frame"] == 17


def test_lrw_folder_without_the_layout_is_one_clear_line(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    _lrw_clip(flat / "ABOUT_00001.mp4", 12)
    line = one_line_error(["build", "lrw", "--source", str(flat), "--out", str(tmp_path / "o")])
    assert "no LRW word folders" in line and "lipread_mp4/WORD/{train,val,test}/WORD_00001.mp4" in line


# =========================================================================== TalkingHead-1KH: lists and boxes


def test_th1kh_tube_lists_parse_the_real_files():
    small = th.read_tubes(TH_LISTS / "small_video_tubes.txt")
    assert len(small) == 4
    assert small[0] == th.Tube("--Y9imYnfBw", 0, 720, 1280, 0, 271, 504, 63, 792, 351)
    assert small[0].official_name == "--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351"
    assert small[3].video_id == "-7TMJtnhiPM" and (small[3].start, small[3].end) == (1608, 1674)
    val = th.read_tubes(TH_LISTS / "val_video_tubes.txt")
    assert len(val) == 38 and {(t.ref_height, t.ref_width) for t in val} == {(1080, 1920)}
    val_ids = th.read_ids(TH_LISTS / "val_video_ids.txt")
    assert len(val_ids) == 28 and {t.video_id for t in val} < set(val_ids)  # 2 listed ids have no tube
    assert len({t.video_id for t in val}) == 26
    train = th.read_tubes(TH_LISTS / "train_video_tubes_first50.txt")
    assert len(train) == 50 and {(t.ref_height, t.ref_width) for t in train} == {(720, 1280)}
    assert len(th.read_ids(TH_LISTS / "train_video_ids.txt")) == 2872


def test_th1kh_bad_tube_line_names_file_and_line(tmp_path):
    lines = (TH_LISTS / "small_video_tubes.txt").read_text().splitlines()
    path = tmp_path / "train_video_tubes.txt"
    path.write_text("\n".join(lines[:2] + ["--Y9imYnfBw_0000, 720, 1280, 0, 271, 504, 63, 792"] + lines[2:]))
    with pytest.raises(UserError, match=rf"{path}:3: 8 fields"):
        th.read_tubes(path)
    path.write_text(lines[0] + "\n--Y9imYnfBw_0000, 720, 1280, 300, 271, 504, 63, 792, 351\n")
    with pytest.raises(UserError, match=rf"{path}:2: inconsistent tube"):
        th.read_tubes(path)
    path.write_text("--Y9imYnfBw-0000, 720, 1280, 0, 271, 504, 63, 792, 351\n")
    with pytest.raises(UserError, match=rf"{path}:1: '--Y9imYnfBw-0000' is not VIDEOID_CHUNK"):
        th.read_tubes(path)


def test_th1kh_box_rescale_margin_and_face_box():
    # the official rule t = int(T / H * h): 720p reference, 360p download
    box = tubes.rescale_box((504, 63, 792, 351), (720, 1280), (640, 360))
    assert box == [252, 31, 396, 175]
    assert tubes.crop_region(box, (640, 360)) == [252, 31, 396, 175]
    assert tubes.box_in_region(box, [252, 31, 396, 175]) == [0.0, 0.0, 1.0, 1.0]
    # odd sizes are trimmed to even (yuv420p); the box then reaches just past the region
    assert tubes.crop_region([10, 11, 21, 30], (640, 360)) == [10, 11, 20, 29]
    # margin grows the region, clipped at the frame border: the face box is then inside the clip's frame
    region = tubes.crop_region([280, 40, 544, 304], (640, 360), margin=0.25)
    assert region == [214, 0, 610, 360]
    assert tubes.box_in_region([280, 40, 544, 304], region) == [0.1667, 0.1111, 0.8333, 0.8444]


def _standin_video(path: Path, size=(640, 360), at=(300, 60), keyint: int = 25) -> Path:
    """The real 158-frame clip 00473 (with its audio) on a grey canvas, a key frame every ``keyint`` frames."""
    frames = mf.read_frames(VOX / "00473.mp4")
    audio, _ = mf.read_audio(VOX / "00473.mp4")
    width, height = size
    x, y = at
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "ultrafast", "g": str(keyint)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for i, rgb in enumerate(frames):
            canvas = np.full((height, width, 3), 110, np.uint8)
            canvas[y : y + 224, x : x + 224] = rgb
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        for start in range(0, len(audio), 1024):
            block = av.AudioFrame.from_ndarray(audio[None, start : start + 1024].astype(np.float32), format="flt", layout="mono")
            block.sample_rate, block.pts, block.time_base = 16000, start, Fraction(1, 16000)
            for packet in sound.encode(block):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    return path


def test_chunks_are_stream_copies_and_tubes_are_frame_exact(tmp_path):
    source = _standin_video(tmp_path / "video.mp4")
    original = mf.read_frames(source)
    chunks = tubes.split_chunks(source, tmp_path / "1min_clips", "video", seconds=2.0)
    # key frames every second: cuts at the first key frame at or after 2 s, 4 s, 6 s
    assert [c.frames for c in chunks] == [50, 50, 50, 8]
    assert [c.path.name for c in chunks] == ["video_0000.mp4", "video_0001.mp4", "video_0002.mp4", "video_0003.mp4"]
    second = mf.read_frames(chunks[1].path)
    assert len(second) == 50 and all(np.array_equal(a, b) for a, b in zip(second, original[50:100]))  # bit exact
    assert mf.video_info(chunks[1].path)["has_audio"]

    region = [280, 40, 544, 304]
    cut = tubes.cut_tube(chunks[1].path, tmp_path / "tube.mp4", 5, 30, region)
    assert (cut.frames, cut.width, cut.height, cut.has_audio) == (26, 264, 264, True)
    frames = mf.read_frames(tmp_path / "tube.mp4")
    assert len(frames) == 26  # S..E inclusive
    expected = [f[40:304, 280:544] for f in original[55:81]]
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, expected)]) < 3.0
    # the audio is the source's audio from frame S on (in sync): compare with the original track
    cut_audio, _ = mf.read_audio(tmp_path / "tube.mp4")
    full_audio, _ = mf.read_audio(source)
    start = 55 * 640
    n = 26 * 640
    assert len(cut_audio) >= n
    lags = range(-320, 321, 16)
    scores = [float(np.dot(cut_audio[:n - 640], full_audio[start + lag : start + lag + n - 640])) for lag in lags]
    assert abs(list(lags)[int(np.argmax(scores))]) <= 32  # within 2 ms
    with pytest.raises(tubes.TubeRangeError, match=r"needs frames 0\.\.20 but the chunk has 8 frames"):
        tubes.cut_tube(chunks[3].path, tmp_path / "late.mp4", 0, 20, region)


def test_fetch_failures_are_classified():
    """Gone for good (404, removed, private) -> unavailable; anything that may work later -> fetch_failed."""
    from yt_dlp.utils import DownloadError, ExtractorError

    assert youtube.classify(ExtractorError("Private video. Sign in if you've been granted access to this video",
                                           expected=True)) == "unavailable"
    assert youtube.classify(ExtractorError("Sign in to confirm your age", expected=True)) == "fetch_failed"
    assert youtube.classify(DownloadError("ERROR: [youtube] x: Video unavailable. This video has been removed by the uploader")) == "unavailable"
    assert youtube.classify(ExtractorError("Sign in to confirm you're not a bot", expected=True)) == "fetch_failed"
    assert youtube.classify(DownloadError("ERROR: unable to download video data: timed out")) == "fetch_failed"


def test_fetch_from_a_closed_port_is_fetch_failed(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fetched = youtube.fetch_video("--Y9imYnfBw", tmp_path / "v.mp4", f"http://127.0.0.1:{port}/watch?v={{id}}", retries=0)
    assert fetched.status == "fetch_failed" and "Connection refused" in fetched.message
    assert not (tmp_path / "v.mp4").exists() and not list(tmp_path.iterdir())  # no partial folder left


def test_missing_yt_dlp_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # what an environment without the package gives
    with pytest.raises(UserError, match=r"yt-dlp is not installed: pip install 'talkdata\[youtube\]'"):
        youtube.require_yt_dlp()


# =========================================================================== TalkingHead-1KH: yt-dlp end to end


class _FakeYouTube(http.server.BaseHTTPRequestHandler):
    """``/watch?v=ID`` -> a registered video (direct mp4 or DASH manifest); anything unknown -> 404."""

    routes: dict[str, tuple[bytes, str]] = {}
    requests: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        route = urllib.parse.parse_qs(url.query).get("v", [""])[0] if url.path == "/watch" else url.path
        type(self).requests.append(route)
        if route not in self.routes:
            self.send_error(404)
            return
        body, content_type = self.routes[route]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _stream_copy(source: Path, target: Path, kind: str) -> bytes:
    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        stream = inp.streams.video[0] if kind == "video" else inp.streams.audio[0]
        mapped = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = mapped
                out.mux(packet)
    return target.read_bytes()


DASH = """<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" type="static"
     mediaPresentationDuration="PT6.3S" minBufferTime="PT1.5S">
  <Period>
    <AdaptationSet mimeType="video/mp4">
      <Representation id="v640" codecs="avc1.64001e" width="640" height="360" frameRate="25" bandwidth="800000">
        <BaseURL>media/{id}.video.mp4</BaseURL>
      </Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4">
      <Representation id="a16k" codecs="mp4a.40.2" audioSamplingRate="16000" bandwidth="64000">
        <BaseURL>media/{id}.audio.m4a</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""

TRAIN_OK = "--Y9imYnfBw"  # ids of the real lists, standing in for their videos
TRAIN_GONE = "-7TMJtnhiPM"
VAL_DASH = "1lSejjfNHpw"
# the face of the stand-in is at (300, 60)-(524, 284) of the 640 x 360 frame; the tube box is 20 px around it,
# written at the lists' reference resolutions (720 x 1280 for train: x2; 1080 x 1920 for val: x3)
TRAIN_TUBES = [
    f"{TRAIN_OK}_0000, 720, 1280, 5, 60, 560, 80, 1088, 608",
    f"{TRAIN_OK}_0000, 720, 1280, 100, 200, 560, 80, 1088, 608",  # the video has 158 frames
    f"{TRAIN_OK}_0001, 720, 1280, 0, 10, 560, 80, 1088, 608",  # a 6 s video has one 60 s chunk
    f"{TRAIN_GONE}_0000, 720, 1280, 0, 30, 560, 80, 1088, 608",  # 404
]
VAL_TUBES = [f"{VAL_DASH}_0000, 1080, 1920, 10, 50, 840, 120, 1632, 912"]


@pytest.fixture(scope="module")
def fake_youtube(tmp_path_factory):
    folder = tmp_path_factory.mktemp("youtube")
    video = _standin_video(folder / "standin.mp4")
    _FakeYouTube.routes = {
        TRAIN_OK: (video.read_bytes(), "video/mp4"),
        VAL_DASH: (DASH.replace("{id}", VAL_DASH).encode(), "application/dash+xml"),
        f"/media/{VAL_DASH}.video.mp4": (_stream_copy(video, folder / "v.mp4", "video"), "video/mp4"),
        f"/media/{VAL_DASH}.audio.m4a": (_stream_copy(video, folder / "a.m4a", "audio"), "audio/mp4"),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeYouTube)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _th_root(home: Path) -> Path:
    root = home / "talkinghead-1kh"
    (root / "data_list").mkdir(parents=True)
    (root / "data_list" / "train_video_tubes.txt").write_text("\n".join(TRAIN_TUBES) + "\n")
    (root / "data_list" / "val_video_tubes.txt").write_text("\n".join(VAL_TUBES))  # no final newline, as the real one
    return root


@pytest.fixture(scope="module")
def th_downloaded(fake_youtube, tmp_path_factory, monkeypatch_module):
    home = tmp_path_factory.mktemp("talkdata-home")
    root = _th_root(home)
    monkeypatch_module.setenv("TALKDATA_HOME", str(home))
    _FakeYouTube.requests.clear()
    result = CliRunner().invoke(main, ["download", "talkinghead-1kh", "--mirror", fake_youtube, "--no-progress"])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_th1kh_download_fetches_chunks_cuts_and_records(th_downloaded):
    root = th_downloaded
    assert (root / "train" / "raw_videos" / f"{TRAIN_OK}.mp4").is_file()
    assert (root / "train" / "1min_clips" / f"{TRAIN_OK}_0000.mp4").is_file()
    train = th.read_ledger(root / "train")
    assert train["videos"][TRAIN_OK]["status"] == "ok" and train["videos"][TRAIN_OK]["chunk_frames"] == [158]
    assert (train["videos"][TRAIN_OK]["width"], train["videos"][TRAIN_OK]["height"]) == (640, 360)
    assert train["videos"][TRAIN_GONE]["status"] == "unavailable" and "404" in train["videos"][TRAIN_GONE]["message"]
    ok = train["tubes"][f"{TRAIN_OK}_0000_S5_E60_L560_T80_R1088_B608"]
    assert (ok["status"], ok["frames"], ok["box"], ok["crop_size"], ok["has_audio"]) == ("ok", 56, [280, 40, 544, 304], [264, 264], True)
    assert train["tubes"][f"{TRAIN_OK}_0000_S100_E200_L560_T80_R1088_B608"]["status"] == "tube_out_of_range"
    assert "chunk 0001 does not exist" in train["tubes"][f"{TRAIN_OK}_0001_S0_E10_L560_T80_R1088_B608"]["message"]
    # val came as separate video and audio formats (bestvideo[ext=mp4]+bestaudio[ext=m4a]), muxed by PyAV
    val = th.read_ledger(root / "val")
    assert val["videos"][VAL_DASH]["formats"] == ["v640", "a16k"]
    tube = root / "val" / "cropped_clips" / f"{VAL_DASH}_0000_S10_E50_L840_T120_R1632_B912.mp4"
    info = mf.video_info(tube)
    assert (info["frames"], info["width"], info["height"], info["has_audio"]) == (41, 264, 264, True)
    assert not list((root / "train" / "raw_videos").glob(".partial-*"))


def test_th1kh_second_download_fetches_nothing_again(th_downloaded, fake_youtube):
    """Once every tube is cut, the raw videos and chunks may be deleted: a re-run fetches nothing."""
    for split in ("train", "val"):
        for folder in ("raw_videos", "1min_clips"):
            for path in (th_downloaded / split / folder).iterdir():
                path.unlink()
    before = len(_FakeYouTube.requests)
    report = th_download.download(parse_recipe((resources.files("talkdata.recipes") / "talkinghead-1kh.toml").read_text(), "t"),
                         th_downloaded, None, fake_youtube)
    assert len(_FakeYouTube.requests) == before  # done videos are on disk, the unavailable one is in the ledger
    assert report.videos == {"ok": 2, "unavailable": 1}
    assert report.tubes == {"ok": 2, "tube_out_of_range": 2, "unavailable": 1}


def test_th1kh_build_turns_failures_into_rejects(th_downloaded, tmp_path):
    out = tmp_path / "th-out"
    report = build("talkinghead-1kh", th_downloaded, out)
    assert report.samples == {"train": 1, "val": 1, "test": 0}
    assert report.rejects == {"tube_out_of_range": 2, "unavailable": 1}
    rejects = {r["key"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    gone = rejects[f"{TRAIN_GONE}/0000_S0_E30_L560_T80_R1088_B608"]
    assert gone["reason"] == "unavailable" and "HTTP Error 404" in gone["message"] and gone["split"] == "train"
    assert "needs frames 100..200 but chunk 0000 has 158" in rejects[f"{TRAIN_OK}/0000_S100_E200_L560_T80_R1088_B608"]["message"]
    samples = samples_of(out)
    train = samples[f"{TRAIN_OK}/0000_S5_E60_L560_T80_R1088_B608"]["meta"]
    assert train["split"] == "train" and train["frames"] == 56 and train["source_size"] == [264, 264]
    assert (train["youtube_id"], train["chunk_index"], train["tube_start_frame"], train["tube_end_frame"]) == (TRAIN_OK, 0, 5, 60)
    assert (train["tube_box"], train["reference_size"], train["youtube_size"]) == ([560, 80, 1088, 608], [1280, 720], [640, 360])
    assert (train["youtube_fps"], train["crop_box"], train["tube_size"], train["tube_margin"]) == (25.0, [280, 40, 544, 304], [264, 264], 0.0)
    assert train["has_audio"] is True and train["audio_samples"] == 56 * 640 and train["audio_padded_s"] == 0.0
    assert train["face_box"] == [0.0, 0.0, 1.0, 1.0]  # the official crop is the box itself
    val = samples[f"{VAL_DASH}/0000_S10_E50_L840_T120_R1632_B912"]["meta"]
    assert (val["split"], val["frames"], val["reference_size"], val["crop_box"]) == ("val", 41, [1920, 1080], [280, 40, 544, 304])
    # the face the build tracked sits inside the tube (source pixels of the 264 x 264 tube)
    boxes = np.load(io.BytesIO(samples[f"{TRAIN_OK}/0000_S5_E60_L560_T80_R1088_B608"]["bbox.npy"]))
    centre = np.median((boxes[:, :2] + boxes[:, 2:]) / 2, axis=0)
    hint = 20 + 224 * np.array(voxceleb2.FACE_BOX)  # where the 224 x 224 clip's face is, 20 px into the tube
    assert np.all(np.abs(centre - (hint[:2] + hint[2:]) / 2) < 25), centre
    schema = load_schema("sample")
    for sample in samples.values():
        jsonschema.validate(sample["meta"], schema)


def test_th1kh_recipe_url_and_margin(fake_youtube, tmp_path):
    """The URL template and tube margin come from the recipe's [youtube] table."""
    text = (resources.files("talkdata.recipes") / "talkinghead-1kh.toml").read_text()
    text = text.replace('url = "https://www.youtube.com/watch?v={id}"', f'url = "{fake_youtube}/watch?v={{id}}"')
    text = text.replace("tube_margin = 0.0", "tube_margin = 0.25")
    recipe = parse_recipe(text, "test recipe")
    root = _th_root(tmp_path)
    report = th_download.download(recipe, root, ["train"], None, limit=1)
    assert report.videos == {"ok": 1}
    # the index: val was never downloaded (left out); the second train video not yet (missing_source)
    records = {r.key: r for r in th.index(root, BuildConfig())}
    assert {r.split for r in records.values()} == {"train"} and len(records) == 4
    pending = records[f"{TRAIN_GONE}/0000_S0_E30_L560_T80_R1088_B608"]
    assert pending.skip == "missing_source" and "talkdata download talkinghead-1kh" in pending.skip_message
    cut = th.read_ledger(root / "train")["tubes"][f"{TRAIN_OK}_0000_S5_E60_L560_T80_R1088_B608"]
    assert (cut["crop_box"], cut["crop_size"]) == ([214, 0, 610, 360], [396, 360])
    assert cut["face_box"] == [0.1667, 0.1111, 0.8333, 0.8444]
    # the face dlib finds in the cut tube lies inside the face box
    frame = mf.read_frames(root / cut["file"], "gray")[0]
    found = FaceDetector(detector_backend("hog"), 32.0).detect(frame)[0].box / [396, 360, 396, 360]
    hint = cut["face_box"]
    assert hint[0] - 0.02 <= found[0] and found[2] <= hint[2] + 0.02 and hint[1] - 0.02 <= found[1] and found[3] <= hint[3] + 0.02
    with pytest.raises(UserError, match=r"--only takes split names \(train, val\), not test"):
        th_download.download(recipe, root, ["test"], None)


@pytest.mark.parametrize("setup, message", [
    ("nothing", "no TalkingHead-1KH tube lists in"),
    ("bad-line", "train_video_tubes.txt:2: 3 fields"),
])
def test_th1kh_download_user_errors(tmp_path, monkeypatch, setup, message):
    monkeypatch.setenv("TALKDATA_HOME", str(tmp_path))
    if setup == "bad-line":
        (tmp_path / "talkinghead-1kh" / "data_list").mkdir(parents=True)
        (tmp_path / "talkinghead-1kh" / "data_list" / "train_video_tubes.txt").write_text(TRAIN_TUBES[0] + "\nnot, a, tube\n")
    assert message in one_line_error(["download", "talkinghead-1kh", "--no-progress"])


def test_th1kh_build_before_download_is_one_clear_line(tmp_path):
    root = _th_root(tmp_path)
    line = one_line_error(["build", "talkinghead-1kh", "--source", str(root), "--out", str(tmp_path / "o")])
    assert "no TalkingHead-1KH video has been fetched" in line and "talkdata download talkinghead-1kh" in line


# =========================================================================== recipes and schema


@pytest.mark.parametrize("name, expected", [
    ("voxceleb2", ["title: VoxCeleb2", "https://cn01.mmai.io/keyreq/voxceleb", "vox2_meta.csv", "dev/mp4/id00012"]),
    ("lrw", ["title: LRW: Lip Reading in the Wild", "BBC R&D data-sharing agreement", "lipread_mp4/ABOUT/train"]),
    ("talkinghead-1kh", ["title: TalkingHead-1KH", "pip install 'talkdata[youtube]'", "talkdata download talkinghead-1kh",
                         "cropped_clips/ID_0000_S0_E271_L504_T63_R792_B351.mp4"]),
])
def test_recipes_describe_the_three_corpora(name, expected):
    result = CliRunner().invoke(main, ["recipes", name])
    assert result.exit_code == 0, result.output
    for field in ("title:", "description:", "license:", "size:", "access:", "layout:"):
        assert f"\n{field}" in "\n" + result.output, field
    for text in expected:
        assert text in result.output, text
    listing = CliRunner().invoke(main, ["recipes"]).output
    assert name in listing


def test_sample_schema_documents_every_corpus_field(vox_source, lrw_source, th_downloaded):
    """Every metadata key the three index modules emit is a documented property of the sample schema."""
    documented = set(load_schema("sample")["properties"])
    emitted = {"txt_word"}  # LRW, only when the txt names another word than its folder
    for module, root in ((voxceleb2, vox_source), (lrw, lrw_source), (th, th_downloaded)):
        for record in module.index(root, BuildConfig()):
            emitted |= set(record.meta)
    assert len(emitted) >= 30 and emitted - documented == set()  # 30: VoxCeleb2 no longer copies track_boxes
    assert {"unavailable", "fetch_failed", "tube_out_of_range"} <= set(REASONS)
