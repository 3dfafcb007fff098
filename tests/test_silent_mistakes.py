"""Three user mistakes that used to pass silently, each now one clear line: a loader window longer
than every clip of the split (an empty epoch), nonsense numeric loader options (a negative shuffle
buffer or seed), and ``build --shape-model`` with shape settings other than the model's fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import talkdata
from checks import error_line
from talkdata.cli import main
from talkdata.errors import UserError
from talkdata.face.shape import load_shape_model
from talkdata.loader.damage import DamagedSample

DATA = Path(__file__).parent / "data"


def refused(**kwargs) -> str:
    """The one-line message of the UserError that ``talkdata.load(**kwargs)`` raises (before any item)."""
    with pytest.raises(UserError) as err:
        talkdata.load(**kwargs)
    assert not isinstance(err.value, DamagedSample)
    message = str(err.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ 1. a window longer than every clip


def test_the_grid_clips_have_75_frames(grid_dataset):
    """What the boundaries below rest on, read from the dataset's own index."""
    index = pq.read_table(grid_dataset / "index.parquet", columns=["split", "frames"]).to_pylist()
    assert sorted(row["split"] for row in index) == ["test", "train", "val"]
    assert {row["frames"] for row in index} == {75}


def test_a_window_longer_than_every_clip_names_the_window_split_and_longest_clip(grid_dataset):
    message = refused(source=grid_dataset, fields=["pca.npy"], window=76)
    assert message.startswith("window=76: no clip of split train of ")
    assert "the longest has 75 frames, one item needs 76 (the window)" in message
    # the longest window that fits gives its item
    items = list(talkdata.load(grid_dataset, fields=["pca.npy"], window=75))
    assert [item["pca"].shape[0] for item in items] == [75]
    # every split asked for is named; the longest clip is over all of them
    assert "split train+val+test of" in refused(source=grid_dataset, fields=["pca.npy"], window=200, split="all")
    assert "split val of" in refused(source=grid_dataset, profile="sda", fields=["audio.wav"], window=80, split="val")


def test_profiles_count_the_frames_their_items_need_beyond_the_window(grid_dataset):
    # ATVG: the example frame and 3 frames of MFCC context before the window, 4 frames after it
    message = refused(source=grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"], window=68)
    assert "window=68: " in message and "profile 'atvg'" in message and "one item needs 76" in message
    items = list(talkdata.load(grid_dataset, profile="atvg", fields=["pca.npy", "mfcc.npy"], window=67))
    assert [item["start"] for item in items] == [4]
    # FACIAL at 30 fps: 75 frames at 25 fps are 90; dataset102.py's starts need one frame past the window
    message = refused(source=grid_dataset, profile="facial", features="mfcc", window=90)
    assert "window=90: " in message and "91 frames at 30 fps" in message
    assert len(list(talkdata.load(grid_dataset, profile="facial", features="mfcc", window=89))) == 1
    assert len(list(talkdata.load(grid_dataset, profile="facial", features="mfcc", window=90, include_last=True))) == 1
    # its default window (128) is refused the same way, naming it
    assert refused(source=grid_dataset, profile="facial", features="mfcc").startswith("window=128: ")


def test_a_window_longer_than_every_clip_stops_a_training_run_with_one_line(grid_dataset, tmp_path):
    result = CliRunner().invoke(main, ["train", "atnet", "--data", str(grid_dataset), "--steps", "2",
                                       "--out", str(tmp_path / "run"), "--set", "window=100"])
    line = error_line(result)
    assert "window=100: no clip of split train of" in line and "the longest has 75 frames" in line
    assert not (tmp_path / "run").exists()


def test_without_index_parquet_the_loader_still_loads(grid_dataset, tmp_path):
    """The check reads index.parquet's frames; a dataset copied without it still streams its items."""
    copy = tmp_path / "grid"
    shutil.copytree(grid_dataset, copy, ignore=shutil.ignore_patterns(".work"))
    (copy / "index.parquet").unlink()
    items = list(talkdata.load(copy, fields=["pca.npy"], window=75, split="all", shuffle=False))
    assert len(items) == 3


# ------------------------------------------------------------------ 2. nonsense numeric loader options


@pytest.mark.parametrize("name, value", [("shuffle_buffer", -1), ("shuffle_buffer", 2.5), ("shuffle_buffer", True),
                                         ("shuffle_buffer", "64"), ("seed", -1), ("seed", 1.5)])
def test_nonsense_numeric_options_are_refused_naming_the_range(grid_dataset, name, value):
    message = refused(source=grid_dataset, fields=["pca.npy"], **{name: value})
    assert message.startswith(f"{name} must be an integer >= 0")
    assert message.endswith(f"got {value!r}")
    if name == "shuffle_buffer":
        assert "(0 or 1: no shuffle buffer)" in message


def test_shuffle_buffer_0_and_1_mean_no_buffer(grid_dataset):
    def keys_and_starts(**kwargs):
        return [(item["__key__"], item["start"]) for item in
                talkdata.load(grid_dataset, fields=["pca.npy"], window=8, split="all", seed=3, **kwargs)]

    unbuffered = keys_and_starts(shuffle=True, shuffle_buffer=0)
    assert len(unbuffered) == 3 * 9
    assert keys_and_starts(shuffle=True, shuffle_buffer=1) == unbuffered
    # without the buffer the windows of a clip come in order
    for key in {key for key, _ in unbuffered}:
        assert [start for k, start in unbuffered if k == key] == list(range(0, 72, 8))


def test_a_negative_epoch_is_refused(grid_dataset):
    dataset = talkdata.load(grid_dataset, fields=["pca.npy"])
    with pytest.raises(UserError, match=r"^epoch must be an integer >= 0, got -1$"):
        dataset.set_epoch(-1)
    dataset.set_epoch(np.int64(2))
    assert dataset.epoch == 2


# ------------------------------------------------------------------ 3. --shape-model with other shape settings


def build(tmp_path: Path, *args: str):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(out),
                                       "--no-progress", *args])
    return result, out


