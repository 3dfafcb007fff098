"""Tests for talkdata.audio.deepspeech (the VOCA / FACIAL DeepSpeech feature pipeline) and the loader's
interpolation and windowing of its 50 Hz logits (talkdata.loader.windows).

The real DeepSpeech v0.1.0 weights are not available here, so the acoustic model is replaced by
small linear ONNX (and, when TensorFlow is installed, frozen TF) graphs with exactly the
DeepSpeech tensor interface: ``logits = inputs @ W + b``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from talkdata.audio import deepspeech as ds  # noqa: E402
from talkdata.errors import UserError  # noqa: E402
from talkdata.loader.windows import deepspeech_steps, facial_window_view, logits_at_fps  # noqa: E402

GRID_CLIP = Path(__file__).parent / "data" / "grid" / "s1" / "bbaf2n.mpg"
HAVE_TF = importlib.util.find_spec("tensorflow") is not None

rng_weights = np.random.default_rng(1234)
W = rng_weights.normal(0.0, 0.05, size=(494, 29)).astype(np.float32)
B = rng_weights.normal(0.0, 0.5, size=(29,)).astype(np.float32)


# --------------------------------------------------------------------------- helpers


def _linear_onnx(
    path: Path,
    windowed: bool = True,
    input_name: str = "input_node",
    output_name: str = "logits",
) -> Path:
    """ONNX graph with the DeepSpeech interface computing ``reshape(x, (n, 494)) @ W + b``."""
    node_shape = ["n", 19, 26] if windowed else ["n", 494]
    inputs = [
        helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, *node_shape]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT32, [1]),
    ]
    output = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["n", 1, 29])
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(B, "b"),
        numpy_helper.from_array(np.array([-1, 494], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([-1, 1, 29], np.int64), "out_shape"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["xwb"]),
        # use input_lengths (times zero) so the graph really consumes both inputs
        helper.make_node("Cast", ["input_lengths"], ["len_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["len_f", "zero"], ["len_zero"]),
        helper.make_node("Add", ["xwb", "len_zero"], ["y"]),
        helper.make_node("Reshape", ["y", "out_shape"], [output_name]),
    ]
    graph = helper.make_graph(nodes, "linear_deepspeech", inputs, [output], inits)
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime releases too
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model(tmp_path: Path) -> ds.DeepSpeechModel:
    return ds.OnnxDeepSpeech(str(_linear_onnx(tmp_path / "model.onnx")))


def _decode_audio(path: Path) -> np.ndarray:
    """Decode a media file's audio to 16 kHz mono float32 with PyAV."""
    import av

    chunks = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    assert GRID_CLIP.is_file(), f"test clip missing: {GRID_CLIP}"
    return _decode_audio(GRID_CLIP)


