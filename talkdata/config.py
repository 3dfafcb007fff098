"""Processing configuration: defaults, recipe overrides, ``--set key=value`` overrides.

The configuration is a nested dict. Every key that exists is listed in ``DEFAULTS``; a recipe's
``[defaults]`` table and the user's ``--set`` values may only change existing keys, and only to a
value of the same type (an int is accepted where a float is expected). Anything else is a
``UserError`` naming the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from typing import Any

from .errors import UserError

DEFAULTS: dict[str, Any] = {
    "video": {
        "fps": 25.0,  # output frame rate; frame t is the source frame shown at t / fps
        "min_frames": 8,  # clips shorter than this are rejected (too_short)
        "chunk_frames": 64,  # frames decoded and processed per chunk (bounds memory)
        "cache_budget_mb": 256,  # decoded frames kept in memory between the two passes
    },
    "audio": {
        "sample_rate": 16000,
        "deepspeech_model": "",  # path to a DeepSpeech v0.1.0 ONNX export or output_graph.pb
    },
    "face": {
        "backend": "dlib",  # dlib | fan
        "detect_every": 10,  # run the detector on every N-th frame (key frames)
        "detector": "blazeface",  # blazeface | hog | mmod (face detector; see README "Landmark backends")
        "detect_rotations": [25.0, -25.0],  # in-plane tilts (degrees) searched when the upright search finds nothing
        "detect_pad": 0.25,  # pad the frame by this fraction per side at the coarsest search level (tight crops)
        "detect_max_side": 640,  # hog/mmod: the coarsest search level's longest side
        "min_face_size": 40,  # smallest face (detector box width, source pixels) searched for; smaller ones are ignored
        "max_gap_frames": 12,  # longest run of missing frames that is interpolated
        "max_missing_fraction": 0.25,  # reject clips where more frames than this lack a face
        "redetect_iou": 0.3,  # a key-frame detection overlapping the track less than this re-seeds it
        "fan_device": "cpu",
    },
    "crop": {
        "size": 256,  # S: crops are S x S
        "stable_points": [33, 36, 39, 42, 45],  # landmarks the similarity transform is fitted on
        "smooth_window": 7,  # centred moving average of the stable points (frames, odd)
        "face_width": 0.6,  # width of the template's landmarks as a fraction of S
        "face_center_y": 0.55,  # vertical centre of the template's landmarks as a fraction of S
        "border": "replicate",  # replicate | constant | reflect
        "crf": 18,  # x264 constant rate factor
        "preset": "veryfast",  # x264 preset
    },
    "mfcc": {
        "rows_per_frame": 4,  # hop = 1 / (rows_per_frame * fps)
        "winlen": 0.025,
        "numcep": 13,
        "nfilt": 26,
        "nfft": 512,
        "preemph": 0.97,
        "ceplifter": 22,
        "append_energy": True,
    },
    "pose": {
        "focal_scale": 1.0,  # focal length in pixels = focal_scale * max(frame width, height)
    },
    "shape": {
        "reference": "last",  # identity reference frame: first | last (ATVG) | mean
        "project_identity": False,  # project the identity-removed motion onto the basis (ATVG)
        "n_components": 20,  # K: PCA codes per frame in pca.npy
        "scale": 1.0,  # multiply shapes before PCA (ATVG uses 5)
        "max_frames": 100000,  # frames sampled (deterministically) to fit the basis
        "seed": 0,
        "fit_split": "train",  # split the basis is fitted on (falls back to all samples if empty)
        "regions": [],  # extra per-region bases saved in the model: lips, rest
    },
    "split": {
        "protocol": "default",  # default (speaker-disjoint by seed) or a recipe-named protocol
        "seed": 0,
        "train": 0.8,
        "val": 0.1,
        "test": 0.1,
    },
    "shards": {
        "max_samples": 500,
        "max_bytes": 1_000_000_000,
    },
}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def known_keys() -> list[str]:
    return sorted(_flatten(DEFAULTS))


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as a TOML value, else keep it a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_type(key: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"config key {key!r} takes true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {key!r} takes a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {key!r} takes an integer, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise UserError(f"config key {key!r} takes a list, got {value!r}")
        return value
    if not isinstance(value, str):
        raise UserError(f"config key {key!r} takes a string, got {value!r}")
    return value


def set_value(config: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in ``config`` in place, checking that it exists and the type matches."""
    defaults = _flatten(DEFAULTS)
    if key not in defaults:
        raise UserError(f"unknown config key {key!r} (run 'talkdata build --help' to see how to list keys)")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = _check_type(key, defaults[key], value)


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], origin: str) -> None:
    """Apply a nested table of overrides (a recipe's ``[defaults]``); ``origin`` names it in errors."""
    for key, value in _flatten(overrides).items():
        try:
            set_value(config, key, value)
        except UserError as err:
            raise UserError(f"{origin}: {err}") from None


