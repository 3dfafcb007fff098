"""Visual quality control: landmark drawing, the one-sample figure, the contact sheet, the dataset
card's figures (deterministic bytes), ``talkdata inspect`` and its HTML page in headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from talkdata.cli import main
from talkdata.pipeline.build import build
from talkdata.figures.charts import duration_histogram, pose_blink_histograms, reject_chart, weighted_median
from talkdata.figures.sheet import LABEL, LABEL_COLUMN, PAD, TILE, TITLE, render_contact_sheet, tile_label
from talkdata.media.mp4_frames import decode_video
from talkdata.qa.contact_sheet import choose_samples, contact_sheet
from talkdata.qa.dataset import index_rows, load_sample, npy, read_fields
from talkdata.figures.render import draw_landmarks, frame_strip, landmark_tile, read_png
from talkdata.qa.sample_figure import layout, render_sample, strip_indices

DATA = Path(__file__).parent / "data"


def all_frames(video: bytes) -> np.ndarray:
    import io

    import av

    with av.open(io.BytesIO(video)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def reach(radius: int) -> float:
    """Farthest a pixel of a landmark disk can be from the landmark: the disk (r^2 + r) plus rounding."""
    return float(np.sqrt(radius * radius + radius) + np.sqrt(0.5))


def distance_to_points(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For every True pixel of ``mask``, the distance to the nearest (x, y) point."""
    ys, xs = np.nonzero(mask)
    pixels = np.stack([xs, ys], axis=1).astype(np.float64)
    return np.sqrt(((pixels[:, None, :] - points[None, :, :]) ** 2).sum(-1)).min(axis=1)


@pytest.fixture(scope="module")
def sample(grid_dataset):
    return load_sample(grid_dataset, "s2/swwp2s")


@pytest.fixture(scope="module")
def strip_frames(sample):
    indices = strip_indices(sample.frames, 8)
    return dict(zip(indices, decode_video(sample.video, indices)))


# ---------------------------------------------------------------- drawing primitives


def test_draw_landmarks_changes_pixels_exactly_around_the_points(sample):
    frame = decode_video(sample.video, [40])[0]
    points = sample.lmk[40]
    drawn = draw_landmarks(frame, points, radius=2)
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert not np.shares_memory(drawn, frame)
    changed = (drawn != frame).any(axis=-1)
    # nothing changes farther than a disk's reach from a landmark
    assert distance_to_points(changed, points).max() <= reach(2)
    # and every landmark left a mark on its own pixel
    centres = np.rint(points).astype(int)
    assert changed[centres[:, 1], centres[:, 0]].all()
    assert 68 * 5 <= changed.sum() <= 68 * 21
    assert (drawn[centres[48:, 1], centres[48:, 0]] == (255, 0, 200)).all()  # lips in magenta


def test_frame_strip_places_scaled_landmarks_on_their_own_tile(sample, strip_frames):
    indices = strip_indices(sample.frames, 8)
    frames = [strip_frames[i] for i in indices]
    points = [sample.lmk[i] for i in indices]
    plain = frame_strip(frames, None, 100)
    marked = frame_strip(frames, points, 100, radius=1)
    assert plain.shape == marked.shape == (100, 800, 3)
    changed = (plain != marked).any(axis=-1)
    for k in range(8):
        scaled = (points[k] + 0.5) * 100 / 256 - 0.5
        tile_changed = changed[:, k * 100:(k + 1) * 100]
        assert tile_changed.sum() > 68
        assert distance_to_points(tile_changed, scaled).max() <= reach(1)
    assert np.array_equal(landmark_tile(frames[0], None, 100), plain[:, :100])


def test_strip_indices_are_slice_centres():
    assert strip_indices(75, 8) == [4, 14, 23, 32, 42, 51, 60, 70]
    assert strip_indices(5, 8) == [0, 1, 2, 3, 4]
    assert strip_indices(1, 8) == [0]


def test_the_video_decoder_returns_the_asked_frames_only(sample):
    every = all_frames(sample.video)
    assert len(every) == sample.frames == 75
    got = decode_video(sample.video, [30, 3])
    assert got.shape == (2, *every[0].shape)
    assert np.array_equal(got[0], every[30]) and np.array_equal(got[1], every[3])
    with pytest.raises(ValueError, match="frame 75 is missing"):
        decode_video(sample.video, [75])


# ---------------------------------------------------------------- the one-sample figure


