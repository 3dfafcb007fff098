"""Builds read by tools the team did not write: Hugging Face ``datasets`` (``load_dataset(OUT)``,
every split, streaming and not), Croissant (``mlcroissant``) and plain webdataset with the README's
per-split patterns, on the GRID, CREMA-D and a ``videos`` build of real clips; and ``video.mp4``
members with their index in front (faststart)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

datasets = pytest.importorskip("datasets", reason="the hf extra (pip install -e '.[hf]') brings datasets")
mlc = pytest.importorskip("mlcroissant", reason="mlcroissant is a dependency of talkdata (pip install -e .)")


def require_torchcodec() -> None:
    """datasets decodes video.mp4 and audio.wav with torchcodec, which needs FFmpeg's shared libraries."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except (ImportError, RuntimeError, OSError) as err:
        reason = (f"torchcodec cannot load ({str(err).splitlines()[0]}): install the hf extra and FFmpeg's "
                  "shared libraries (Debian: apt-get install libavformat59 libavcodec59 libavutil57 ...), as .ci/run does")
        if os.environ.get("TALKDATA_CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def videos_dataset(videos_console_build) -> Path:
    """A ``videos`` build of three real clips of different corpora (license ``other``; tests/conftest.py)."""
    return videos_console_build


def card_header(out: Path) -> str:
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    return text.split("\n---\n", 1)[0]


def check_load_dataset(out: Path, cache: Path) -> None:
    """Every split of ``out`` through ``datasets.load_dataset``, as a table and streaming: the keys,
    the json fields' types, and the decoded video, audio and arrays agree with the shards' own data."""
    require_torchcodec()
    manifest = json.loads((out / "dataset.json").read_text())
    index = {row["key"]: row for row in pq.read_table(out / "index.parquet").to_pylist()}
    splits = [s for s, info in manifest["splits"].items() if info["samples"]]
    declared = datasets.load_dataset_builder(str(out), cache_dir=str(cache)).info.features
    assert declared is not None and "json" in declared and "video.mp4" in declared  # from the card, not inferred
    assert isinstance(declared["video.mp4"], datasets.Video) and isinstance(declared["audio.wav"], datasets.Audio)
    for streaming in (False, True):
        loaded = datasets.load_dataset(str(out), cache_dir=str(cache), streaming=streaming)
        assert sorted(loaded) == sorted(splits)
        for split in splits:
            examples = list(loaded[split])
            keys = sorted(e["__key__"] for e in examples)
            assert keys == sorted(k for k, row in index.items() if row["split"] == split)
            for example in examples:
                meta = example["json"]
                assert meta["key"] == example["__key__"] and meta["split"] == split
                frames = meta["frames"]
                assert example["lmk.npy"] is not None and np.asarray(example["lmk.npy"]).shape == (frames, 68, 2)
                assert np.asarray(example["pose.npy"]).shape == (frames, 6)
                video = example["video.mp4"]
                assert video.metadata.num_frames == frames
                batch = video.get_frames_in_range(0, 1)
                assert tuple(batch.data.shape) == (1, 3, meta["crop_size"], meta["crop_size"])
                audio = example["audio.wav"].get_all_samples()
                assert audio.sample_rate == meta["audio_rate"] and audio.data.shape[-1] == meta["audio_samples"]
                for name, value in meta.items():  # strings and lists are never null
                    spec = declared["json"][name]
                    if isinstance(spec, datasets.Value) and spec.dtype == "string":
                        assert isinstance(value, str), (name, value)
                    if isinstance(spec, (datasets.List, list)):
                        assert isinstance(value, list), (name, value)


def test_grid_loads_with_datasets(grid_dataset, tmp_path):
    """The GRID test split's clip has no alignment file: its alignment is "" and words [] (train has
    text and a word list), so the columns have one type."""
    check_load_dataset(grid_dataset, tmp_path / "cache")
    test = datasets.load_dataset(str(grid_dataset), cache_dir=str(tmp_path / "cache"), split="test")
    assert test[0]["json"]["alignment"] == "" and test[0]["json"]["words"] == []
    train = datasets.load_dataset(str(grid_dataset), cache_dir=str(tmp_path / "cache"), split="train")
    assert train[0]["json"]["alignment"].endswith(".align") and len(train[0]["json"]["words"]) == 6


def test_crema_d_loads_with_datasets(crema_dataset, tmp_path):
    check_load_dataset(crema_dataset, tmp_path / "cache")


def test_videos_build_loads_and_links_its_license(videos_dataset, tmp_path):
    header = card_header(videos_dataset)
    assert "license: other" in header.splitlines()
    assert "license_link: 'README.md#license'" in header.splitlines()
    assert "\n## License\n" in (videos_dataset / "README.md").read_text()
    check_load_dataset(videos_dataset, tmp_path / "cache")


def test_card_declares_the_features(grid_dataset):
    header = card_header(grid_dataset)
    assert "dataset_info:\n  config_name: default\n  features:\n" in header
    import yaml

    info = yaml.safe_load(header[4:])["dataset_info"]
    features = datasets.Features._from_yaml_list(info["features"])
    assert features["lmk.npy"] == datasets.List(datasets.List(datasets.List(datasets.Value("float32"))))
    assert features["json"]["alignment"] == datasets.Value("string")
    assert features["json"]["frames"] == datasets.Value("int64")
    assert features["__key__"] == datasets.Value("string")


def mlcroissant_document(out: Path) -> bytes:
    """croissant.json as ``mlcroissant`` writes it for a build: its nodes made with mlcroissant's own
    classes from the manifest and the shards' members, serialised by ``Metadata.to_json()``."""
    from talkdata.pipeline.croissant import INDEX_COLUMNS
    from talkdata.shards import read_shard

    manifest = json.loads((out / "dataset.json").read_text())
    recipe, shards = manifest["recipe"], manifest["shards"]
    members = sorted({name for entry in shards for files in read_shard(out / entry["path"]).values() for name in files})
    formats = {"npy": "application/x-npy", "wav": "audio/wav", "mp4": "video/mp4", "json": "application/json"}
    files = [mlc.FileObject(id=e["path"], name=e["path"], content_url=e["path"], encoding_formats=["application/x-tar"],
                            sha256=e["sha256"], content_size=f"{e['bytes']} B",
                            description=f"WebDataset shard of the {e['split']} split, {e['samples']} samples")
             for e in shards]
    index = manifest["artifacts"]["index.parquet"]
    files.append(mlc.FileObject(id="index.parquet", name="index.parquet", content_url="index.parquet",
                                encoding_formats=["application/x-parquet"], sha256=index["sha256"],
                                content_size=f"{index['bytes']} B",
                                description="one row per sample: key, split, shard, per-sample metadata"))
    files += [mlc.FileSet(id=f"member-{m}", name=f"member-{m}", contained_in=[e["path"] for e in shards],
                          includes=[f"*/*.{m}"], encoding_formats=[formats[m.rsplit(".", 1)[-1]]],
                          description=f"the {m} member of every sample (tar member SPEAKER/CLIP.{m})") for m in members]
    fields = [mlc.Field(id=f"samples/{name}", name=name, description=text, data_types=[getattr(mlc.DataType, kind)],
                        source=mlc.Source(file_object="index.parquet", extract=mlc.Extract(column=name)))
              for name, (kind, text) in INDEX_COLUMNS.items()]
    samples = mlc.RecordSet(id="samples", name="samples", key=["samples/key"], fields=fields,
                            description="the samples of the build, from index.parquet")
    metadata = mlc.Metadata(
        name=f"{manifest['name']}-talkdata-{manifest['version']}",
        description=f"{recipe['title']} (talkdata build, version id {manifest['version']}). {recipe['description']}",
        url=recipe.get("homepage") or None, license=[recipe["license"]], cite_as=recipe.get("citation") or None,
        keywords=["talking-face", "webdataset", "talkdata"], distribution=files, record_sets=[samples])
    return (json.dumps(metadata.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@pytest.mark.parametrize("fixture", ["grid_dataset", "crema_dataset", "videos_dataset"])
def test_croissant_is_the_document_mlcroissant_writes(fixture, request):
    """talkdata writes the JSON-LD itself (no mlcroissant import in a build): the same bytes as mlcroissant's."""
    out = request.getfixturevalue(fixture)
    assert (out / "croissant.json").read_bytes() == mlcroissant_document(out)


@pytest.mark.parametrize("fixture", ["grid_dataset", "crema_dataset"])
def test_croissant_is_valid_and_lists_the_samples(fixture, request):
    out = request.getfixturevalue(fixture)
    manifest = json.loads((out / "dataset.json").read_text())
    dataset = mlc.Dataset(jsonld=str(out / "croissant.json"))  # validates: raises on an error
    files = {entry["path"]: entry["sha256"] for entry in manifest["shards"]}
    described = json.loads((out / "croissant.json").read_text())
    listed = {d["contentUrl"]: d["sha256"] for d in described["distribution"] if d["@type"] == "cr:FileObject"}
    assert {k: v for k, v in listed.items() if k.startswith("shards/")} == files
    assert listed["index.parquet"] == manifest["artifacts"]["index.parquet"]["sha256"]
    records = list(dataset.records("samples"))
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert sorted(r["samples/key"].decode() for r in records) == sorted(row["key"] for row in index)
    by_key = {row["key"]: row for row in index}
    for record in records:
        row = by_key[record["samples/key"].decode()]
        assert record["samples/split"].decode() == row["split"] and int(record["samples/frames"]) == row["frames"]


def _top_level_boxes(data: bytes) -> list[str]:
    """The mp4's top-level box types, in file order (ISO BMFF: 32-bit size, 4-byte type)."""
    import struct

    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def test_video_members_have_the_index_in_front(grid_dataset):
    """faststart: moov comes before mdat, so the first bytes of a member are enough to start
    decoding; the first half of the file already gives frames."""
    import av

    from talkdata.shards import read_shard

    checked = []
    for shard in sorted((grid_dataset / "shards").rglob("*.tar")):
        for key, files in read_shard(shard).items():
            checked.append(key)
            video = files["video.mp4"]
            boxes = _top_level_boxes(video)
            assert boxes.index("moov") < boxes.index("mdat"), (key, boxes)
            with av.open(io.BytesIO(video[: len(video) // 2])) as container:
                assert container.streams.video[0].frames == json.loads(files["json"])["frames"]
                decoded = 0
                try:
                    for _ in container.decode(video=0):
                        decoded += 1
                except av.error.FFmpegError:
                    pass  # the cut-off end
            assert decoded >= 10, key
    assert len(checked) == 3  # every GRID sample


def test_documented_per_split_patterns_read_every_sample_with_webdataset(grid_dataset):
    """The README's patterns: a glob and a brace pattern per split, read by plain webdataset."""
    import glob

    import webdataset as wds

    manifest = json.loads((grid_dataset / "dataset.json").read_text())
    assert {split: info["samples"] for split, info in manifest["splits"].items()} == {"train": 1, "val": 1, "test": 1}
    for split, info in manifest["splits"].items():
        if not info["samples"]:
            continue
        brace = str(grid_dataset / "shards" / split / f"{manifest['name']}-{split}-{{000000..{info['shards'] - 1:06d}}}.tar")
        listed = sorted(glob.glob(str(grid_dataset / "shards" / split / "*.tar")))
        assert listed == sorted(str(grid_dataset / e["path"]) for e in manifest["shards"] if e["split"] == split)
        for urls in (brace, listed):
            keys = [sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False)]
            assert len(keys) == info["samples"], (split, urls)
