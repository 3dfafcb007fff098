"""DeepSpeech v0.1.0 acoustic model backends: (N, 494) inputs -> (N, 29) logits.

The model is either an ONNX export (:class:`OnnxDeepSpeech`, onnxruntime on CPU) or the original
frozen graph ``output_graph.pb`` (:class:`TensorFlowDeepSpeech`, needs the optional
``talkdata[deepspeech]`` extra). The v0.1.0 graph takes ``input_node`` of shape (1, n_steps, 494)
and ``input_lengths`` (1,) int32 and returns ``logits`` of shape (n_steps, 1, 29) (time-major);
exports that take the windowed layout (1, n_steps, 19, 26), as later DeepSpeech releases do, are
accepted as well: it is the same data, reshaped. The logits are raw (no softmax): 28 characters
and the CTC blank.
"""

from __future__ import annotations

import abc
import os
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from talkdata.errors import UserError

from .features import INPUT_SIZE, NUM_CEP, NUM_CLASSES, WINDOW_STEPS

INPUT_NAME = "input_node"
LENGTHS_NAME = "input_lengths"
OUTPUT_NAME = "logits"
_TF_SCOPE = "deepspeech"  # VOCA imports the frozen graph under this name scope

_EXPECTED = (
    f"expected inputs '{INPUT_NAME}' (1, n_steps, {INPUT_SIZE}) or "
    f"(1, n_steps, {WINDOW_STEPS}, {NUM_CEP}) float32 and '{LENGTHS_NAME}' (1,) int32 "
    f"and output '{OUTPUT_NAME}' (n_steps, 1, {NUM_CLASSES})"
)


# --------------------------------------------------------------------------- models