def _pcm(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as the PCM16 samples a wav stores (rounded, clipped)."""
    return np.clip(np.round(audio.astype(np.float64) * 32767), -32768, 32767).astype(np.int16)


def _reference_inputs(pcm: np.ndarray) -> np.ndarray:
    """Independent, loop-based version of VOCA's audioToInputVector (utils/audio_handler.py:58-88)."""
    from python_speech_features import mfcc

    frames = mfcc(pcm, samplerate=16000, numcep=26)[::2]
    n = len(frames)
    rows = np.zeros((n, 494))
    for i in range(n):
        for k, j in enumerate(range(i - 9, i + 10)):
            if 0 <= j < n:
                rows[i, k * 26:(k + 1) * 26] = frames[j]
    return (rows - rows.mean()) / rows.std()


def _expected_steps(n_samples: int) -> int:
    """50 Hz step count of python_speech_features framing (400-sample frames every 160)."""
    n100 = 1 if n_samples <= 400 else 1 + math.ceil((n_samples - 400) / 160)
    return math.ceil(n100 / 2)


def _manual_interp(x: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Linear interpolation written out with floor/ceil weights (held past the last step)."""
    out = np.zeros((n_frames, x.shape[1]))
    last = len(x) - 1
    for t in range(n_frames):
        pos = t / fps * 50.0
        lo, hi = math.floor(pos), math.ceil(pos)
        if lo >= last:
            out[t] = x[last]
        elif lo == hi:
            out[t] = x[lo]
        else:
            w = pos - lo
            out[t] = (1 - w) * x[lo] + w * x[hi]
    return out


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("seconds", [3.0, 2.37, 0.5])
def test_shapes_and_step_count(model: ds.DeepSpeechModel, seconds: float) -> None:
    pcm = _pcm(np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * 16000)))
    inputs = ds.audio_to_inputs(pcm)
    assert inputs.shape == (_expected_steps(len(pcm)), 494) and deepspeech_steps(len(pcm)) == len(inputs)
    assert inputs.dtype == np.float32
    logits = ds.deepspeech_logits(pcm, model)
    assert logits.shape == (len(inputs), 29)  # the model's native 50 Hz steps
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_inputs_are_the_stored_int16_samples(speech: np.ndarray) -> None:
    with pytest.raises(ValueError, match="int16"):
        ds.audio_to_inputs(speech)  # float audio: which rounding to PCM16 is ambiguous, so refused


def test_audio_to_inputs_matches_reference_on_speech(speech: np.ndarray) -> None:
    assert 2.5 < len(speech) / 16000 < 3.5  # a GRID sentence is 3 s
    inputs = ds.audio_to_inputs(_pcm(speech))
    expected = _reference_inputs(_pcm(speech))
    assert inputs.shape == expected.shape == (_expected_steps(len(speech)), 494)
    np.testing.assert_allclose(inputs, expected, rtol=1e-5, atol=1e-5)
    # global (not per-column) z-score
    assert abs(float(inputs.mean())) < 1e-4
    assert abs(float(inputs.std()) - 1.0) < 1e-4
    assert np.std(inputs.mean(axis=0)) > 0.1


def test_context_rows_are_neighbouring_frames(speech: np.ndarray) -> None:
    windows = ds.audio_to_inputs(_pcm(speech)).reshape(-1, 19, 26)
    # row i, window slot 9 + d is frame i + d: the same frame seen from neighbouring rows
    for i in range(20, 30):
        for d in range(-9, 10):
            np.testing.assert_array_equal(windows[i, 9 + d], windows[i + d, 9])
    # zero context before the first frame, z-scored like everything else
    assert np.ptp(windows[0, :9]) == 0


def test_silence_does_not_divide_by_zero() -> None:
    inputs = ds.audio_to_inputs(np.zeros(16000, np.int16))
    assert np.isfinite(inputs).all()


@pytest.mark.parametrize("windowed", [True, False], ids=["19x26", "494"])
@pytest.mark.parametrize("output_name", ["logits", "deepspeech/logits:0"])
def test_onnx_logits_equal_numpy(
    tmp_path: Path, speech: np.ndarray, windowed: bool, output_name: str
) -> None:
    path = _linear_onnx(tmp_path / "m.onnx", windowed=windowed, output_name=output_name)
    model = ds.OnnxDeepSpeech(str(path))
    assert model.windowed is windowed
    inputs = ds.audio_to_inputs(_pcm(speech))
    logits = model.logits(inputs)
    assert logits.shape == (len(inputs), 29)
    np.testing.assert_allclose(logits, inputs.astype(np.float64) @ W + B, atol=1e-4)
    np.testing.assert_array_equal(ds.deepspeech_logits(_pcm(speech), model), logits)


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_interpolation_matches_manual(fps: int) -> None:
    x = np.random.default_rng(fps).normal(size=(101, 29))
    n_frames = round(101 / 50 * fps) + 3  # a few frames past the last step: held
    out = logits_at_fps(x, n_frames, fps)
    assert out.shape == (n_frames, 29) and out.dtype == np.float32
    np.testing.assert_allclose(out, _manual_interp(x, n_frames, fps), atol=1e-5)
    # VOCA's interpolate_features (utils/audio_handler.py:26-39): np.interp channel by channel
    voca = np.stack([np.interp(np.arange(n_frames) / float(fps), np.arange(101) / 50.0, x[:, c])
                     for c in range(29)], axis=1)
    np.testing.assert_array_equal(out, voca.astype(np.float32))
    if fps == 25:  # every video frame falls on a 50 Hz step
        np.testing.assert_allclose(out[:51], x[::2], atol=1e-6)


def test_logits_move_with_the_audio(model: ds.DeepSpeechModel, speech: np.ndarray) -> None:
    k = 10  # 50 Hz steps (320 samples each)
    base = ds.deepspeech_logits(_pcm(speech), model)
    moved = ds.deepspeech_logits(_pcm(np.concatenate([np.zeros(k * 320, np.float32), speech])), model)
    n = len(base)
    # the global z-score changes, so compare shapes of the curves, away from the edges
    middle = slice(16, n - 16)
    a, b = base[middle], moved[k:][middle]
    for channel in range(29):
        assert np.corrcoef(a[:, channel], b[:, channel])[0, 1] > 0.99, channel
    # the lag that best aligns the two versions of a feature channel is k steps
    channel = int(np.argmax(base.std(axis=0)))
    ref = base[middle, channel]
    scores = [
        np.corrcoef(ref, moved[middle.start + lag:middle.stop + lag, channel])[0, 1]
        for lag in range(0, 2 * k + 1)
    ]
    assert int(np.argmax(scores)) == k


@pytest.mark.parametrize("stride", [1, 2])
def test_facial_windows_match_facial_code(stride: int) -> None:
    features = np.random.default_rng(3).normal(size=(41, 29)).astype(np.float32)
    windows = facial_window_view(features, stride=stride)
    # FACIAL audio2face/_utils/audio_handler.py:140-144: 8 zero rows each side, range(0, len - 16, stride)
    padded = np.concatenate((np.zeros((8, 29)), features, np.zeros((8, 29))))
    expected = np.array([padded[j:j + 16] for j in range(0, len(padded) - 16, stride)])
    assert windows.shape == ((41 + stride - 1) // stride, 16, 29) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows, expected)
    np.testing.assert_array_equal(windows[:, 8], features[::stride])
    assert not windows[0, :8].any()


# --------------------------------------------------------------------------- loading / errors


def test_load_caches_per_path(tmp_path: Path) -> None:
    path = _linear_onnx(tmp_path / "cached.onnx")
    first = ds.load_deepspeech(path)
    assert isinstance(first, ds.OnnxDeepSpeech)
    assert ds.load_deepspeech(str(path)) is first


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "model.onnx"
    with pytest.raises(UserError) as err:
        ds.load_deepspeech(path)
    message = str(err.value)
    assert message.startswith(f"DeepSpeech model not found: {path}")
    assert "audio.deepspeech_model" in message and "\n" not in message


@pytest.mark.parametrize(
    "kwargs", [{"input_name": "x"}, {"output_name": "probs"}], ids=["input-x", "output-probs"]
)
def test_wrong_onnx_graph(tmp_path: Path, kwargs: dict) -> None:
    path = _linear_onnx(tmp_path / "wrong.onnx", **kwargs)
    with pytest.raises(UserError) as err:
        ds.load_deepspeech(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for expected in (
        "'input_node' (1, n_steps, 494) or (1, n_steps, 19, 26) float32",
        "'input_lengths' (1,) int32",
        "'logits' (n_steps, 1, 29)",
    ):
        assert expected in message
    assert f"'{next(iter(kwargs.values()))}'" in message  # what was found is listed


def test_wrong_onnx_shape(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("input_node", TensorProto.FLOAT, [1, "n", 13, 26])
    lengths = helper.make_tensor_value_info("input_lengths", TensorProto.INT32, [1])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 1, 29])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_node"], ["logits"])], "bad", [x, lengths], [y]
    )
    path = _save(graph, tmp_path / "bad_shape.onnx")
    with pytest.raises(UserError, match=r"bad 'input_node'.*found inputs \['input_node' \(1, n, 13, 26\)"):
        ds.OnnxDeepSpeech(str(path))


def test_corrupt_and_unknown_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(UserError, match="onnxruntime cannot load it"):
        ds.load_deepspeech(corrupt)
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match=r"\.onnx.*\.pb"):
        ds.load_deepspeech(other)


@pytest.mark.skipif(HAVE_TF, reason="TensorFlow is installed")
def test_pb_without_tensorflow(tmp_path: Path) -> None:
    path = tmp_path / "output_graph.pb"
    path.write_bytes(b"\x00")
    with pytest.raises(UserError, match=r"pip install talkdata\[deepspeech\]"):
        ds.load_deepspeech(path)


def _frozen_tf_graph(path: Path, windowed: bool) -> Path:
    """A frozen TF1 graph with DeepSpeech's tensor names computing ``x @ W + b``."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf1.Graph()
    with graph.as_default():
        shape = [1, None, 19, 26] if windowed else [1, None, 494]
        x = tf1.placeholder(tf.float32, shape, name="input_node")
        tf1.placeholder(tf.int32, [1], name="input_lengths")
        flat = tf.reshape(x, [-1, 494])
        y = tf.matmul(flat, tf.constant(W)) + tf.constant(B)
        tf.reshape(y, [-1, 1, 29], name="logits")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


@pytest.mark.skipif(not HAVE_TF, reason="TensorFlow is not installed")
@pytest.mark.parametrize("windowed", [True, False], ids=["19x26", "494"])
def test_tensorflow_frozen_graph(tmp_path: Path, speech: np.ndarray, windowed: bool) -> None:
    path = _frozen_tf_graph(tmp_path / "output_graph.pb", windowed)
    model = ds.load_deepspeech(path)
    assert isinstance(model, ds.TensorFlowDeepSpeech) and model.windowed is windowed
    inputs = ds.audio_to_inputs(_pcm(speech))
    np.testing.assert_allclose(model.logits(inputs), inputs.astype(np.float64) @ W + B, atol=1e-4)


@pytest.mark.skipif(not HAVE_TF, reason="TensorFlow is not installed")
def test_tensorflow_wrong_graph(tmp_path: Path) -> None:
    import tensorflow as tf

    graph = tf.compat.v1.Graph()
    with graph.as_default():
        tf.compat.v1.placeholder(tf.float32, [1, None, 494], name="x")
    path = tmp_path / "wrong.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(UserError, match="'input_node'"):
        ds.load_deepspeech(path)