def parse_set_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Turn ``["crop.size=128", ...]`` into ``{"crop.size": 128, ...}``."""
    parsed = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, got {item!r}")
        parsed[key.strip()] = parse_value(text.strip())
    return parsed


def resolve(recipe_defaults: dict[str, Any], recipe_name: str, sets: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the recipe's ``[defaults]``, then ``--set`` values; validated."""
    config = copy.deepcopy(DEFAULTS)
    apply_overrides(config, recipe_defaults, f"recipe {recipe_name!r}")
    for key, value in sets.items():
        set_value(config, key, value)
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    """Range checks that types alone cannot express."""
    checks = [
        (config["video"]["fps"] > 0, "video.fps must be > 0"),
        (config["crop"]["size"] >= 16, "crop.size must be at least 16"),
        (config["crop"]["size"] % 2 == 0, "crop.size must be even (H.264 yuv420p)"),
        (config["crop"]["smooth_window"] >= 1 and config["crop"]["smooth_window"] % 2 == 1,
         "crop.smooth_window must be an odd number >= 1"),
        (len(config["crop"]["stable_points"]) >= 2
         and all(isinstance(i, int) and 0 <= i < 68 for i in config["crop"]["stable_points"]),
         "crop.stable_points must list at least 2 landmark indices in 0..67"),
        (config["crop"]["border"] in ("replicate", "constant", "reflect"),
         "crop.border must be replicate, constant or reflect"),
        (config["face"]["backend"] in ("dlib", "fan"), "face.backend must be dlib or fan"),
        (config["face"]["detect_every"] >= 1, "face.detect_every must be >= 1"),
        (config["face"]["detector"] in ("blazeface", "hog", "mmod"), "face.detector must be blazeface, hog or mmod"),
        (config["face"]["min_face_size"] >= 16, "face.min_face_size must be >= 16"),
        (config["face"]["detect_max_side"] >= 160, "face.detect_max_side must be >= 160"),
        (all(isinstance(a, (int, float)) and not isinstance(a, bool) and -90 <= a <= 90
             for a in config["face"]["detect_rotations"]), "face.detect_rotations must list angles in -90..90"),
        (0 <= config["face"]["max_missing_fraction"] <= 1, "face.max_missing_fraction must be in [0, 1]"),
        (config["mfcc"]["rows_per_frame"] >= 1, "mfcc.rows_per_frame must be >= 1"),
        (config["shards"]["max_samples"] >= 1, "shards.max_samples must be >= 1"),
        (config["shape"]["reference"] in ("first", "last", "mean"), "shape.reference must be first, last or mean"),
        (1 <= config["shape"]["n_components"] <= 136, "shape.n_components must be in 1..136"),
        (config["shape"]["scale"] > 0, "shape.scale must be > 0"),
        (config["shape"]["fit_split"] in ("train", "val", "test", "all"), "shape.fit_split must be train, val, test or all"),
        (all(r in ("lips", "rest", "full") for r in config["shape"]["regions"]), "shape.regions may list lips, rest, full"),
        (abs(sum(config["split"][s] for s in ("train", "val", "test")) - 1.0) < 1e-6,
         "split.train + split.val + split.test must sum to 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"bad config: {message}")


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of a (sub)config, for cache keys and version ids."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