@pytest.mark.parametrize("setting, given, fitted, resolved", [("reference", '"first"', '"last"', '"first"'),
                                                              ("regions", '["lips"]', "[]", '["lips"]'),
                                                              ("scale", "5", "1.0", "5.0"),
                                                              ("n_components", "12", "20", "12"),
                                                              ("project_identity", "true", "false", "true")])
def test_a_shape_model_fitted_with_other_settings_is_refused(grid_dataset, tmp_path, setting, given, fitted, resolved):
    model = grid_dataset / "stats/shape_model.npz"
    assert load_shape_model(model).settings[setting] == json.loads(fitted)  # the grid build's defaults
    result, out = build(tmp_path, "--shape-model", str(model), "--set", f"shape.{setting}={given}")
    line = error_line(result)
    assert f"--shape-model {model} was fitted with shape.{setting}={fitted}, this build has " \
           f"shape.{setting}={resolved}" in line
    assert f"give --set shape.{setting}={fitted}" in line
    assert not out.exists()  # refused before anything is written


def test_a_shape_model_is_used_with_its_own_settings_restated_or_fit_only_settings_changed(grid_dataset, tmp_path):
    model = grid_dataset / "stats/shape_model.npz"
    result, out = build(tmp_path, "--limit", "1", "--shape-model", str(model), "--set", 'shape.reference="last"',
                        "--set", "shape.seed=7")  # the seed only steers a fit, which a given model replaces
    assert result.exit_code == 0, result.output
    assert (out / "stats/shape_model.npz").read_bytes() == model.read_bytes()


def test_a_shape_model_without_a_record_of_a_setting_is_accepted_as_before(tmp_path):
    """A model whose fit settings do not record ``scale`` (one not written by talkdata's fit) is not
    compared on it."""
    from talkdata.face.shape import ShapeModel, fit_pca, save_shape_model, standardize
    from talkdata.face.template import mean_face_2d

    template = mean_face_2d()
    frames = template[None] + np.random.default_rng(0).normal(0, 0.01, (40, 68, 2))
    path = tmp_path / "model.npz"
    save_shape_model(path, ShapeModel(template=template, template_std=standardize(template),
                                      basis=fit_pca(frames, 6), region_bases={}, settings={"reference": "last"}))
    result, out = build(tmp_path, "--limit", "1", "--shape-model", str(path), "--set", "shape.scale=5")
    assert result.exit_code == 0, result.output
    assert (out / "stats/shape_model.npz").read_bytes() == path.read_bytes()
    # the recorded one is still compared
    result, _ = build(tmp_path / "again", "--shape-model", str(path), "--set", 'shape.reference="mean"')
    assert 'fitted with shape.reference="last", this build has shape.reference="mean"' in error_line(result)
