"""The build configuration: one declaration, from which everything else is derived.

Each section is a frozen dataclass (:class:`Video`, :class:`Audio`, :class:`Face`, :class:`Crop`,
:class:`Mfcc`, :class:`Pose`, :class:`Shape`, :class:`Split`, :class:`Shards`); each key carries
its type, its range or choices and a one-line help (:func:`talkdata.declare.setting`). The build
and every stage read the typed :class:`BuildConfig` by attribute (``config.face.detector``), so a
misspelt key is an ``AttributeError`` (and a type checker's error), never a silent default. From
the declaration come

* ``--set key=value`` and a recipe's ``[defaults]``: :func:`resolve` (unknown keys get a
  did-you-mean; every value is checked, then the cross-key rules in :func:`cross_checks`, before
  any clip runs);
* ``--list-keys``: :func:`list_keys` (type, default, range or choices, help);
* the cache key: a section whose class has ``per_clip = False`` (split, shards, shape) acts at the
  dataset level and stays out of the per-clip cache key (:func:`dataset_level_sections`,
  :func:`processing_config`);
* the manifest: :func:`to_dict` and :func:`pinned` (below); :func:`stored` reads a built
  dataset's ``config`` back as a typed object (the loader, the training loops).

Where JSON is needed (the manifest's ``config``, the per-clip cache key, the version id), the dict
is derived in one place, :func:`to_dict`: sections and keys in declaration order, tuples as lists,
model keys holding the user's *path*. :func:`pinned` returns ``Pinned(config, models)``:
``config`` is that dict with every model key (declared ``model=True``; today
``audio.deepspeech_model``) replaced by ``"sha256:<hex>"`` of the file's bytes ('' stays ''), for
the per-clip cache key, so it follows the model's content and not where it lies; ``models`` maps
each used model key to ``{"path": ..., "sha256": ...}``. A configuration without models pins to
:func:`to_dict` unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .declare import Declared, check_value, declared, did_you_mean, listing, parse_set_options, parse_value, setting
from .errors import UserError
from .files import sha256_file

__all__ = ["BuildConfig", "Pinned", "config_hash", "cross_checks", "dataset_level_sections", "list_keys",
           "model_paths", "parse_set_options", "parse_value", "pinned", "processing_config", "resolve", "stored",
           "to_dict"]

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
N_LANDMARKS = 68


@dataclass(frozen=True)
class Video:
    per_clip: ClassVar[bool] = True
    fps: float = setting(25.0, "output frame rate; frame t is the source frame shown at t / fps", gt=0, le=120)
    min_frames: int = setting(8, "clips shorter than this many output frames are rejected (too_short)", ge=1,
                              le=100_000)
    chunk_frames: int = setting(64, "frames decoded and processed per chunk (bounds memory)", ge=1, le=4096)
    cache_budget_mb: int = setting(256, "decoded frames kept in memory between the two passes (MiB)", ge=0,
                                   le=1_048_576)


@dataclass(frozen=True)
class Audio:
    per_clip: ClassVar[bool] = True
    sample_rate: int = setting(16000, "audio sample rate in Hz (mono)", ge=4000, le=192_000)
    deepspeech_model: str = setting("", "DeepSpeech v0.1.0 ONNX export or output_graph.pb ('' : no deepspeech.npy)",
                                    model=True)


@dataclass(frozen=True)
class Face:
    per_clip: ClassVar[bool] = True
    backend: str = setting("dlib", "landmark backend", choices=("dlib", "fan"))
    detect_every: int = setting(10, "run the detector on every N-th frame (key frames)", ge=1, le=10_000)
    detector: str = setting("blazeface", "face detector (README: Landmark backends)", choices=("blazeface", "hog", "mmod"))
    detect_rotations: tuple[float, ...] = setting((25.0, -25.0),
                                                  "in-plane tilts (degrees) searched when the upright search finds nothing",
                                                  item_ge=-90, item_le=90)
    detect_pad: float = setting(0.25, "pad the frame by this fraction per side at the coarsest search level (tight crops)",
                                ge=0, le=1)
    detect_max_side: int = setting(640, "hog/mmod: the longest side of the coarsest search level", ge=160, le=16_384)
    min_face_size: int = setting(40, "smallest face searched for (detector box width, source pixels)", ge=16, le=16_384)
    max_gap_frames: int = setting(12, "longest run of missing frames that is interpolated", ge=0, le=100_000)
    max_missing_fraction: float = setting(0.25, "reject clips where more frames than this lack a face", ge=0, le=1)
    redetect_iou: float = setting(0.3, "a key-frame detection overlapping the track less than this re-seeds it",
                                  ge=0, le=1)
    fan_device: str = setting("cpu", "torch device of the FAN backend", pattern=r"cpu|cuda(:\d+)?|mps",
                                accepts="cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class Crop:
    per_clip: ClassVar[bool] = True
    size: int = setting(256, "S: crops are S x S pixels (even: H.264 yuv420p)", ge=16, le=2048)
    stable_points: tuple[int, ...] = setting((33, 36, 39, 42, 45),
                                             "landmarks the similarity transform is fitted on (distinct)",
                                             item_ge=0, item_le=N_LANDMARKS - 1, min_items=2)
    smooth_window: int = setting(7, "centred moving average of the stable points (frames, odd)", ge=1, le=255)
    face_width: float = setting(0.6, "width of the template's landmarks as a fraction of S", gt=0, le=1)
    face_center_y: float = setting(0.55, "vertical centre of the template's landmarks as a fraction of S", ge=0, le=1)
    border: str = setting("replicate", "how pixels outside the frame are filled",
                          choices=("replicate", "constant", "reflect"))
    crf: int = setting(18, "x264 constant rate factor (0 lossless .. 51 worst)", ge=0, le=51)
    preset: str = setting("veryfast", "x264 preset", choices=X264_PRESETS)


@dataclass(frozen=True)
class Mfcc:
    per_clip: ClassVar[bool] = True
    rows_per_frame: int = setting(4, "MFCC rows per video frame; hop = 1 / (rows_per_frame * fps)", ge=1, le=64)
    winlen: float = setting(0.025, "analysis window in seconds (nfft >= winlen * sample_rate)", gt=0, le=0.5)
    numcep: int = setting(13, "cepstral coefficients kept (<= nfilt)", ge=1, le=256)
    nfilt: int = setting(26, "mel filters (<= nfft / 2 + 1)", ge=1, le=512)
    nfft: int = setting(512, "FFT size in samples", ge=16, le=131_072)
    preemph: float = setting(0.97, "pre-emphasis coefficient", ge=0, lt=1)
    ceplifter: int = setting(22, "cepstral lifter (0: none)", ge=0, le=1000)
    append_energy: bool = setting(True, "replace c0 by the log frame energy")


@dataclass(frozen=True)
class Pose:
    per_clip: ClassVar[bool] = True
    focal_scale: float = setting(1.0, "focal length in pixels = focal_scale * max(frame width, height)", gt=0,
                                 le=100)


@dataclass(frozen=True)
class Shape:
    per_clip: ClassVar[bool] = False
    reference: str = setting("last", "identity reference frame (ATVG: last)", choices=("first", "last", "mean"))
    project_identity: bool = setting(False, "project the identity-removed motion onto the basis (ATVG)")
    n_components: int = setting(20, "K: PCA codes per frame in pca.npy", ge=1, le=2 * N_LANDMARKS)
    scale: float = setting(1.0, "multiply shapes before PCA (ATVG uses 5)", gt=0, le=1000)
    max_frames: int = setting(100_000, "frames sampled (deterministically) to fit the basis", ge=1,
                              le=1_000_000_000)
    seed: int = setting(0, "seed of the frame sample", ge=0, le=2**32 - 1)
    fit_split: str = setting("train", "split the basis is fitted on (falls back to all samples if empty)",
                             choices=("train", "val", "test", "all"))
    regions: tuple[str, ...] = setting((), "extra per-region bases saved in the model",
                                       item_choices=("lips", "rest", "full"))


@dataclass(frozen=True)
class Split:
    per_clip: ClassVar[bool] = False
    protocol: str = setting("default", "default (speaker-disjoint by seed) or a protocol the recipe names",
                            pattern=r"\S+", accepts="a protocol name")
    seed: int = setting(0, "seed of the default protocol's speaker assignment", ge=0, le=2**63 - 1)
    train: float = setting(0.8, "share of speakers in train (train + val + test = 1)", ge=0, le=1)
    val: float = setting(0.1, "share of speakers in val", ge=0, le=1)
    test: float = setting(0.1, "share of speakers in test", ge=0, le=1)


@dataclass(frozen=True)
class Shards:
    per_clip: ClassVar[bool] = False
    max_samples: int = setting(500, "samples per shard at most", ge=1, le=10_000_000)
    max_bytes: int = setting(1_000_000_000, "bytes per shard at most (a larger sample gets a shard of its own)",
                             ge=1024, le=2**50)


@dataclass(frozen=True)
class BuildConfig:
    """The whole build configuration: one field per section, in the manifest's order."""

    video: Video = field(default_factory=Video)
    audio: Audio = field(default_factory=Audio)
    face: Face = field(default_factory=Face)
    crop: Crop = field(default_factory=Crop)
    mfcc: Mfcc = field(default_factory=Mfcc)
    pose: Pose = field(default_factory=Pose)
    shape: Shape = field(default_factory=Shape)
    split: Split = field(default_factory=Split)
    shards: Shards = field(default_factory=Shards)


