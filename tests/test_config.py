"""The build configuration's one declaration: --set, recipe [defaults], --list-keys, validation before
any clip runs, the cache sections, models pinned by sha256; and the CLI's input errors."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from talkdata.cli import main
from talkdata.config import (BuildConfig, Pinned, dataset_level_sections, list_keys, pinned, processing_config,
                             resolve, stored, to_dict)
from talkdata.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
RECIPES = Path(__file__).parents[1] / "recipes"

#: the configuration every existing build was made with (cache keys and manifests depend on it)
DEFAULTS_0_2 = {
    "video": {"fps": 25.0, "min_frames": 8, "chunk_frames": 64, "cache_budget_mb": 256},
    "audio": {"sample_rate": 16000, "deepspeech_model": ""},
    "face": {"backend": "dlib", "detect_every": 10, "detector": "blazeface", "detect_rotations": [25.0, -25.0],
             "detect_pad": 0.25, "detect_max_side": 640, "min_face_size": 40, "max_gap_frames": 12, "max_missing_fraction": 0.25, "redetect_iou": 0.3,
             "fan_device": "cpu"},
    "crop": {"size": 256, "stable_points": [33, 36, 39, 42, 45], "smooth_window": 7, "face_width": 0.6,
             "face_center_y": 0.55, "border": "replicate", "crf": 18, "preset": "veryfast"},
    "mfcc": {"rows_per_frame": 4, "winlen": 0.025, "numcep": 13, "nfilt": 26, "nfft": 512, "preemph": 0.97,
             "ceplifter": 22, "append_energy": True},
    "pose": {"focal_scale": 1.0},
    "shape": {"reference": "last", "project_identity": False, "n_components": 20, "scale": 1.0, "max_frames": 100000,
              "seed": 0, "fit_split": "train", "regions": []},
    "split": {"protocol": "default", "seed": 0, "train": 0.8, "val": 0.1, "test": 0.1},
    "shards": {"max_samples": 500, "max_bytes": 1_000_000_000},
}


def build(tmp_path: Path, *args: str):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(out), *args])
    return result, out


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output and "Usage:" not in result.output
    return lines[0]


# ------------------------------------------------------------------------------ the typed config and its JSON form


def test_defaults_and_their_json_are_the_historic_ones():
    assert to_dict(BuildConfig()) == DEFAULTS_0_2
    config = to_dict(resolve({}, "grid", {}))
    assert json.dumps(config, sort_keys=True) == json.dumps(DEFAULTS_0_2, sort_keys=True)
    assert list(config) == list(DEFAULTS_0_2) and all(list(config[s]) == list(DEFAULTS_0_2[s]) for s in config)
    assert type(config["crop"]["stable_points"]) is list and type(config["video"]["fps"]) is float


def test_overrides_keep_the_types_the_stages_read():
    cfg = resolve({"shape": {"scale": 5, "project_identity": True}}, "grid",
                  {"crop.size": 128, "video.fps": 30, "crop.stable_points": [36, 45], "shape.regions": ["lips"]})
    assert cfg.shape.scale == 5.0 and type(cfg.shape.scale) is float
    assert cfg.video.fps == 30.0 and type(cfg.video.fps) is float
    assert cfg.crop.stable_points == (36, 45) and cfg.shape.regions == ("lips",)
    assert cfg.crop.size == 128 and cfg.shape.project_identity is True
    assert to_dict(cfg)["crop"]["stable_points"] == [36, 45] and to_dict(cfg)["shape"]["regions"] == ["lips"]


def test_typed_object_reads_by_attribute_and_is_frozen():
    cfg = resolve({}, "grid", {"crop.size": 128, "face.backend": "fan"})
    assert isinstance(cfg, BuildConfig)
    assert cfg.crop.size == 128 and cfg.face.backend == "fan" and cfg.crop.stable_points == (33, 36, 39, 42, 45)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.crop.size = 64  # type: ignore[misc]
    with pytest.raises(AttributeError, match="detectr"):
        cfg.face.detectr  # a misspelt key fails loudly instead of reading a default
    assert resolve({}, "grid", {}) == BuildConfig()


def test_a_stored_config_reads_back_typed():
    cfg = resolve({}, "grid", {"crop.size": 128, "shape.regions": ["lips"], "face.detect_rotations": [10]})
    assert stored(json.loads(json.dumps(to_dict(cfg)))) == cfg
    # a dataset built before a key existed gets the key's default; a key no longer declared is left out
    older = json.loads(json.dumps(to_dict(cfg)))
    del older["face"]["detector"]
    older["crop"]["retired_key"] = 1
    back = stored(older)
    assert back.face.detector == "blazeface" and back.crop.size == 128 and not hasattr(back.crop, "retired_key")


def test_cache_sections_come_from_the_declaration():
    assert dataset_level_sections() == ("shape", "split", "shards")
    per_clip = processing_config(DEFAULTS_0_2)
    assert sorted(per_clip) == ["audio", "crop", "face", "mfcc", "pose", "video"]


#: modules that may index a config by name: the declaration (it derives the one JSON form, ``to_dict``)
DICT_PLACES = {"talkdata/config.py", "talkdata/declare.py"}
_CONFIG_LIKE = re.compile(r"(cfg|config)\W*$")  # config, face_config, cfg, manifest['config'], ...


def config_string_reads(source: str) -> list[str]:
    """``x["face"]``, ``x.get("face")``, ``face_config["detector"]``, ``manifest["config"]["video"]``: reads
    of a section or a declared key by string from an expression named like a config."""
    sections = {f.name for f in dataclasses.fields(BuildConfig)}
    keys = {f.name for section in dataclasses.fields(BuildConfig) for f in dataclasses.fields(section.default_factory)}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript):
            target, name = node.value, node.slice
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args):
            target, name = node.func.value, node.args[0]
        else:
            continue
        if (isinstance(name, ast.Constant) and name.value in sections | keys
                and _CONFIG_LIKE.search(ast.unparse(target))):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_source_check_finds_string_reads():
    assert config_string_reads('fps = config["video"]["fps"]') == ["1: config['video']"]
    assert config_string_reads('b = face_config["detector"]\nc = cfg.get("face", {})') == [
        "1: face_config['detector']", "2: cfg.get('face', {})"]
    assert config_string_reads('w = ds.manifest["config"]["crop"]["face_width"]') != []
    assert config_string_reads('x = config.face.detector\ny = batch["audio"]\nz = row["split"]') == []


def test_no_module_reads_the_config_by_string_keys():
    """The build and every reader use the typed config's attributes (a misspelt key is an
    AttributeError, not a silent default); only the declaration derives and indexes the dict."""
    found, read = [], []
    for path in sorted((ROOT / "talkdata").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        read.append(rel)
        if rel not in DICT_PLACES:
            found += [f"{rel}:{hit}" for hit in config_string_reads(path.read_text(encoding="utf-8"))]
    assert len(read) > 50 and "talkdata/pipeline/build.py" in read  # the whole package was read
    assert found == []


# ------------------------------------------------------------------------------ bad values

BAD_VALUES = [
    (["crop.size=20000"], "crop.size"),
    (["audio.sample_rate=0"], "audio.sample_rate"),
    (["audio.sample_rate=1"], "audio.sample_rate"),
    (["mfcc.numcep=0"], "mfcc.numcep"),
    (["mfcc.nfft=0"], "mfcc.nfft"),
    (["mfcc.winlen=0"], "mfcc.winlen"),
    (["crop.preset=bogus"], "crop.preset"),
    (["crop.face_width=0"], "crop.face_width"),
    (["crop.face_center_y=nan"], "crop.face_center_y"),
    (["pose.focal_scale=0"], "pose.focal_scale"),
    (["face.detector=bogus"], "face.detector"),
    (["face.detect_pad=-1"], "face.detect_pad"),
    (["face.max_gap_frames=-5"], "face.max_gap_frames"),
    (["face.redetect_iou=nan"], "face.redetect_iou"),
    (["video.fps=inf"], "video.fps"),
    (["shape.max_frames=0"], "shape.max_frames"),
    (["shape.scale=inf"], "shape.scale"),
    (["split.train=1.5", "split.val=-0.25", "split.test=-0.25"], "split."),
    # cross-key rules
    (["split.train=0.5", "split.val=0.1", "split.test=0.1"], "must sum to 1"),
    (["crop.smooth_window=4"], "crop.smooth_window must be odd"),
    (["crop.stable_points=[33, 68]"], "crop.stable_points"),
    (["crop.stable_points=[33]"], "crop.stable_points"),
    (["crop.stable_points=[33, 33]"], "crop.stable_points must be distinct"),
    (["crop.size=129"], "crop.size must be even"),
    (["mfcc.nfft=256"], "mfcc.nfft (256) must be >= mfcc.winlen * audio.sample_rate (400 samples)"),
    (["mfcc.numcep=30"], "mfcc.numcep (30) must be <= mfcc.nfilt (26)"),
    (["face.backend=dlb"], "face.backend"),
    (["face.fan_device=gpu"], "face.fan_device"),
    (["video.fps=120.5"], "video.fps"),
    (["crop.size=12.5"], "config key 'crop.size' takes an integer"),
    (["mfcc.append_energy=1"], "config key 'mfcc.append_energy' takes true or false"),
]


@pytest.mark.parametrize("sets, message", BAD_VALUES, ids=[" ".join(s) for s, _ in BAD_VALUES])
def test_bad_values_are_one_error_line_before_any_clip(tmp_path, sets, message):
    result, out = build(tmp_path, *(arg for s in sets for arg in ("--set", s)))
    line = one_error_line(result)
    assert message in line
    assert not out.exists(), "nothing may run (nor the output folder be created) for a bad config"


GOOD_VALUES = [
    {"crop.size": 16}, {"crop.size": 2048}, {"audio.sample_rate": 8000}, {"video.fps": 120}, {"video.fps": 29.97},
    {"mfcc.nfft": 400}, {"mfcc.numcep": 26}, {"face.detector": "hog"}, {"face.detect_pad": 0},
    {"face.max_gap_frames": 0}, {"face.redetect_iou": 1}, {"crop.preset": "ultrafast"}, {"crop.face_center_y": 0.5},
    {"pose.focal_scale": 0.5}, {"shape.max_frames": 1}, {"shape.scale": 5}, {"face.fan_device": "cuda:1"},
    {"split.train": 1, "split.val": 0, "split.test": 0}, {"crop.stable_points": [0, 67]}, {"crop.smooth_window": 1},
    {"shape.regions": ["lips", "rest"]}, {"split.protocol": "lipnet-unseen"},
]


@pytest.mark.parametrize("sets", GOOD_VALUES, ids=[json.dumps(s) for s in GOOD_VALUES])
def test_good_values_are_accepted(sets):
    config = to_dict(resolve({}, "grid", sets))
    for key, value in sets.items():
        section, leaf = key.split(".")
        assert config[section][leaf] == value


def test_recipe_defaults_go_through_the_same_checks(tmp_path):
    text = (RECIPES / "grid.toml").read_text()
    assert "[defaults]" not in text
    recipe = tmp_path / "grid-big.toml"
    recipe.write_text(text + "\n[defaults]\ncrop = { size = 20000 }\n")
    result = CliRunner().invoke(main, ["build", str(recipe), "--source", str(DATA / "grid"),
                                       "--out", str(tmp_path / "o")])
    line = one_error_line(result)
    assert "recipe" in line and "crop.size" in line and "20000" in line
    with pytest.raises(UserError, match=r"recipe 'x': unknown config key 'crop.sise'; did you mean 'crop.size'\?"):
        resolve({"crop": {"sise": 3}}, "x", {})


def test_an_unknown_key_suggests_the_closest(tmp_path):
    result, _ = build(tmp_path, "--set", "crop.sise=128")
    assert "unknown config key 'crop.sise'; did you mean 'crop.size'?" in one_error_line(result)
    result, _ = build(tmp_path, "--set", "smooth_window=5")
    assert "did you mean 'crop.smooth_window'?" in one_error_line(result)
    result, _ = build(tmp_path, "--set", "zzz.qqq=1")
    assert "did you mean" not in one_error_line(result)


def test_list_keys_shows_type_default_range_and_help():
    result = CliRunner().invoke(main, ["build", "--list-keys"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == sum(len(section) for section in DEFAULTS_0_2.values())
    shown = {line.split(" = ", 1)[0]: line for line in lines}
    assert set(shown) == {f"{s}.{k}" for s, keys in DEFAULTS_0_2.items() for k in keys}
    assert shown["crop.size"].startswith("crop.size = 256  (int; [16, 2048])  S: crops are S x S")
    assert "one of ultrafast, superfast, veryfast" in shown["crop.preset"]
    assert shown["video.fps"].startswith("video.fps = 25.0  (float; (0, 120])")
    assert "items in [0, 67]" in shown["crop.stable_points"]
    assert lines == list_keys()


# ------------------------------------------------------------------------------ models by sha256


def test_models_enter_the_manifest_by_sha256_and_their_paths_apart(tmp_path):
    model = tmp_path / "a" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"not really a graph, but bytes with a digest\n" * 100)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    config = resolve({}, "grid", {"audio.deepspeech_model": str(model)})
    assert config.audio.deepspeech_model == str(model)  # the stages get the path
    first = pinned(config)
    assert first.config["audio"]["deepspeech_model"] == f"sha256:{digest}"
    assert str(tmp_path) not in json.dumps(first.config)
    assert first.models == {"audio.deepspeech_model": {"path": str(model), "sha256": digest}}
    assert config.audio.deepspeech_model == str(model) and to_dict(config)["audio"]["deepspeech_model"] == str(model)

    moved = tmp_path / "b" / "renamed.onnx"
    moved.parent.mkdir()
    shutil.copy(model, moved)
    second = pinned(resolve({}, "grid", {"audio.deepspeech_model": str(moved)}))
    assert second.config == first.config and second.models["audio.deepspeech_model"]["path"] == str(moved)

    moved.write_bytes(b"other bytes")
    assert pinned(resolve({}, "grid", {"audio.deepspeech_model": str(moved)})).config != first.config
    with pytest.raises(UserError, match="audio.deepspeech_model: cannot read model file"):
        pinned(resolve({}, "grid", {"audio.deepspeech_model": str(tmp_path / "none.onnx")}))


def test_without_models_the_pinned_config_is_the_json_form():
    config = resolve({}, "grid", {})
    assert pinned(config) == Pinned(DEFAULTS_0_2, {})


# ------------------------------------------------------------------------------ CLI input errors


def test_scheduler_address_is_checked_before_connecting(tmp_path):
    result, out = build(tmp_path, "--scheduler", "notaurl")
    assert "'notaurl' is not a dask scheduler address" in one_error_line(result)
    for address in ("tcp://host name:8786", "tcp://host:99999", "ws://", "host:"):
        result, out = build(tmp_path, "--scheduler", address)
        assert f"{address!r} is not a dask scheduler address" in one_error_line(result)
        assert not out.exists()


def _shape_model(path: Path) -> None:
    from talkdata.face.shape import ShapeModel, fit_pca, save_shape_model, standardize
    from talkdata.face.template import mean_face_2d

    template = mean_face_2d()
    rng = np.random.default_rng(0)
    frames = template[None] + rng.normal(0, 0.01, (40, 68, 2))
    save_shape_model(path, ShapeModel(template=template, template_std=standardize(template),
                                      basis=fit_pca(frames, 6), region_bases={}, settings={"reference": "last"}))


def test_a_bad_shape_model_is_one_error_line_before_any_clip(tmp_path):
    good = tmp_path / "shape_model.npz"
    _shape_model(good)
    data = good.read_bytes()
    cases = {"empty.npz": b"", "truncated.npz": data[: len(data) // 2], "tail_cut.npz": data[:-40],
             "text.npz": b"hello\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        result, out = build(tmp_path, "--shape-model", str(tmp_path / name))
        line = one_error_line(result)
        assert f"cannot read shape model {tmp_path / name}" in line, line
        assert not out.exists()
    assert "the file is empty" in one_error_line(build(tmp_path, "--shape-model", str(tmp_path / "empty.npz"))[0])
    # a good model passes the check: the next error is the config's
    result, _ = build(tmp_path, "--shape-model", str(good), "--set", "crop.size=20000")
    assert "crop.size" in one_error_line(result)


@pytest.mark.parametrize("args, message", [
    (["build", "grid", "--source", "{data}/grid", "--out", "{tmp}/o", "--workers", "-1"],
     "Invalid value for '--workers': -1 is not in the range x>=0."),
    (["build", "grid", "--source", "{data}/grid", "--out", "{tmp}/o", "--clip-timeout", "0"], "'--clip-timeout'"),
    (["build", "grid", "--source", "{data}/grid"], "Missing option '--out'"),
    (["build", "grid", "--out", "{tmp}/o", "--lst-keys"], "No such option '--lst-keys'. Did you mean '--list-keys'?"),
    (["download", "grid", "--jobs", "0"], "'--jobs'"),
    (["inspect", "{tmp}", "--frames", "99"], "'--frames'"),
    (["train", "atnet", "--data", "{tmp}", "--device", "tpu"], "'--device'"),
    (["buidl", "grid"], "No such command 'buidl'"),
    (["build"], "Missing argument 'RECIPE'"),
])
def test_click_usage_errors_are_one_error_line(tmp_path, args, message):
    result = CliRunner().invoke(main, [a.format(data=DATA, tmp=tmp_path) for a in args])
    line = one_error_line(result)
    assert message in line and "--help" in line


def test_help_and_no_arguments_still_show_usage():
    assert CliRunner().invoke(main, ["build", "--help"]).exit_code == 0
    result = CliRunner().invoke(main, [])
    assert "Usage:" in result.output and "build" in result.output


# ------------------------------------------------------------------------------ same mechanism elsewhere


def test_training_settings_use_the_declaration():
    pytest.importorskip("torch", reason="the training loops need torch (extra talkdata[train])")
    from talkdata.train import atnet, facial_pose
    from talkdata.train.settings import apply_overrides

    settings = apply_overrides(atnet.Settings(), {"lr": 1, "batch_size": 4, "eval_splits": "train,val"})
    assert settings.lr == 1.0 and type(settings.lr) is float and settings.batch_size == 4
    for overrides, message in [
        ({"bach_size": 4}, "unknown training setting 'bach_size'; did you mean 'batch_size'?"),
        ({"lr": "fast"}, "training setting 'lr' takes a float"),
        ({"lr": 0}, "training setting 'lr' must be in (0, 10]"),
        ({"lr": float("nan")}, "training setting 'lr' takes a finite float"),
        ({"batch_size": 0}, "training setting 'batch_size' must be in [1, 65536]"),
    ]:
        with pytest.raises(UserError) as err:
            apply_overrides(atnet.Settings(), overrides)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="training setting 'kernel' must be in"):
        apply_overrides(facial_pose.Settings(), {"kernel": 0})


def test_profile_options_use_the_declaration():
    from talkdata.loader.profile_base import Profile, option

    class Demo(Profile):
        name = "demo"
        options = {"size": option(int, 128, "crop side", ge=8, le=1024),
                   "fps": option(float | None, None, "rate", gt=0),
                   "identity": option(str, "first", "reference frame", choices=("first", "random")), "plain": 3}

        def items(self, clip, ctx):
            yield from ()

    demo = Demo()
    assert demo.resolve_options({}) == {"size": 128, "fps": None, "identity": "first", "plain": 3}
    assert demo.resolve_options({"fps": 25, "plain": "x"}) == {"size": 128, "fps": 25.0, "identity": "first",
                                                               "plain": "x"}
    for given, message in [
        ({"sise": 64}, "profile 'demo' has no option 'sise'; did you mean 'size'?"),
        ({"size": 4}, "option 'size' of profile 'demo' must be in [8, 1024], got 4"),
        ({"size": "big"}, "option 'size' of profile 'demo' takes an integer"),
        ({"identity": "last"}, "must be one of first, random, got 'last'"),
        ({"fps": 0}, "option 'fps' of profile 'demo' must be in (0, inf)"),
    ]:
        with pytest.raises(UserError) as err:
            demo.resolve_options(given)
        assert message in str(err.value)


def test_train_list_keys_and_set_errors_on_the_command_line(tmp_path):
    pytest.importorskip("torch", reason="the training loops need torch (extra talkdata[train])")
    result = CliRunner().invoke(main, ["train", "--list-keys"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "atnet: batch_size = 16  (int; [1, 65536])  windows per batch" in lines
    assert any(line.startswith("facial-pose: kernel = 5  (int; [1, 255])") for line in lines)
    assert {line.split(":")[0] for line in lines} == {"atnet", "facial-pose"}
    result = CliRunner().invoke(main, ["train", "atnet", "--data", str(tmp_path), "--set", "bach_size=4",
                                       "--out", str(tmp_path / "run")])
    assert "unknown training setting 'bach_size'; did you mean 'batch_size'?" in one_error_line(result)
    assert not (tmp_path / "run").exists()