class DeepSpeechModel(abc.ABC):
    """A DeepSpeech v0.1.0 acoustic model: (N, 494) inputs -> (N, 29) logits."""

    def __init__(self, path: str, windowed: bool):
        self.path = path
        #: True if the graph takes (1, n, 19, 26) inputs, False for v0.1.0's (1, n, 494).
        self.windowed = windowed

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Run the model on (N, 494) inputs; returns (N, 29) float32 logits."""
        inputs = np.asarray(inputs, dtype=np.float32)
        if inputs.ndim != 2 or inputs.shape[1] != INPUT_SIZE:
            raise ValueError(f"expected (N, {INPUT_SIZE}) inputs, got shape {inputs.shape}")
        shape = (1, len(inputs), WINDOW_STEPS, NUM_CEP) if self.windowed else (1, *inputs.shape)
        lengths = np.array([len(inputs)], dtype=np.int32)
        out = np.asarray(self._run(inputs.reshape(shape), lengths))
        if out.shape != (len(inputs), 1, NUM_CLASSES):
            raise UserError(
                f"DeepSpeech model {self.path}: output '{OUTPUT_NAME}' has shape {out.shape} "
                f"for {len(inputs)} steps, expected ({len(inputs)}, 1, {NUM_CLASSES})"
            )
        return out[:, 0, :].astype(np.float32)

    @abc.abstractmethod
    def _run(self, input_node: np.ndarray, input_lengths: np.ndarray) -> np.ndarray:
        """Feed ``input_node`` and ``input_lengths``; return the raw (n, 1, 29) logits."""


@dataclass(frozen=True)
class _Tensor:
    """Name, shape (ints, or None/str for symbolic dims) and dtype of a graph input/output."""

    name: str
    shape: tuple[Any, ...] | None
    dtype: str

    def __str__(self) -> str:
        shape = "?" if self.shape is None else str(tuple(self.shape)).replace("'", "")
        return f"'{self.name}' {shape} {self.dtype}"


def _canonical(name: str) -> str:
    """'deepspeech/logits:0' -> 'logits' (TF scope and output index are not part of the name)."""
    if name.endswith(":0"):
        name = name[:-2]
    prefix = _TF_SCOPE + "/"
    return name[len(prefix):] if name.startswith(prefix) else name


def _dims_match(shape: tuple[Any, ...] | None, expected: Sequence[int | None]) -> bool:
    """Rank matches and every known dim equals the expected one (None: any size)."""
    if shape is None:
        return True
    if len(shape) != len(expected):
        return False
    return all(
        want is None or not isinstance(dim, int) or dim == want
        for dim, want in zip(shape, expected)
    )


def _find(tensors: Sequence[_Tensor], name: str) -> _Tensor | None:
    return next((t for t in tensors if _canonical(t.name) == name), None)


def _check_interface(
    path: str, inputs: Sequence[_Tensor], outputs: Sequence[_Tensor]
) -> tuple[_Tensor, _Tensor, _Tensor, bool]:
    """Find input_node/input_lengths/logits; returns them and whether inputs are windowed."""
    node, lengths = _find(inputs, INPUT_NAME), _find(inputs, LENGTHS_NAME)
    logits = _find(outputs, OUTPUT_NAME)
    found = {INPUT_NAME: node, LENGTHS_NAME: lengths, OUTPUT_NAME: logits}
    missing = [f"'{name}'" for name, tensor in found.items() if tensor is None]
    if missing:
        problem: str | None = "no " + ", ".join(missing)
    else:
        problem = _interface_problem(node, lengths, logits)
    if problem is not None:
        raise UserError(
            f"DeepSpeech model {path} is not a DeepSpeech v0.1.0 export ({problem}): {_EXPECTED}; "
            f"found inputs [{', '.join(map(str, inputs))}] outputs [{', '.join(map(str, outputs))}]"
        )
    assert node is not None and lengths is not None and logits is not None
    return node, lengths, logits, _is_windowed(node)


def _is_windowed(node: _Tensor) -> bool:
    return node.shape is not None and len(node.shape) == 4


def _interface_problem(node: _Tensor, lengths: _Tensor, logits: _Tensor) -> str | None:
    """What is wrong with the dtypes/shapes of the three tensors, or None."""
    node_dims = (1, None, WINDOW_STEPS, NUM_CEP) if _is_windowed(node) else (1, None, INPUT_SIZE)
    if node.dtype != "float32" or not _dims_match(node.shape, node_dims):
        return f"bad '{INPUT_NAME}'"
    if lengths.dtype != "int32" or not _dims_match(lengths.shape, (1,)):
        return f"bad '{LENGTHS_NAME}'"
    if not _dims_match(logits.shape, (None, 1, NUM_CLASSES)):
        return f"bad '{OUTPUT_NAME}'"
    return None


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise UserError(
            f"DeepSpeech model not found: {path} (set audio.deepspeech_model to an ONNX export "
            "or output_graph.pb of DeepSpeech v0.1.0)"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32"}


class OnnxDeepSpeech(DeepSpeechModel):
    """DeepSpeech v0.1.0 exported to ONNX, run with onnxruntime on the CPU."""

    def __init__(self, path: str):
        import onnxruntime as ort

        _require_file(path)
        try:
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(
                f"DeepSpeech model {path}: onnxruntime cannot load it ({_one_line(exc)})"
            ) from exc
        node, lengths, logits, windowed = _check_interface(
            path,
            [self._describe(arg) for arg in session.get_inputs()],
            [self._describe(arg) for arg in session.get_outputs()],
        )
        super().__init__(path, windowed)
        self._session = session
        self._names = (node.name, lengths.name, logits.name)

    @staticmethod
    def _describe(arg: Any) -> _Tensor:
        shape = None if arg.shape is None else tuple(arg.shape)
        return _Tensor(arg.name, shape, _ONNX_DTYPES.get(arg.type, arg.type))

    def _run(self, input_node: np.ndarray, input_lengths: np.ndarray) -> np.ndarray:
        node, lengths, logits = self._names
        return self._session.run([logits], {node: input_node, lengths: input_lengths})[0]


class TensorFlowDeepSpeech(DeepSpeechModel):
    """The original DeepSpeech v0.1.0 frozen graph ``output_graph.pb`` (TensorFlow 1 API).

    Imported under the ``deepspeech`` name scope like VOCA, so the tensors are
    ``deepspeech/input_node:0``, ``deepspeech/input_lengths:0`` and ``deepspeech/logits:0``.
    """

    def __init__(self, path: str):
        _require_file(path)
        tf1 = _import_tf1(path)
        graph = self._import_graph(tf1, path)
        tensors = {}
        for name in (INPUT_NAME, LENGTHS_NAME, OUTPUT_NAME):
            try:
                tensors[name] = graph.get_tensor_by_name(f"{_TF_SCOPE}/{name}:0")
            except KeyError:
                tensors[name] = None
        found = [self._describe(t) for t in tensors.values() if t is not None]
        _, _, _, windowed = _check_interface(
            path,
            [t for t in found if _canonical(t.name) != OUTPUT_NAME],
            [t for t in found if _canonical(t.name) == OUTPUT_NAME],
        )
        super().__init__(path, windowed)
        self._tensors = (tensors[INPUT_NAME], tensors[LENGTHS_NAME], tensors[OUTPUT_NAME])
        self._session = tf1.Session(graph=graph)

    @staticmethod
    def _import_graph(tf1: Any, path: str) -> Any:
        graph_def = tf1.GraphDef()
        try:
            with open(path, "rb") as handle:
                graph_def.ParseFromString(handle.read())
            graph = tf1.Graph()
            with graph.as_default():
                tf1.import_graph_def(graph_def, name=_TF_SCOPE)
        except Exception as exc:  # protobuf DecodeError, TF ValueError/NotFoundError, ...
            raise UserError(
                f"DeepSpeech model {path}: not a loadable TensorFlow frozen graph "
                f"({_one_line(exc)})"
            ) from exc
        return graph

    @staticmethod
    def _describe(tensor: Any) -> _Tensor:
        dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
        return _Tensor(tensor.name, None if dims is None else tuple(dims), tensor.dtype.name)

    def _run(self, input_node: np.ndarray, input_lengths: np.ndarray) -> np.ndarray:
        node, lengths, logits = self._tensors
        return self._session.run(logits, feed_dict={node: input_node, lengths: input_lengths})


def _import_tf1(path: str) -> Any:
    """``tensorflow.compat.v1``, or a UserError saying how to get it."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise UserError(
            f"DeepSpeech model {path} is a TensorFlow frozen graph: loading .pb models needs "
            "TensorFlow (pip install talkdata[deepspeech]); or use an ONNX export of the model"
        ) from exc
    return tf.compat.v1


_LOADERS: dict[str, type[DeepSpeechModel]] = {".onnx": OnnxDeepSpeech, ".pb": TensorFlowDeepSpeech}
_MODEL_CACHE: dict[str, DeepSpeechModel] = {}
_CACHE_LOCK = threading.Lock()


def load_deepspeech(path: str | os.PathLike[str]) -> DeepSpeechModel:
    """Load (once per process) the DeepSpeech model at ``path``: ``.onnx`` or ``.pb``."""
    key = os.path.realpath(os.fspath(path))
    with _CACHE_LOCK:
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
        _require_file(os.fspath(path))
        loader = _LOADERS.get(os.path.splitext(key)[1].lower())
        if loader is None:
            raise UserError(
                f"DeepSpeech model {os.fspath(path)}: unknown file type, expected an ONNX "
                "export (.onnx) or the frozen TensorFlow graph output_graph.pb (.pb)"
            )
        model = _MODEL_CACHE[key] = loader(os.fspath(path))
        return model
