"""``talkdata diff``: comparing two built versions of the GRID samples (config, versions, recipe,
artifacts, samples added / removed / changed per split), as text, as JSON, and its exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from talkdata.cli import main
from talkdata.diff import diff_datasets, render_text
from talkdata.files import sha256_file
from talkdata.manifest import canonical_json, version_id

DATA = Path(__file__).parent / "data"
KEYS = ["s1/bbaf2n", "s2/swwp2s", "unknown_speaker/lbbc2a"]


def run_diff(a: Path, b: Path, *extra: str):
    return CliRunner().invoke(main, ["diff", str(a), str(b), *extra])


def diff_json(a: Path, b: Path) -> tuple[int, dict]:
    result = run_diff(a, b, "--json")
    return result.exit_code, json.loads(result.output)


def index_rows(out: Path) -> dict[str, dict]:
    """key -> index.parquet row, read without talkdata."""
    return {row["key"]: row for row in pq.read_table(out / "index.parquet").to_pylist()}


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".work", "build_info.json"))
    return dst


@pytest.fixture(scope="module")
def crop128(tmp_path_factory) -> Path:
    """The GRID samples built from scratch with one config value changed."""
    from talkdata.pipeline.build import build

    out = tmp_path_factory.mktemp("diff-crop") / "crop128"
    build("grid", DATA / "grid", out, sets={"crop.size": 128})
    return out


@pytest.fixture(scope="module")
def limit2(tmp_path_factory) -> Path:
    """The first two GRID clips only (``--limit 2``), built from scratch."""
    from talkdata.pipeline.build import build

    out = tmp_path_factory.mktemp("diff-limit") / "limit2"
    build("grid", DATA / "grid", out, limit=2)
    return out


def test_a_dataset_and_its_copy_are_identical(grid_dataset, tmp_path):
    version = json.loads((grid_dataset / "dataset.json").read_text())["version"]
    same = run_diff(grid_dataset, grid_dataset)
    assert same.exit_code == 0, same.output
    assert f"identical: same version {version}, 3 samples" in same.output
    copy = copy_dataset(grid_dataset, tmp_path / "elsewhere" / "copy")
    code, data = diff_json(grid_dataset, copy)
    assert code == 0
    assert data["format"] == "talkdata-diff/1" and data["identical"] is True and data["same_inputs"] is True
    assert data["a"] == {"path": str(grid_dataset), "name": "grid", "version": version}
    assert data["b"] == {"path": str(copy), "name": "grid", "version": version}
    for section in ("recipe", "config", "toolkit", "dependencies", "source", "other", "artifacts", "shards"):
        assert data[section] == [], section
    assert data["samples"]["counts"] == {"added": 0, "removed": 0, "changed": 0, "moved": 0, "unchanged": 3}
    assert data["samples"]["moved"] == []


def test_prose_outside_the_version_is_listed_but_the_datasets_are_identical(grid_dataset, tmp_path):
    """An edited recipe description changes no byte of the data: same version, exit 0, the edit listed."""
    copy = copy_dataset(grid_dataset, tmp_path / "reworded")
    manifest = json.loads((copy / "dataset.json").read_text())
    before = manifest["recipe"].get("description", "")
    manifest["recipe"]["description"] = before + " Reworded."
    (copy / "dataset.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    result = run_diff(grid_dataset, copy)
    assert result.exit_code == 0, result.output
    assert f"identical: same version {manifest['version']}, 3 samples" in result.output
    assert "outside the version (no data byte differs):" in result.output
    assert "description" in result.output.split("outside the version")[1]
    code, data = diff_json(grid_dataset, copy)
    assert code == 0 and data["identical"] is True
    assert [c["key"] for c in data["recipe"]] == ["description"]


def test_one_config_value_changes_every_sample(grid_dataset, crop128):
    result = run_diff(grid_dataset, crop128)
    assert result.exit_code == 1, result.output
    assert "crop.size: 256 -> 128" in result.output
    assert "samples: 0 added, 0 removed, 3 changed, 0 moved, 0 unchanged" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("different: version ")

    code, data = diff_json(grid_dataset, crop128)
    assert code == 1 and data["identical"] is False and data["same_inputs"] is False
    assert data["config"] == [{"key": "crop.size", "status": "changed", "a": 256, "b": 128}]  # exactly that key
    for section in ("recipe", "toolkit", "dependencies", "source", "other"):
        assert data[section] == [], section
    old, new = index_rows(grid_dataset), index_rows(crop128)
    assert sorted(old) == sorted(new) == KEYS  # same keys ...
    changed = {}
    for split, info in data["samples"]["splits"].items():
        assert info["added"] == [] and info["removed"] == [] and info["unchanged"] == 0
        for entry in info["changed"]:
            changed[entry["key"]] = (split, entry["a"], entry["b"])
    # ... every one changed, in its split, with the hashes index.parquet holds
    assert changed == {k: (old[k]["split"], old[k]["sha256"], new[k]["sha256"]) for k in KEYS}
    assert all(a != b for _, a, b in changed.values())
    # artifacts: reported exactly when their bytes differ (the shape model is fitted on source-frame
    # landmarks, which the crop size does not touch)
    differing = sorted(name for name in ("index.parquet", "rejects.parquet", "stats/shape_model.npz")
                       if sha256_file(grid_dataset / name) != sha256_file(crop128 / name))
    assert "index.parquet" in differing
    assert sorted(entry["path"] for entry in data["artifacts"]) == differing
    assert all(entry["status"] == "changed" for entry in data["artifacts"])
    assert sorted(e["path"] for e in data["shards"]) == sorted(
        str(p.relative_to(grid_dataset)) for p in (grid_dataset / "shards").rglob("*.tar"))


def test_removed_sample_is_reported_in_its_split(grid_dataset, limit2):
    old = index_rows(grid_dataset)
    removed_split = old["unknown_speaker/lbbc2a"]["split"]  # records are sorted by key: --limit 2 drops it
    code, data = diff_json(grid_dataset, limit2)
    assert code == 1
    splits = data["samples"]["splits"]
    assert splits[removed_split]["removed"] == [{"key": "unknown_speaker/lbbc2a",
                                                 "sha256": old["unknown_speaker/lbbc2a"]["sha256"]}]
    assert data["samples"]["counts"] == {"added": 0, "removed": 1, "changed": 0, "moved": 0, "unchanged": 2}
    assert data["config"] == []
    assert {"key": "clips_indexed", "status": "changed", "a": 3, "b": 2} in data["source"]
    assert [e["path"] for e in data["shards"] if e["status"] == "removed"] == [
        f"shards/{removed_split}/grid-{removed_split}-000000.tar"]
    text = run_diff(grid_dataset, limit2).output
    assert f"  {removed_split}: 0 added, 1 removed, 0 changed, 0 unchanged" in text
    assert f"    - unknown_speaker/lbbc2a  {old['unknown_speaker/lbbc2a']['sha256'][:12]}" in text
    # the other direction: the sample comes back as added
    code, back = diff_json(limit2, grid_dataset)
    assert code == 1
    assert [e["key"] for e in back["samples"]["splits"][removed_split]["added"]] == ["unknown_speaker/lbbc2a"]


def _rewrite(out: Path, edit_manifest, edit_rows) -> None:
    """Change a copied dataset the way another build would have: manifest fields and index rows,
    with the version id recomputed like ``write_manifest`` does."""
    manifest = json.loads((out / "dataset.json").read_text())
    edit_manifest(manifest)
    manifest["version"] = version_id(manifest)
    (out / "dataset.json").write_text(canonical_json(manifest))
    rows = pq.read_table(out / "index.parquet").to_pylist()
    pq.write_table(pa.Table.from_pylist(edit_rows(rows)), out / "index.parquet")


def test_versions_recipe_artifacts_and_moved_samples(grid_dataset, tmp_path):
    other = copy_dataset(grid_dataset, tmp_path / "other")
    old_rows = index_rows(grid_dataset)
    old_manifest = json.loads((grid_dataset / "dataset.json").read_text())
    moved_from = old_rows["s1/bbaf2n"]["split"]
    moved_to = next(s for s in ("train", "val", "test") if s != moved_from)

    def edit_manifest(m):
        m["toolkit"]["talkdata"] = "9.9.9"
        m["dependencies"]["numpy"] = "0.0.1"
        del m["dependencies"]["scipy"]
        m["dependencies"]["torch"] = "2.5.0"
        m["recipe"]["title"] = "GRID, renamed"
        m["artifacts"]["stats/shape_model.npz"]["sha256"] = "0" * 64

    def edit_rows(rows):
        for row in rows:
            if row["key"] == "s1/bbaf2n":
                row["split"] = moved_to
            if row["key"] == "s2/swwp2s":
                row["sha256"] = "f" * 64
        rows = [r for r in rows if r["key"] != "unknown_speaker/lbbc2a"]
        return rows + [dict(rows[0], key="s3/new_clip", split="test", sha256="e" * 64)]

    _rewrite(other, edit_manifest, edit_rows)
    result = diff_datasets(grid_dataset, other)
    data = result.to_dict()
    assert not result.identical
    assert data["toolkit"] == [{"key": "talkdata", "status": "changed", "a": old_manifest["toolkit"]["talkdata"],
                                "b": "9.9.9"}]
    assert data["dependencies"] == [
        {"key": "numpy", "status": "changed", "a": old_manifest["dependencies"]["numpy"], "b": "0.0.1"},
        {"key": "scipy", "status": "removed", "a": old_manifest["dependencies"]["scipy"], "b": None},
        {"key": "torch", "status": "added", "a": None, "b": "2.5.0"},
    ]
    assert data["recipe"] == [{"key": "title", "status": "changed", "a": old_manifest["recipe"]["title"],
                               "b": "GRID, renamed"}]
    assert data["config"] == [] and data["source"] == []
    assert data["artifacts"] == [{"path": "stats/shape_model.npz", "status": "changed",
                                  "a": old_manifest["artifacts"]["stats/shape_model.npz"]["sha256"], "b": "0" * 64}]
    samples = data["samples"]
    assert samples["moved"] == [{"key": "s1/bbaf2n", "a_split": moved_from, "b_split": moved_to,
                                 "a": old_rows["s1/bbaf2n"]["sha256"], "b": old_rows["s1/bbaf2n"]["sha256"]}]
    s2 = old_rows["s2/swwp2s"]
    assert samples["splits"][s2["split"]]["changed"] == [{"key": "s2/swwp2s", "a": s2["sha256"], "b": "f" * 64}]
    assert samples["splits"]["test"]["added"] == [{"key": "s3/new_clip", "sha256": "e" * 64}]
    gone = old_rows["unknown_speaker/lbbc2a"]
    assert samples["splits"][gone["split"]]["removed"] == [{"key": "unknown_speaker/lbbc2a", "sha256": gone["sha256"]}]
    assert samples["counts"] == {"added": 1, "removed": 1, "changed": 1, "moved": 1, "unchanged": 0}
    text = render_text(result)
    for line in (f"  talkdata: {old_manifest['toolkit']['talkdata']} -> 9.9.9", "  torch: (absent) -> 2.5.0",
                 f"  scipy: {old_manifest['dependencies']['scipy']} -> (absent)",
                 f"  title: {old_manifest['recipe']['title']} -> GRID, renamed",
                 f"    > s1/bbaf2n  {moved_from} -> {moved_to}  (same content)",
                 f"  changed  stats/shape_model.npz  "
                 f"{old_manifest['artifacts']['stats/shape_model.npz']['sha256'][:12]} -> {'0' * 12}"):
        assert line in text.splitlines(), (line, text)


def test_exit_codes_of_the_console_script(grid_dataset, crop128):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "talkdata.cli", "diff", *args], capture_output=True, text=True,
                               timeout=300)

    assert CliRunner().invoke(main, ["diff", "--help"]).exit_code == 0
    same = run(str(grid_dataset), str(grid_dataset))
    assert same.returncode == 0 and "identical" in same.stdout, same.stderr
    different = run(str(grid_dataset), str(crop128), "--json")
    assert different.returncode == 1, different.stderr
    assert json.loads(different.stdout)["config"][0]["key"] == "crop.size"


def test_bad_input_is_one_error_line_and_exit_2(grid_dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    broken = copy_dataset(grid_dataset, tmp_path / "broken")
    (broken / "dataset.json").write_text("{not json")
    no_index = copy_dataset(grid_dataset, tmp_path / "no_index")
    (no_index / "index.parquet").unlink()
    cases = [
        (tmp_path / "empty", "dataset.json not found"),
        (tmp_path / "missing", "is not a folder"),
        (broken, "is not valid JSON"),
        (no_index, "index.parquet not found"),
    ]
    for folder, message in cases:
        for args in ([str(grid_dataset), str(folder)], [str(folder), str(grid_dataset)]):
            result = CliRunner().invoke(main, ["diff", *args])
            lines = [line for line in result.output.splitlines() if line.strip()]
            assert result.exit_code == 2, (folder, result.output)
            assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_same_inputs_but_other_content_is_flagged(grid_dataset, tmp_path):
    """What a non-reproducible build looks like: nothing in the inputs differs, one sample does."""
    other = copy_dataset(grid_dataset, tmp_path / "other")
    rows = index_rows(grid_dataset)
    shard = rows["s2/swwp2s"]["shard"]

    def edit_manifest(m):
        for entry in m["shards"]:
            if entry["path"] == shard:
                entry["sha256"] = "a" * 64

    def edit_rows(table):
        return [dict(r, sha256="b" * 64) if r["key"] == "s2/swwp2s" else r for r in table]

    _rewrite(other, edit_manifest, edit_rows)
    code, data = diff_json(grid_dataset, other)
    assert code == 1 and data["identical"] is False and data["same_inputs"] is True
    assert data["samples"]["counts"]["changed"] == 1 and [e["path"] for e in data["shards"]] == [shard]
    text = run_diff(grid_dataset, other).output
    assert "note: same recipe, config, versions and source files, yet different content" in text
    assert "note:" not in run_diff(grid_dataset, copy_dataset(grid_dataset, tmp_path / "same")).output


# ---------------------------------------------------------------- verify: the manifest is checked, not trusted


def run_verify(out: Path):
    return CliRunner().invoke(main, ["verify", str(out)])


def _edit(out: Path, edit) -> None:
    manifest = json.loads((out / "dataset.json").read_text())
    edit(manifest)
    (out / "dataset.json").write_text(canonical_json(manifest))


def test_verify_recomputes_the_version_and_checks_counts(grid_dataset, tmp_path):
    """Each edit of dataset.json that the old verify accepted ("ok", exit 0) is now reported."""
    base = json.loads((grid_dataset / "dataset.json").read_text())
    assert run_verify(grid_dataset).exit_code == 0
    first = base["shards"][0]
    edits = {
        "added_field": (lambda m: m.update(note="hand-edited"), "version mismatch"),
        "config_value": (lambda m: m["config"]["crop"].update(size=128), "version mismatch"),
        "version": (lambda m: m.update(version="0123456789abcdef"), "version mismatch"),
        "split_count": (lambda m: m["splits"][first["split"]].update(samples=7),
                        f"split {first['split']}: splits says 7 samples, its shards hold {first['samples']}"),
    }
    for name, (edit, message) in edits.items():
        out = copy_dataset(grid_dataset, tmp_path / name)
        _edit(out, edit)
        result = run_verify(out)
        assert result.exit_code == 1, (name, result.output)
        assert any(line.startswith(message) for line in result.output.splitlines()), (name, result.output)

    # a shard entry removed together with its file, the version recomputed: the counts and the index disagree
    out = copy_dataset(grid_dataset, tmp_path / "removed_shard")
    (out / first["path"]).unlink()

    def drop(m):
        m["shards"] = m["shards"][1:]
        m["version"] = version_id(m)

    _edit(out, drop)
    lines = run_verify(out).output.splitlines()
    assert f"split {first['split']}: splits says {first['samples']} samples, its shards hold 0" in lines
    assert f"index.parquet lists {first['samples']} samples in {first['path']}, the shard list says 0" in lines
    assert not any(line.startswith("version mismatch") for line in lines)


def test_version_ignores_prose_and_paths_but_not_content(grid_dataset):
    manifest = json.loads((grid_dataset / "dataset.json").read_text())
    assert version_id(manifest) == manifest["version"]
    assert "webdataset" not in manifest["dependencies"]  # readers only: it does not write the bytes
    assert set(manifest["models"]) == {"dlib_landmarks"}
    assert manifest["models"]["dlib_landmarks"]["sha256"] == sha256_file(
        __import__("talkdata.face.landmarks", fromlist=["dlib_model_path"]).dlib_model_path())
    prose = json.loads(json.dumps(manifest))
    prose["recipe"]["download"] = {"about": "a new download note"}
    prose["recipe"]["description"] += " Edited."
    prose["models"]["dlib_landmarks"]["path"] = "/elsewhere/model.dat"
    prose["config"]["audio"]["deepspeech_model"] = "/some/other/path.onnx"
    assert version_id(prose) == manifest["version"]
    for edit in (lambda m: m["models"]["dlib_landmarks"].update(sha256="0" * 64),
                 lambda m: m["dependencies"].update(numpy="0.0.1"),
                 lambda m: m["recipe"].update(index="talkdata.sources.videos"),
                 lambda m: m["config"]["crop"].update(size=128)):
        changed = json.loads(json.dumps(manifest))
        edit(changed)
        assert version_id(changed) != manifest["version"]


def test_malformed_manifest_is_one_error_line(grid_dataset, tmp_path):
    cases = {"empty": "", "list": "[]", "no_keys": "{}", "no_shards": None}
    for name, text in cases.items():
        out = copy_dataset(grid_dataset, tmp_path / name)
        if text is None:
            _edit(out, lambda m: m.pop("shards"))
        else:
            (out / "dataset.json").write_text(text)
        result = run_verify(out)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (name, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "dataset.json" in lines[0], (name, result.output)
        assert "Traceback" not in result.output


def test_another_model_is_an_input_difference(grid_dataset, tmp_path):
    """A model with other bytes (same path) is listed under models and makes the inputs differ."""
    other = copy_dataset(grid_dataset, tmp_path / "other_model")
    old = json.loads((grid_dataset / "dataset.json").read_text())["models"]["dlib_landmarks"]
    _rewrite(other, lambda m: m["models"]["dlib_landmarks"].update(sha256="1" * 64), lambda rows: rows)
    code, data = diff_json(grid_dataset, other)
    assert code == 1 and data["same_inputs"] is False and data["a"]["version"] != data["b"]["version"]
    assert data["models"] == [{"key": "dlib_landmarks.sha256", "status": "changed", "a": old["sha256"], "b": "1" * 64}]
    assert f"  dlib_landmarks.sha256: {old['sha256'][:57]}... -> {'1' * 57}..." in run_diff(grid_dataset, other).output


def test_a_build_versioned_by_the_earlier_rule_still_verifies(grid_dataset, tmp_path):
    """Builds made before the version covered content only hashed the whole manifest: such a
    version id is accepted, and an edit of such a manifest is still found."""
    import hashlib

    out = copy_dataset(grid_dataset, tmp_path / "older")

    def whole(m):
        m["recipe"]["title"] = "as an older build recorded it"
        body = {k: v for k, v in m.items() if k != "version"}
        m["version"] = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]

    _edit(out, whole)
    assert run_verify(out).exit_code == 0
    _edit(out, lambda m: m["config"]["crop"].update(size=128))
    result = run_verify(out)
    assert result.exit_code == 1 and result.output.startswith("version mismatch")
