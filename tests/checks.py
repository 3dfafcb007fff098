"""Assertions shared by the command-line tests."""

from __future__ import annotations

import json
from pathlib import Path

from talkdata.shards import read_shard


def error_line(result) -> str:
    """The one ``error:`` line of a click result that failed as the README promises (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def sample_json(out: Path) -> dict[str, dict]:
    """Every sample's decoded json in a built dataset, by key."""
    found = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        for key, fields in read_shard(shard).items():
            found[key] = json.loads(fields["json"])
    return found


def scale_benchmark():
    """``benchmarks/scale.py`` as a module (its synthetic corpus writers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_voxceleb2(root: Path, clips: int, frames: int, video_bytes: int, sets: dict) -> dict:
    """``clips`` synthetic VoxCeleb2 clips of ``frames`` frames: the tree under ``root/tree`` and their cache
    entries under ``root/cache/.work`` (as benchmarks/scale.py writes them, no face pipeline run)."""
    from talkdata.config import pinned, resolve
    from talkdata.pipeline.build import index_clips
    from talkdata.pipeline.cache import cache_key
    from talkdata.recipe import load_recipe

    bench = scale_benchmark()
    bench.vox_tree(root / "tree", clips, frames)
    recipe = load_recipe("voxceleb2")
    config = resolve(recipe.defaults, recipe.name, sets)
    records = index_clips(recipe, root / "tree", config)
    keys = [cache_key(r, pinned(config).config) for r in records]
    bench.synth_entries(records, keys, root / "cache" / ".work", frames, video_bytes)
    return {"root": root, "recipe": recipe, "config": config, "records": records, "keys": keys}


def pack_synthetic(synthetic: dict, out: Path, workers: int, config=None, keep_cache: bool = False) -> dict:
    """The dataset-level stages over a copy of ``synthetic``'s cache in ``out``; the manifest."""
    import shutil

    from talkdata.pipeline.build import mark_output, pack
    from talkdata.pipeline.cache import ClipCache
    from talkdata.pipeline.executor import Executor

    shutil.copytree(synthetic["root"] / "cache", out)
    mark_output(out / ".work", synthetic["recipe"].name)
    with Executor(workers, None) as executor:
        manifest, _ = pack(out, synthetic["recipe"], config or synthetic["config"], synthetic["records"],
                           synthetic["keys"], ClipCache(out / ".work"), None, executor, keep_cache)
    return manifest


def private_home(tmp_path: Path, monkeypatch) -> Path:
    """A data root of the test's own (``TALKDATA_HOME``), no ``~/.netrc``, and quick HTTP retries."""
    from talkdata.acquire import http

    root = tmp_path / "talkdata-home"
    monkeypatch.setenv("TALKDATA_HOME", str(root))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(http, "DEFAULT_POLICY", http.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02))
    return root