def sections() -> dict[str, type]:
    """Section name -> its dataclass."""
    return {f.name: f.default_factory for f in dataclasses.fields(BuildConfig)}  # type: ignore[misc]


def _keys() -> dict[str, Declared]:
    return {f"{name}.{d.name}": d for name, cls in sections().items() for d in declared(cls)}


def list_keys() -> list[str]:
    """``talkdata build --list-keys``: one line per key with its default, type, range or choices and help."""
    return listing(_keys().items())


def dataset_level_sections() -> tuple[str, ...]:
    """Sections that act at the dataset level and stay out of the per-clip cache key."""
    return tuple(name for name, cls in sections().items() if not cls.per_clip)


def processing_config(config: dict[str, Any]) -> dict[str, Any]:
    """The sections of a :func:`to_dict` or pinned dict that change per-clip results (the cache key's)."""
    level = dataset_level_sections()
    return {k: v for k, v in config.items() if k not in level}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def to_dict(cfg: BuildConfig) -> dict[str, Any]:
    """The JSON form of a typed configuration (tuples as lists): the manifest's ``config``, and the
    one place a dict is derived from it."""
    return {name: {d.name: _plain(getattr(getattr(cfg, name), d.name)) for d in declared(cls)}
            for name, cls in sections().items()}


def stored(config: dict[str, Any]) -> BuildConfig:
    """The typed configuration a built dataset records (its manifest's ``config``, a :func:`to_dict`):
    lists become tuples; a key the dataset's build did not have yet takes its declared default, and
    a key no longer declared is left out. Values are taken as written (the build checked them)."""
    parts = {}
    for name, cls in sections().items():
        values = config.get(name) or {}
        parts[name] = cls(**{d.name: tuple(values[d.name]) if isinstance(values[d.name], list) else values[d.name]
                             for d in declared(cls) if d.name in values})
    return BuildConfig(**parts)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _check_key(key: str, value: Any) -> Any:
    keys = _keys()
    if key not in keys:
        raise UserError(f"unknown config key {key!r}{did_you_mean(key, keys)} (talkdata build --list-keys lists them)")
    d = keys[key]
    return check_value(key, d.type, d.spec, value)


