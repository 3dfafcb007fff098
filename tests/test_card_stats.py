"""The dataset card is written from statistics collected while packing (``pipeline.pack_stats``):
no shard is read back for it, it agrees with what the shards hold, and it is the same for any
worker count or shard size."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from talkdata.figures.charts import duration_histogram, pose_blink_histograms
from talkdata.figures.choice import Smallest, hash_order
from talkdata.figures.render import read_png
from talkdata.pipeline.build import build
from talkdata.shards import read_shard

from checks import pack_synthetic, synthetic_voxceleb2

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CARD_FILES = ("README.md", "card/contact_sheet.png", "card/durations.png", "card/pose_blink.png",
              "card/shape_modes.png")


def card_bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in CARD_FILES}


def shard_samples(out: Path) -> dict[str, dict[str, bytes]]:
    return {k: v for tar in sorted((out / "shards").rglob("*.tar")) for k, v in read_shard(tar).items()}


def test_smallest_keeps_the_first_keys_of_the_seeded_order_whatever_the_grouping():
    keys = [f"id{i:05d}/clip{i % 7}" for i in range(500)]
    for size, seed in ((6, 0), (40, 3), (600, 0)):
        reference = sorted(hash_order(keys, seed)[:size])
        shuffled = keys[:]
        random.Random(seed).shuffle(shuffled)
        whole = Smallest(size, seed)
        for key in shuffled:
            whole.add(key, key.upper())
        parts = []
        for start in range(0, len(shuffled), 37):  # one per "shard", merged in reverse order
            part = Smallest(size, seed)
            for key in shuffled[start:start + 37]:
                part.add(key, key.upper())
            parts.append(part)
        merged = Smallest(size, seed)
        for part in reversed(parts):
            merged.merge(part)
        for kept in (whole, merged):
            assert [k for k, _ in kept.in_key_order()] == reference
            assert all(item == key.upper() for key, item in kept.in_key_order())


def test_the_card_is_written_without_reading_a_shard_back(grid_dataset, tmp_path, monkeypatch):
    """The shards hold garbage while the card is written: the card is still the one of the build."""
    import talkdata.pipeline.build as build_module

    real = build_module.write_card
    calls = []

    def write_card_over_garbage(out, *args, **kwargs):
        tars = sorted(Path(out, "shards").rglob("*.tar"))
        kept = {tar: tar.read_bytes() for tar in tars}
        for tar in tars:
            tar.write_bytes(b"not a tar file " * 100)
        try:
            real(out, *args, **kwargs)
        finally:
            for tar, data in kept.items():
                tar.write_bytes(data)
        calls.append(len(tars))

    monkeypatch.setattr(build_module, "write_card", write_card_over_garbage)
    out = tmp_path / "grid"
    shutil.copytree(grid_dataset, out)  # its cache points into its shards: the pack reads the samples from them
    for name in CARD_FILES + ("croissant.json",):
        (out / name).unlink()
    build("grid", DATA / "grid", out)
    assert calls == [3]
    assert json.loads((out / "build_info.json").read_text())["clips_processed_now"] == 0
    assert card_bytes(out) == card_bytes(grid_dataset)
    assert (out / "croissant.json").read_bytes() == (grid_dataset / "croissant.json").read_bytes()


def test_the_card_agrees_with_the_shards(grid_dataset):
    samples = shard_samples(grid_dataset)
    rows = pq.read_table(grid_dataset / "index.parquet").to_pylist()
    assert sorted(samples) == sorted(row["key"] for row in rows) and len(rows) == 3

    # pose and blink histograms: the seeded first 1000 clips (here all 3), read from the shards, in key order
    chosen = sorted(hash_order(samples, 0)[:1000])
    pose = np.concatenate([np.load(io.BytesIO(samples[k]["pose.npy"]))[:, :3] for k in chosen])
    blink = np.concatenate([np.load(io.BytesIO(samples[k]["blink.npy"])) for k in chosen])
    assert len(blink) > 100
    expected = pose_blink_histograms(pose, blink, len(chosen), len(rows))
    assert np.array_equal(read_png((grid_dataset / "card" / "pose_blink.png").read_bytes()), expected)

    durations: dict[str, dict[float, int]] = {}
    for row in sorted(rows, key=lambda r: ("train", "val", "test").index(r["split"])):
        counts = durations.setdefault(row["split"], {})
        counts[row["duration"]] = counts.get(row["duration"], 0) + 1
    assert np.array_equal(read_png((grid_dataset / "card" / "durations.png").read_bytes()),
                          duration_histogram(durations))
    card = (grid_dataset / "README.md").read_text()
    lengths = [row["duration"] for row in rows]
    assert (f"- total duration: {sum(lengths):.1f} s; clip length {min(lengths):.2f}-{max(lengths):.2f} s"
            in card)

    # the declared json struct names every key of every sample's json, and only those
    header = card.split("\n---\n", 1)[0]
    json_block = header.split('  - name: "json"\n', 1)[1].split('\n  - name: ', 1)[0]
    declared = {line[len('    - name: "'):-1] for line in json_block.splitlines() if line.startswith('    - name: "')}
    keys = set().union(*(json.loads(s["json"]) for s in samples.values()))
    assert declared == keys


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """24 synthetic VoxCeleb2 clips of 30 frames (cache entries only, as benchmarks/scale.py writes them)."""
    return synthetic_voxceleb2(tmp_path_factory.mktemp("card-synthetic"), 24, 30, 20_000, {"shape.max_frames": 200})


def _pack(synthetic: dict, out: Path, workers: int, max_samples: int) -> dict:
    config = dataclasses.replace(synthetic["config"],
                                 shards=dataclasses.replace(synthetic["config"].shards, max_samples=max_samples))
    return pack_synthetic(synthetic, out, workers, config, keep_cache=True)


def test_the_card_is_the_same_for_any_worker_count_and_shard_size(synthetic, tmp_path):
    one = _pack(synthetic, tmp_path / "a", 0, 3)
    other = _pack(synthetic, tmp_path / "b", 2, 7)
    assert len(one["shards"]) == 8 and len(other["shards"]) == 4
    assert one["version"] != other["version"]  # shards.* is part of the version; the card says which
    cards = {}
    for manifest, out in ((one, tmp_path / "a"), (other, tmp_path / "b")):
        cards[out.name] = card_bytes(out)
        cards[out.name]["README.md"] = cards[out.name]["README.md"].replace(manifest["version"].encode(), b"VERSION")
    assert cards["a"] == cards["b"]

    from talkdata.qa.contact_sheet import contact_sheet  # the same sheet, read from the shards

    assert np.array_equal(read_png((tmp_path / "b" / "card" / "contact_sheet.png").read_bytes()),
                          contact_sheet(tmp_path / "b"))
