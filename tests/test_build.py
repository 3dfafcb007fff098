"""End-to-end builds through the CLI on the real GRID and CREMA-D samples: outputs, metadata,
determinism across worker counts, caching, verify, and the one-line errors for bad input."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from click.testing import CliRunner

from talkdata.cli import main
from talkdata.media.encode import decode_wav
from talkdata.recipe import load_schema
from talkdata.shards import read_shard

DATA = Path(__file__).parent / "data"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "talkdata.cli", *args], capture_output=True, text=True, timeout=600)


def build_ok(*args: str) -> subprocess.CompletedProcess:
    result = run_cli("build", *args, "--no-progress")
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def grid_out(grid_dataset) -> Path:
    """The GRID samples with the default 0 workers: the session's build (tests/conftest.py). Console
    builds give the same bytes (here: 2 workers, a one-worker scheduler; test_reproducibility: 2 and 4)."""
    return grid_dataset


@pytest.fixture(scope="module")
def crema_out(tmp_path_factory) -> Path:
    """The CREMA-D samples built by the console script with 2 workers, once per test run (never modified)."""
    from conftest import shared_build

    return shared_build(tmp_path_factory, "cli-crema-2-workers", lambda folder: build_ok(
        "crema-d", "--source", str(DATA / "crema_d"), "--out", str(folder / "out"), "--workers", "2")) / "out"


def all_samples(out: Path) -> dict[str, dict[str, bytes]]:
    samples = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        samples.update(read_shard(shard))
    return samples


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data))


def test_grid_build_layout_and_manifest(grid_out):
    manifest = json.loads((grid_out / "dataset.json").read_text())
    jsonschema.validate(manifest, load_schema("dataset"))
    assert sum(s["samples"] for s in manifest["splits"].values()) == 3
    assert {s["split"] for s in manifest["shards"]} == {"train", "val", "test"}  # 3 speakers, speaker-disjoint
    for entry in manifest["shards"]:
        assert (grid_out / entry["path"]).stat().st_size == entry["bytes"]
    assert set(manifest["artifacts"]) == {"index.parquet", "rejects.parquet", "stats/shape_model.npz"}
    text = (grid_out / "dataset.json").read_text()
    assert str(DATA) not in text and "/tmp" not in text  # no absolute paths in versioned outputs
    assert manifest["config"]["crop"]["size"] == 256 and manifest["toolkit"]["talkdata"]
    assert manifest["dependencies"]["av"] != "not installed"
    card = (grid_out / "README.md").read_text()
    assert card.startswith("---\n") and manifest["version"] in card and "shards/train/*.tar" in card


def test_every_field_shape_dtype_and_sync(grid_out):
    samples = all_samples(grid_out)
    assert sorted(samples) == ["s1/bbaf2n", "s2/swwp2s", "unknown_speaker/lbbc2a"]
    schema = load_schema("sample")
    for key, files in samples.items():
        meta = json.loads(files["json"])
        jsonschema.validate(meta, schema)
        t = meta["frames"]
        assert t == 75 and meta["duration"] == pytest.approx(3.0)  # GRID: 75 frames = 3 s at 25 fps
        expected = {
            "lmk.npy": (t, 68, 2), "lmk_src.npy": (t, 68, 2), "affine.npy": (t, 2, 3), "bbox.npy": (t, 4),
            "lmk_norm.npy": (t, 68, 2), "pca.npy": (t, 20), "mfcc.npy": (t, 4, 13), "pose.npy": (t, 6),
            "blink.npy": (t,),
        }
        for field, shape in expected.items():
            array = npy(files[field])
            assert array.shape == shape, (key, field)
            assert array.dtype == np.float32, (key, field)
            assert np.isfinite(array).all(), (key, field)
        audio, rate = decode_wav(files["audio.wav"])
        assert rate == 16000 and len(audio) == round(t / 25 * 16000) == meta["audio_samples"]
        assert set(meta["fields"]) == set(files)
        lmk = npy(files["lmk.npy"])
        assert lmk.min() > 0 and lmk.max() < 256  # the whole face inside the 256 crop


def test_video_field_is_h264_square_constant_fps(grid_out):
    import av

    files = all_samples(grid_out)["s1/bbaf2n"]
    with av.open(io.BytesIO(files["video.mp4"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (256, 256)
        assert not container.streams.audio
        frames = list(container.decode(stream))
    assert len(frames) == 75 and frames[0].format.name == "yuv420p"
    times = np.array([f.time for f in frames])
    assert np.allclose(np.diff(times), 0.04, atol=1e-3)


def test_grid_metadata(grid_out):
    meta = json.loads(all_samples(grid_out)["s1/bbaf2n"]["json"])
    assert meta["transcript"] == "bin blue at f two now"
    assert [w["word"] for w in meta["words"]] == ["bin", "blue", "at", "f", "two", "now"]
    assert meta["words"][0]["start"] == pytest.approx(23750 / 25000)  # .align units are 1/25000 s
    assert meta["words"][-1]["end"] == pytest.approx(53000 / 25000)
    assert meta["source"]["path"] == "s1/bbaf2n.mpg"
    unknown = json.loads(all_samples(grid_out)["unknown_speaker/lbbc2a"]["json"])
    assert unknown["transcript"] == "lay blue by c two again"
    assert unknown["words"] == [] and unknown["alignment"] == ""  # no alignment file: empty, never null


def test_index_parquet_rows_match_shards(grid_out):
    index = pq.read_table(grid_out / "index.parquet").to_pylist()
    order = {"train": 0, "val": 1, "test": 2}
    assert index == sorted(index, key=lambda row: (order[row["split"]], row["key"]))  # split order, then key
    for row in index:
        shard = read_shard(grid_out / row["shard"])
        assert row["key"] in shard and row["frames"] == 75 and row["fps"] == 25.0
        assert len(row["sha256"]) == 64
    assert pq.read_table(grid_out / "rejects.parquet").num_rows == 0


def test_webdataset_reads_the_shards(grid_out):
    keys = []
    for shard in sorted((grid_out / "shards").rglob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            keys.append(sample["__key__"])
            assert "video.mp4" in sample and "json" in sample
    assert sorted(keys) == ["s1/bbaf2n", "s2/swwp2s", "unknown_speaker/lbbc2a"]


def test_tar_members_are_deterministic(grid_out):
    shards = sorted((grid_out / "shards").rglob("*.tar"))
    assert len(shards) == 3  # one per split
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.mode == 0o644 for m in members)


def test_crema_d_resampled_and_metadata(crema_out):
    samples = all_samples(crema_out)
    assert sorted(samples) == [f"1001/1001_DFA_{e}_XX" for e in ("ANG", "HAP", "NEU", "SAD")]
    meta = json.loads(samples["1001/1001_DFA_ANG_XX"]["json"])
    assert meta["fps_in"] == pytest.approx(29.97, abs=0.01) and meta["fps"] == 25.0
    assert meta["frames"] == 56  # 67 frames at 29.97 fps = 2.236 s -> ceil(2.236 * 25)
    assert meta["emotion"] == "anger" and meta["intensity"] == "unspecified"
    assert meta["transcript"] == "Don't forget a jacket" and meta["sentence_code"] == "DFA"
    assert meta["demographics"] == {"age": 51, "sex": "Male", "race": "Caucasian", "ethnicity": "Not Hispanic"}
    assert meta["split"] == "train"  # one actor: every clip in one split
    index = pq.read_table(crema_out / "index.parquet").to_pylist()
    assert {row["emotion"] for row in index} == {"anger", "happy", "neutral", "sad"}


def test_zero_and_two_workers_give_identical_bytes(grid_out, grid_console_builds):
    other = grid_console_builds["2"]  # the console script with --workers 2 (tests/conftest.py)
    assert json.loads((other / "build_info.json").read_text())["workers"] == 2
    for name in ["dataset.json", "index.parquet", "rejects.parquet", "stats/shape_model.npz"]:
        assert (grid_out / name).read_bytes() == (other / name).read_bytes(), name
    for shard in (grid_out / "shards").rglob("*.tar"):
        assert shard.read_bytes() == (other / shard.relative_to(grid_out)).read_bytes()


def test_rerun_uses_the_cache(grid_out, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(grid_out, out)
    before = (out / "dataset.json").read_bytes()
    build_ok("grid", "--source", str(DATA / "grid"), "--out", str(out))
    info = json.loads((out / "build_info.json").read_text())
    assert info["clips_processed_now"] == 0
    assert (out / "dataset.json").read_bytes() == before


def test_set_and_limit(tmp_path):
    out = tmp_path / "small"
    result = build_ok("grid", "--source", str(DATA / "grid"), "--out", str(out), "--limit", "1",
                      "--set", "crop.size=128", "--set", "shape.n_components=6")
    assert "clips seen: 1" in result.stdout
    files = next(iter(all_samples(out).values()))
    assert npy(files["pca.npy"]).shape == (75, 6)
    import av

    with av.open(io.BytesIO(files["video.mp4"])) as container:
        assert container.streams.video[0].codec_context.width == 128
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["config"]["crop"]["size"] == 128


def test_verify_passes_then_reports_damage(grid_out, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(grid_out, out)
    ok = run_cli("verify", str(out))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 3 shards, 3 samples")
    shard = sorted((out / "shards").rglob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "shards" / "train" / "stray.tar").write_bytes(b"x")
    (out / "index.parquet").unlink()
    bad = run_cli("verify", str(out))
    assert bad.returncode == 1
    assert f"checksum mismatch: {shard.relative_to(out).as_posix()}" in bad.stdout
    assert "extra file: shards/train/stray.tar" in bad.stdout
    assert "missing: index.parquet" in bad.stdout


def test_videos_recipe_on_own_folder(videos_console_build):
    out = videos_console_build  # anna/talk one.mp4, bob/clip.mpg, carl/süß.flv (tests/conftest.py)
    samples = all_samples(out)
    assert len(samples) == 3
    assert "bob/clip" in samples
    assert all(key.replace("/", "").replace("_", "").replace("-", "").isalnum() for key in samples)
    assert {json.loads(s["json"])["split"] for s in samples.values()} == {"train", "val", "test"}


@pytest.mark.parametrize("args, message", [
    (["build", "nosuch", "--source", "{data}/grid", "--out", "{tmp}/o"], "unknown recipe 'nosuch'"),
    (["build", "grid", "--source", "{tmp}/missing", "--out", "{tmp}/o"], "source folder not found"),
    (["build", "grid", "--source", "{tmp}/empty", "--out", "{tmp}/o"], "source folder is empty"),
    (["build", "grid", "--source", "{data}/crema_d", "--out", "{tmp}/o"], "no GRID videos"),
    (["build", "crema-d", "--source", "{data}/grid", "--out", "{tmp}/o"], "no VideoFlash/ folder"),
    (["build", "grid", "--source", "{data}/grid", "--out", "{tmp}/o", "--set", "crop.nope=1"],
     "unknown config key 'crop.nope'"),
    (["build", "grid", "--source", "{data}/grid", "--out", "{tmp}/o", "--set", "crop.size=big"],
     "config key 'crop.size' takes an integer"),
    (["build", "grid", "--source", "{data}/grid", "--out", "{tmp}/o", "--set", "split.protocol=nope"],
     "unknown split protocol 'nope'"),
    (["verify", "{tmp}"], "dataset.json not found"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(data=DATA, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(blocker / "o")])
    assert result.exit_code == 2 and "cannot write to the output folder" in result.output


def test_broken_recipe_names_the_field(tmp_path):
    recipe = tmp_path / "broken.toml"
    recipe.write_text((Path(__file__).parents[1] / "recipes" / "grid.toml").read_text().replace(
        'index = "talkdata.corpora.grid"', "index = 3"))
    result = CliRunner().invoke(main, ["build", str(recipe), "--source", str(DATA / "grid"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "field 'index'" in result.output


def test_recipes_and_help():
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("grid", "crema-d", "videos"))
    shown = CliRunner().invoke(main, ["recipes", "grid"])
    assert "lipnet-unseen" in shown.output and "CC BY 4.0" in shown.output
    for command in ([], ["build"], ["demo"], ["verify"], ["recipes"]):
        assert CliRunner().invoke(main, [*command, "--help"]).exit_code == 0
    keys = CliRunner().invoke(main, ["build", "--list-keys"])
    assert "crop.size = 256" in keys.output


def test_lipnet_protocol_split(grid_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid_out, out)  # the split is a dataset-level setting: the cached clips are reused
    build_ok("grid", "--source", str(DATA / "grid"), "--out", str(out), "--set", 'split.protocol="lipnet-unseen"')
    assert json.loads((out / "build_info.json").read_text())["clips_processed_now"] == 0
    splits = {row["key"]: row["split"] for row in pq.read_table(out / "index.parquet").to_pylist()}
    assert splits == {"s1/bbaf2n": "test", "s2/swwp2s": "test", "unknown_speaker/lbbc2a": "train"}


def test_build_on_an_existing_dask_scheduler(grid_out, tmp_path):
    from dask.distributed import LocalCluster

    # no dashboard, and the scheduler's HTTP server on a free port: 8787 stays free for the builds that
    # other tests run at the same time (a taken port is a warning on their stderr)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        out = tmp_path / "cluster"
        build_ok("grid", "--source", str(DATA / "grid"), "--out", str(out), "--scheduler", cluster.scheduler_address)
    assert (out / "dataset.json").read_bytes() == (grid_out / "dataset.json").read_bytes()


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["build", "grid", "--source", str(DATA / "grid"), "--out", str(tmp_path / "o"),
                                       "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot connect to the dask scheduler" in result.output


def test_dataset_card_header_is_hub_yaml(grid_out, crema_out):
    """The card's YAML header parses and has the fields the Hugging Face Hub reads."""
    import yaml

    for out, license_id in ((grid_out, "cc-by-4.0"), (crema_out, "odbl")):
        manifest = json.loads((out / "dataset.json").read_text())
        text = (out / "README.md").read_text()
        header = yaml.safe_load(text.split("---\n")[1])
        assert header["license"] == license_id and "license_name" not in header
        assert header["talkdata_version_id"] == manifest["version"]
        assert header["size_categories"] == ["n<1K"] and "text-to-video" in header["task_categories"]
        files = header["configs"][0]["data_files"]
        assert {f["split"] for f in files} == {s for s, v in manifest["splits"].items() if v["samples"]}
        for entry in files:
            assert list(out.glob(entry["path"]))  # every pattern matches the shards
        assert f"{manifest['rejects']['count']}" in text and "total duration" in text  # the build's statistics


def test_one_build_per_output_and_leftovers_are_cleared(grid_out, tmp_path):
    """A second build on the same OUT stops with one line while the first holds it; a later build
    removes the temporary files an interrupted one left."""
    import fcntl

    out = tmp_path / "out"
    shutil.copytree(grid_out, out)
    with open(out / ".work" / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = run_cli("build", "grid", "--source", str(DATA / "grid"), "--out", str(out), "--no-progress")
    assert busy.returncode == 2 and busy.stderr.strip() == f"error: another talkdata build is writing to {out}; wait for it to finish"
    leftovers = [out / "README.md.tmp", out / "dataset.json.tmp", out / ".work" / "clips" / "ab" / ".tmp-abc-123" / "video.mp4"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    build_ok("grid", "--source", str(DATA / "grid"), "--out", str(out))
    assert not any(p.exists() for p in leftovers) and not leftovers[2].parent.exists()
    assert run_cli("verify", str(out)).returncode == 0