def cross_checks(cfg: BuildConfig) -> None:
    """Rules that tie keys together; each failure is one ``bad config: ...`` line."""
    frame_len = int(math.floor(cfg.mfcc.winlen * cfg.audio.sample_rate + 0.5))
    weights = (cfg.split.train, cfg.split.val, cfg.split.test)
    checks = [
        (cfg.crop.size % 2 == 0, f"crop.size must be even (H.264 yuv420p), got {cfg.crop.size}"),
        (cfg.crop.smooth_window % 2 == 1, f"crop.smooth_window must be odd, got {cfg.crop.smooth_window}"),
        (len(set(cfg.crop.stable_points)) == len(cfg.crop.stable_points),
         f"crop.stable_points must be distinct, got {list(cfg.crop.stable_points)}"),
        (abs(sum(weights) - 1.0) < 1e-6,
         f"split.train + split.val + split.test must sum to 1, got {' + '.join(map(str, weights))}"),
        (frame_len >= 1, f"mfcc.winlen * audio.sample_rate must be at least one sample, got {frame_len}"),
        (cfg.mfcc.nfft >= frame_len,
         f"mfcc.nfft ({cfg.mfcc.nfft}) must be >= mfcc.winlen * audio.sample_rate ({frame_len} samples)"),
        (cfg.mfcc.nfilt <= cfg.mfcc.nfft // 2 + 1,
         f"mfcc.nfilt ({cfg.mfcc.nfilt}) must be <= mfcc.nfft / 2 + 1 ({cfg.mfcc.nfft // 2 + 1})"),
        (cfg.mfcc.numcep <= cfg.mfcc.nfilt,
         f"mfcc.numcep ({cfg.mfcc.numcep}) must be <= mfcc.nfilt ({cfg.mfcc.nfilt})"),
        (len(set(cfg.shape.regions)) == len(cfg.shape.regions),
         f"shape.regions must be distinct, got {list(cfg.shape.regions)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"bad config: {message}")


def resolve(recipe_defaults: dict[str, Any], recipe_name: str, sets: dict[str, Any]) -> BuildConfig:
    """Defaults, then the recipe's ``[defaults]`` (a nested table), then ``--set`` values (dotted
    keys); every value checked against its declaration, then the cross-key rules."""
    changes: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any) -> None:
        value = _check_key(key, value)
        section, leaf = key.split(".", 1)
        changes.setdefault(section, {})[leaf] = value

    for key, value in _flatten(recipe_defaults).items():
        try:
            put(key, value)
        except UserError as err:
            raise UserError(f"recipe {recipe_name!r}: {err}") from None
    for key, value in sets.items():
        put(key, value)
    defaults = BuildConfig()
    cfg = BuildConfig(**{name: dataclasses.replace(getattr(defaults, name), **changes.get(name, {}))
                         for name in sections()})
    cross_checks(cfg)
    return cfg


@dataclass(frozen=True)
class Pinned:
    """The configuration for the per-clip cache key: models by sha256; their paths apart."""

    config: dict[str, Any]
    models: dict[str, dict[str, str]]


def model_keys() -> list[str]:
    """The dotted keys declared ``model=True`` (a model file's path)."""
    return [key for key, d in _keys().items() if d.spec.model]


def model_paths(cfg: BuildConfig) -> dict[str, str]:
    """Dotted model key -> the configured path ('' : no model)."""
    paths = {}
    for key in model_keys():
        section, leaf = key.split(".", 1)
        paths[key] = getattr(getattr(cfg, section), leaf)
    return paths


def pinned(cfg: BuildConfig) -> Pinned:
    """:func:`to_dict` with each model path replaced by ``sha256:<hex>``, and the paths apart."""
    out = to_dict(cfg)
    models = {}
    for key, path in model_paths(cfg).items():
        if not path:
            continue
        try:
            digest = sha256_file(path)
        except OSError as err:
            raise UserError(f"{key}: cannot read model file {path}: {err.strerror or err}") from None
        section, leaf = key.split(".", 1)
        out[section][leaf] = f"sha256:{digest}"
        models[key] = {"path": str(path), "sha256": digest}
    return Pinned(out, models)


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of a (sub)config, for cache keys and version ids."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
