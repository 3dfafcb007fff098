"""One sample as a small self-contained HTML page: the clip playable with its sound, the landmarks
drawn over the video, a frame slider, and the inspection figure with a cursor at the current time.

Everything is inlined (``data:`` URLs, inline script and style): the page can be mailed or opened
from any folder. The video is the sample's own H.264 stream, copied without re-encoding into an
mp4 together with the audio (AAC, encoded here only for the page), so what plays is exactly the
frames of ``video.mp4``. The slider seeks to the middle of frame ``i`` (``(i + 0.5) / fps``), so
the frame shown is frame ``i`` whatever the browser's rounding.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np

from .dataset import Sample
from ..figures.render import png_bytes
from .sample_figure import SampleFigure


def video_with_audio(video: bytes, audio: np.ndarray, sample_rate: int) -> bytes:
    """mp4 bytes with the video stream of ``video`` copied as is and ``audio`` encoded as AAC."""
    import av

    buffer = io.BytesIO()
    with av.open(io.BytesIO(video)) as source, av.open(buffer, "w", format="mp4") as target:
        video_in = source.streams.video[0]
        video_out = target.add_stream_from_template(video_in)
        audio_out = target.add_stream("aac", rate=sample_rate, layout="mono")
        for packet in source.demux(video_in):
            if packet.dts is None:  # the flush packet
                continue
            packet.stream = video_out
            target.mux(packet)
        samples = np.asarray(audio, dtype=np.float32)
        step = 1024
        for start in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + step], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            target.mux(audio_out.encode(frame))
        target.mux(audio_out.encode(None))
    return buffer.getvalue()


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _script_json(value) -> str:
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 8px; }}
table.meta td {{ padding: 1px 10px 1px 0; font-size: 13px; vertical-align: top; }}
#player {{ position: relative; width: {size}px; height: {size}px; margin: 10px 0; background: #000; }}
#player video, #player canvas {{ position: absolute; left: 0; top: 0; width: {size}px; height: {size}px; }}
#player canvas {{ pointer-events: none; }}
.controls {{ display: flex; align-items: center; gap: 12px; font-size: 13px; margin-bottom: 12px; }}
#frame {{ width: {slider}px; }}
#figure {{ position: relative; display: inline-block; max-width: 100%; }}
#figure img {{ display: block; max-width: 100%; }}
#cursor {{ position: absolute; width: 1px; background: #e00; pointer-events: none; }}
#error {{ color: #b00; font-weight: bold; }}
</style>
</head>
<body>
<h1>{title}</h1>
<table class="meta">{meta}</table>
<div id="player">
<video id="video" controls preload="auto" playsinline src="{video}"></video>
<canvas id="overlay" width="{size}" height="{size}"></canvas>
</div>
<p id="error"></p>
<div class="controls">
<input type="range" id="frame" min="0" max="{last}" step="1" value="0" aria-label="frame">
<span id="label"></span>
<label><input type="checkbox" id="show-landmarks" checked> landmarks</label>
</div>
<div id="figure"><img id="figure-image" alt="{title}: frames, pose, blink, PCA codes, audio and MFCC on one time axis" src="{figure}"><div id="cursor"></div></div>
<script>
"use strict";
const FPS = {fps};
const FRAMES = {frames};
const LANDMARKS = {landmarks};
const AXIS = {axis};
const video = document.getElementById("video");
const slider = document.getElementById("frame");
const label = document.getElementById("label");
const overlay = document.getElementById("overlay");
const showLandmarks = document.getElementById("show-landmarks");
const cursor = document.getElementById("cursor");
const context = overlay.getContext("2d");
const COLOURS = {colours};
let current = -1;

function frameAt(seconds) {{
  return Math.max(0, Math.min(FRAMES - 1, Math.floor(seconds * FPS + 1e-6)));
}}

function show(frame) {{
  current = frame;
  slider.value = frame;
  label.textContent = "frame " + frame + " / " + (FRAMES - 1) + "  (" + (frame / FPS).toFixed(3) + " s)";
  context.clearRect(0, 0, overlay.width, overlay.height);
  if (showLandmarks.checked) {{
    const points = LANDMARKS[frame];
    for (let p = 0; p < points.length; p += 2) {{
      context.fillStyle = COLOURS[p / 2];
      context.beginPath();
      context.arc(points[p] + 0.5, points[p + 1] + 0.5, 2, 0, 2 * Math.PI);  // pixel centres
      context.fill();
    }}
  }}
  const x = AXIS.x0 + (AXIS.x1 - AXIS.x0) * (frame + 0.5) / FRAMES;
  cursor.style.left = (100 * x) + "%";
  cursor.style.top = (100 * AXIS.y0) + "%";
  cursor.style.height = (100 * (AXIS.y1 - AXIS.y0)) + "%";
}}

slider.addEventListener("input", () => {{
  const frame = Number(slider.value);
  video.pause();
  video.currentTime = (frame + 0.5) / FPS;
  show(frame);
}});
showLandmarks.addEventListener("change", () => show(Math.max(current, 0)));
video.addEventListener("seeked", () => show(frameAt(video.currentTime)));
video.addEventListener("error", () => {{
  document.getElementById("error").textContent = "this browser cannot play the clip (H.264 + AAC in mp4): " +
    (video.error ? video.error.message || ("media error " + video.error.code) : "unknown error");
}});
function follow(now, metadata) {{
  show(frameAt(metadata.mediaTime));
  video.requestVideoFrameCallback(follow);
}}
if ("requestVideoFrameCallback" in video) {{
  video.requestVideoFrameCallback(follow);
}} else {{
  video.addEventListener("timeupdate", () => show(frameAt(video.currentTime)));
}}
show(0);
</script>
</body>
</html>
"""


def sample_html(sample: Sample, figure: SampleFigure, video: bytes | None = None) -> str:
    """The page for ``sample`` (``video``: the mp4 to embed, by default the clip with its audio)."""
    from ..figures.render import landmark_colours

    if video is None:
        video = video_with_audio(sample.video, sample.audio, sample.sample_rate)
    size = int(sample.meta.get("crop_size") or 256)
    height, width = figure.image.shape[:2]
    x0, y0, x1, _ = figure.boxes["strip"]
    y1 = figure.boxes[list(figure.boxes)[-1]][3]
    axis = {"x0": x0 / width, "x1": x1 / width, "y0": y0 / height, "y1": y1 / height}
    landmarks = [[round(float(v), 1) for v in frame.reshape(-1)] for frame in sample.lmk]
    colours = ["#%02x%02x%02x" % tuple(int(c) for c in colour) for colour in landmark_colours()]
    meta = sample.meta
    rows = [("split", meta.get("split")), ("speaker", meta.get("speaker")), ("clip", meta.get("clip")),
            ("frames", f"{sample.frames} at {sample.fps:g} fps = {sample.duration:.2f} s"),
            ("audio", f"{len(sample.audio)} samples at {sample.sample_rate} Hz"),
            ("source", (meta.get("source") or {}).get("path")), ("transcript", meta.get("transcript"))]
    meta_html = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>"
                        for name, value in rows if value not in (None, ""))
    return PAGE.format(
        title=html.escape(sample.key), meta=meta_html, size=size, slider=max(size, 400), last=sample.frames - 1,
        video=_data_url("video/mp4", video), figure=_data_url("image/png", png_bytes(figure.image)),
        fps=_script_json(sample.fps), frames=sample.frames, landmarks=_script_json(landmarks),
        axis=_script_json(axis), colours=_script_json(colours),
    )