def test_sample_figure_size_and_strip_shows_the_frames_with_landmarks(sample, strip_frames):
    figure = render_sample(sample, strip_frames)
    width, height, boxes = layout(8)
    assert figure.image.shape == (height, width, 3) and width == 1200
    assert figure.frame_indices == (4, 14, 23, 32, 42, 51, 60, 70)
    x0, y0, x1, y1 = figure.boxes["strip"]
    assert (x1 - x0, y1 - y0) == (8 * 136, 136)
    # every panel shares the strip's time axis
    assert {(b[0], b[2]) for b in figure.boxes.values()} == {(x0, x1)}
    assert figure.time_to_x(0) == x0 and figure.time_to_x(sample.duration) == x1
    # the strip is the frames with landmarks, pixel for pixel (inside the 1-px frame of the axes)
    expected = frame_strip([strip_frames[i] for i in figure.frame_indices],
                           [sample.lmk[i] for i in figure.frame_indices], 136, radius=1)
    assert np.array_equal(figure.image[y0 + 2:y1 - 2, x0 + 2:x1 - 2], expected[2:-2, 2:-2])

    plain = render_sample(sample, strip_frames, landmarks=False)
    changed = (plain.image != figure.image).any(axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 8 * 68
    assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1  # only in the strip
    for k, index in enumerate(figure.frame_indices):
        scaled = (sample.lmk[index] + 0.5) * 136 / 256 - 0.5 + [x0 + 136 * k, y0]
        in_tile = changed.copy()
        in_tile[:, : x0 + 136 * k] = False
        in_tile[:, x0 + 136 * (k + 1):] = False
        assert distance_to_points(in_tile, scaled).max() <= reach(1)


@pytest.mark.parametrize("field, panel", [("blink", "blink"), ("pose", "pose"), ("pca", "pca"),
                                          ("audio", "audio"), ("mfcc", "mfcc")])
def test_sample_figure_changes_in_the_panel_of_the_changed_field(sample, strip_frames, field, panel):
    base = render_sample(sample, strip_frames)
    values = getattr(sample, field)
    changed_sample = dataclasses.replace(sample, **{field: np.roll(values, len(values) // 3, axis=0)})
    changed = (render_sample(changed_sample, strip_frames).image != base.image).any(axis=-1)
    rows = np.nonzero(changed.any(axis=1))[0]
    x0, y0, x1, y1 = base.boxes[panel]
    assert changed[y0:y1, x0:x1].sum() > 200
    assert rows.min() >= y0 - 8 and rows.max() < y1 + 8  # tick labels may stick out a little
    for other, (_, oy0, _, oy1) in base.boxes.items():
        if other != panel:
            assert not changed[oy0 + 8:oy1 - 8].any(), other


# ---------------------------------------------------------------- contact sheet


def test_choose_samples_is_seeded_and_independent_of_row_order():
    rows = [{"key": f"spk{s}/clip{c}", "split": split, "speaker": f"spk{s}"}
            for split, speakers in (("train", range(5)), ("val", [5]), ("test", [6, 7]))
            for s in speakers for c in range(4)]
    chosen = choose_samples(rows, 3, seed=0)
    assert list(chosen) == ["train", "val", "test"]
    assert all(len(group) == 3 for group in chosen.values())
    for split, group in chosen.items():
        keys = [row["key"] for row in group]
        assert keys == sorted(keys) and all(row["split"] == split for row in group)
    assert choose_samples(list(reversed(rows)), 3, seed=0) == chosen
    assert choose_samples(rows, 3, seed=1) != chosen
    assert len(choose_samples(rows, 100)["val"]) == 4


def test_contact_sheet_has_one_labelled_tile_per_chosen_sample(grid_dataset):
    sheet = contact_sheet(grid_dataset)
    rows = index_rows(grid_dataset)
    chosen = choose_samples(rows, 6)
    assert [len(g) for g in chosen.values()] == [1, 1, 1]
    assert sheet.shape == (TITLE + 3 * (LABEL + TILE + PAD), 440, 3)
    files = read_fields(grid_dataset, rows, ("video.mp4", "lmk.npy"))
    for r, group in enumerate(chosen.values()):
        row = group[0]
        top = TITLE + r * (LABEL + TILE + PAD) + LABEL
        frame = all_frames(files[row["key"]]["video.mp4"])[0]
        tile = landmark_tile(frame, npy(files[row["key"]]["lmk.npy"])[0], TILE)
        assert np.array_equal(sheet[top:top + TILE, LABEL_COLUMN:LABEL_COLUMN + TILE], tile), row["key"]
        label_band = sheet[top - LABEL:top, LABEL_COLUMN:LABEL_COLUMN + TILE]
        assert (label_band < 100).all(axis=-1).sum() > 20  # dark text above the tile
    assert tile_label(rows[0]["key"], rows[0]["speaker"]) == f"{rows[0]['key']}\nspeaker {rows[0]['speaker']}"


def test_contact_sheet_labels_and_tiles_follow_their_data():
    tile = np.full((TILE, TILE, 3), 90, dtype=np.uint8)
    one = render_contact_sheet([("train", 5, [(tile, "a/b\nspeaker a"), (tile, "c/d\nspeaker c")])], "t")
    other = render_contact_sheet([("train", 5, [(tile, "a/b\nspeaker a"), (tile, "x/yyyyy\nspeaker x")])], "t")
    assert one.shape == other.shape == (TITLE + LABEL + TILE + PAD, 440, 3)
    changed = (one != other).any(axis=-1)
    ys, xs = np.nonzero(changed)
    second = LABEL_COLUMN + TILE + PAD
    assert xs.min() >= second and xs.max() < second + TILE and ys.max() < TITLE + LABEL  # only that label
    assert (one[TITLE + LABEL:TITLE + LABEL + TILE, LABEL_COLUMN:LABEL_COLUMN + TILE] == 90).all()


# ---------------------------------------------------------------- dataset card


def png_chunks(data: bytes) -> list[str]:
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunks.append(data[at + 4:at + 8].decode("ascii"))
        at += 12 + length
    return chunks


def test_card_embeds_the_figures_and_two_builds_give_the_same_bytes(grid_dataset, tmp_path):
    card = (grid_dataset / "README.md").read_text()
    sizes = {"contact_sheet.png": (654, 440), "durations.png": (300, 640), "pose_blink.png": (280, 960)}
    for name, size in sizes.items():
        assert f"](card/{name})" in card
        data = (grid_dataset / "card" / name).read_bytes()
        assert read_png(data).shape[:2] == size
        assert not {"tEXt", "iTXt", "zTXt", "tIME"} & set(png_chunks(data))
    assert "](card/shape_modes.png)" in card
    assert "rejects.png" not in card and not (grid_dataset / "card" / "rejects.png").exists()  # no rejects here

    again = tmp_path / "grid"
    shutil.copytree(grid_dataset / ".work", again / ".work")  # resume from the per-clip cache
    build("grid", DATA / "grid", again)
    names = sorted(p.name for p in (grid_dataset / "card").iterdir())
    assert names == sorted(p.name for p in (again / "card").iterdir())
    for name in names:
        assert (again / "card" / name).read_bytes() == (grid_dataset / "card" / name).read_bytes(), name
    assert (again / "README.md").read_bytes() == (grid_dataset / "README.md").read_bytes()


def test_card_of_a_build_with_rejects_has_the_reject_chart(tmp_path):
    source = tmp_path / "videos" / "spk"
    source.mkdir(parents=True)
    shutil.copy(DATA / "grid" / "s1" / "bbaf2n.mpg", source / "good.mpg")
    (source / "broken.mp4").write_bytes(bytes(range(256)) * 20)  # not media at all
    out = tmp_path / "out"
    build("videos", tmp_path / "videos", out)
    assert pq.read_table(out / "rejects.parquet").column("reason").to_pylist() == ["unreadable"]
    card = (out / "README.md").read_text()
    assert "## Rejected clips" in card and "](card/rejects.png)" in card
    chart = read_png((out / "card" / "rejects.png").read_bytes())
    assert chart.shape == (90 + 26, 640, 3)
    assert np.array_equal(chart, reject_chart({"unreadable": 1}))


def test_card_charts_change_with_their_data():
    one = reject_chart({"no_face": 3})
    two = reject_chart({"no_face": 3, "too_short": 1})
    assert one.shape == (116, 640, 3) and two.shape == (142, 640, 3)
    assert not np.array_equal(reject_chart({"no_face": 4}), one)

    equal = duration_histogram({"train": {3.0: 2}, "test": {3.0: 1}})  # {split: {duration: clips}}
    spread = duration_histogram({"train": {2.0: 1, 3.0: 1, 5.5: 1}, "test": {3.0: 1}})
    assert equal.shape == spread.shape == (300, 640, 3) and not np.array_equal(equal, spread)

    rng = np.random.default_rng(0)
    pose, blink = rng.normal(0, 5, (500, 3)), rng.uniform(0.1, 0.4, 500)
    base = pose_blink_histograms(pose, blink, 3, 3)
    assert base.shape == (280, 960, 3)
    assert np.array_equal(base, pose_blink_histograms(pose, blink, 3, 3))
    moved = pose.copy()
    moved[:, 2] += 20  # roll only: the roll panel changes, yaw's does not
    diff = (pose_blink_histograms(moved, blink, 3, 3) != base).any(axis=-1)
    assert diff[:, 480:720].any() and not diff[40:, :220].any()


# ---------------------------------------------------------------- command line


def test_cli_inspect_writes_sample_png_and_contact_sheet(grid_dataset, sample, strip_frames, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["inspect", str(grid_dataset), "--key", "s2/swwp2s", "--png", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert "s2/swwp2s" in result.output and "1200x" in result.output
    image = read_png((tmp_path / "s.png").read_bytes())
    assert np.array_equal(image, render_sample(sample, strip_frames).image)

    result = runner.invoke(main, ["inspect", str(grid_dataset), "--key", "s2/swwp2s", "--frames", "4",
                                  "--png", str(tmp_path / "s4.png")])
    assert result.exit_code == 0 and "frames 9, 28, 46, 65 of 75" in result.output
    assert read_png((tmp_path / "s4.png").read_bytes()).shape[1] == 84 + 4 * 272 + 28

    for name in ("a.png", "b.png"):
        result = runner.invoke(main, ["inspect", str(grid_dataset), "--png", str(tmp_path / name)])
        assert result.exit_code == 0 and "contact sheet" in result.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (grid_dataset / "card" / "contact_sheet.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--key", "s2/swwp", "--png", "x.png"], "no sample with key 's2/swwp' in"),
    (["--key", "s2/swwp", "--png", "x.png"], "did you mean s2/swwp2s?"),
    (["--key", "s2/swwp2s"], "nothing to write"),
    (["--html", "x.html"], "--html needs --key"),
])
def test_cli_inspect_bad_input_is_one_line_exit_2(grid_dataset, tmp_path, args, message):
    args = [str(tmp_path / a) if a.endswith((".png", ".html")) else a for a in args]
    result = CliRunner().invoke(main, ["inspect", str(grid_dataset), *args])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_inspect_on_a_folder_that_is_not_a_dataset(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        result = CliRunner().invoke(main, ["inspect", str(folder), "--png", str(tmp_path / "x.png")])
        assert result.exit_code == 2 and str(folder) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert "is not a talkdata dataset folder" in CliRunner().invoke(
        main, ["inspect", str(tmp_path), "--png", str(tmp_path / "x.png")]).stderr
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- the HTML page in headless Chromium


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    reason = "no Chromium found: install Debian's package (apt-get install chromium), as .ci/run does"
    if os.environ.get("TALKDATA_CI"):  # CI installs Chromium: there, a missing browser is a failure
        pytest.fail(reason)
    pytest.skip(reason)


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    JSON messages separated by NUL bytes, browser reads fd 3 and writes fd 4). Its profile is the
    test's folder ``profile``."""

    def __init__(self, profile: Path):
        import fcntl

        profile.mkdir()
        self.profile = str(profile)
        to_browser, self._write_end = os.pipe()
        self._read_end, from_browser = os.pipe()
        # move the child's ends above 9 so the shell can place them at 3 and 4 whatever their numbers
        child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
        os.close(to_browser)
        os.close(from_browser)
        args = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "--no-first-run", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", "about:blank"]
        self.log = open(Path(self.profile) / "stderr.log", "wb")
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-', "bash", *args],
            pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._id = 0
        self.session = None

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write_end, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read_end], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read_end, 1 << 20)
            if not chunk:
                self.log.flush()
                raise RuntimeError("Chromium exited: " + (Path(self.profile) / "stderr.log").read_text()[-2000:])
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str, timeout: float = 30.0):
        """Value of a JS expression (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True, "timeout": timeout * 1000}, timeout + 5)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("exception", {}).get("description", result))
        return result["result"].get("value")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write_end)
        os.close(self._read_end)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


WAIT_FOR = """new Promise((resolve, reject) => {{
  const start = performance.now();
  (function poll() {{
    if ({condition}) resolve(true);
    else if (performance.now() - start > {ms}) reject(new Error("timed out waiting for: {condition}"));
    else setTimeout(poll, 20);
  }})();
}})"""

SHOWN_FRAME = """(() => {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
})()"""

SEEK_WITH_SLIDER = """new Promise((resolve, reject) => {{
  setTimeout(() => reject(new Error("the video did not seek after the slider moved to {frame}")), 10000);
  video.addEventListener("seeked", () => requestAnimationFrame(() => resolve(true)), {{once: true}});
  slider.value = {frame};
  slider.dispatchEvent(new Event("input", {{bubbles: true}}));
}})"""


def data_url_image(url: str) -> np.ndarray:
    return read_png(base64.b64decode(url.split(",", 1)[1]))


def test_html_page_plays_the_clip_and_the_slider_moves_the_frame(grid_dataset, sample, tmp_path):
    page = tmp_path / "sample.html"
    result = CliRunner().invoke(main, ["inspect", str(grid_dataset), "--key", "s2/swwp2s", "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    inline = re.sub(r"data:[a-z0-9/.+-]+;base64,[A-Za-z0-9+/=]+", "INLINE", text)
    assert re.findall(r'src="([^"]*)"', inline) == ["INLINE", "INLINE"]  # self-contained: video and figure
    assert "http" not in inline and "file:" not in inline and "href" not in inline
    frames = all_frames(sample.video)

    browser = Chromium(tmp_path / "chromium-profile")
    try:
        browser.open(page.as_uri())
        browser.evaluate(WAIT_FOR.format(condition="typeof video !== 'undefined' && video.readyState >= 2",
                                         ms=20000))
        state = browser.evaluate("({error: video.error && video.error.message, duration: video.duration,"
                                 " width: video.videoWidth, height: video.videoHeight, label: label.textContent})")
        assert state["error"] is None
        assert abs(state["duration"] - sample.frames / 25) < 1.5 / 25
        assert (state["width"], state["height"]) == (256, 256)
        assert state["label"].startswith("frame 0 / 74")

        shown = {}
        for frame in (48, 24):  # frames where the mouth moves: neighbours differ
            browser.evaluate(SEEK_WITH_SLIDER.format(frame=frame))
            seen = browser.evaluate("({time: video.currentTime, label: label.textContent, cursor: cursor.style.left,"
                                    " slider: Number(slider.value)})")
            assert int(seen["time"] * 25) == frame and seen["slider"] == frame
            assert seen["label"].startswith(f"frame {frame} / 74")
            shown[frame] = (data_url_image(browser.evaluate(SHOWN_FRAME)), seen["cursor"])
            # compare around the mouth, where neighbouring frames differ most
            (left, top), (right, bottom) = sample.lmk[frame, 48:].min(0) - 12, sample.lmk[frame, 48:].max(0) + 12
            box = np.s_[:, int(top):int(bottom), int(left):int(right)]
            error = np.abs(frames[box].astype(np.int16) - shown[frame][0][None][box]).mean(axis=(1, 2, 3))
            assert int(np.argmin(error)) == frame, error.round(1)  # the page shows exactly that frame
            assert error[frame] < 3
        assert shown[48][1] != shown[24][1]  # the figure's time cursor moved
        assert not np.array_equal(shown[48][0], shown[24][0])

        # the landmark overlay shows frame 24's points, and nothing far from them
        overlay = data_url_image(browser.evaluate("overlay.toDataURL('image/png')"))
        drawn = overlay.any(axis=-1)
        assert distance_to_points(drawn, sample.lmk[24] + 0.5).max() <= 3.5
        assert drawn.sum() > 68 * 4
        browser.evaluate("showLandmarks.click(), true")
        assert not data_url_image(browser.evaluate("overlay.toDataURL('image/png')")).any()
        browser.evaluate("showLandmarks.click(), true")

        # playing moves time forward, and the slider follows the playing video
        browser.evaluate("video.play().then(() => true)")
        browser.evaluate(WAIT_FOR.format(condition="video.currentTime > 1.6", ms=20000))
        browser.evaluate("video.pause(), true")
        browser.evaluate(WAIT_FOR.format(condition="Math.abs(Number(slider.value) - Math.floor(video.currentTime "
                                                   "* 25)) <= 1", ms=5000))
        assert browser.evaluate("Number(slider.value)") >= 39  # it was at frame 24 before playing
    finally:
        browser.close()


def test_card_of_a_build_without_a_shape_model_drops_an_earlier_shape_figure(tmp_path):
    from talkdata.pipeline.card import write_card
    from talkdata.pipeline.pack_stats import PackStats

    stale = tmp_path / "card" / "shape_modes.png"
    stale.parent.mkdir()
    stale.write_bytes(b"an earlier build's figure")
    manifest = {"version": "v1", "splits": {"train": {"samples": 0}}, "audio_features": [],
                "rejects": {"count": 0, "by_reason": {}},
                "recipe": {"title": "t", "license": "CC BY 4.0", "description": "d", "homepage": None}}
    write_card(tmp_path, manifest, PackStats(), shape_model=None)
    assert not stale.exists()
    card = (tmp_path / "README.md").read_text()
    assert "shape_modes.png" not in card and "- samples: 0 (train 0)" in card
