"""``OUT/croissant.json``: the build described in Croissant (MLCommons' dataset metadata format).

Written with the ``mlcroissant`` package from the manifest and the field types of
:mod:`talkdata.pipeline.hub_features`: every shard and ``index.parquet`` as a file with its sha256, the
members of the shards as file sets (one per field), and the ``samples`` record set read from
``index.parquet`` (key, split, shard, speaker, clip, frames, fps, duration, per-sample sha256).
Like the card it is outside the version; its bytes depend only on the manifest and the shards.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic

CROISSANT = "croissant.json"

#: index.parquet columns of the ``samples`` record set: name -> (Croissant type, description)
INDEX_COLUMNS = {
    "key": ("TEXT", "sample key SPEAKER/CLIP (the WebDataset __key__)"),
    "split": ("TEXT", "train, val or test"),
    "shard": ("TEXT", "the shard holding the sample, relative to the dataset root"),
    "speaker": ("TEXT", "speaker id"),
    "clip": ("TEXT", "clip id"),
    "frames": ("INT64", "frames T of every per-frame field"),
    "fps": ("FLOAT64", "output frame rate"),
    "duration": ("FLOAT64", "T / fps seconds"),
    "sha256": ("TEXT", "content hash of the sample (its fields' sha256s)"),
}

_MEMBER_FORMATS = {"npy": "application/x-npy", "wav": "audio/wav", "mp4": "video/mp4", "json": "application/json"}


def croissant_metadata(manifest: dict, types: dict) -> dict:
    """The Croissant JSON-LD of a build (a dict), written with mlcroissant."""
    import mlcroissant as mlc

    recipe = manifest["recipe"]
    files = []
    shards = manifest.get("shards", [])
    for entry in shards:
        files.append(mlc.FileObject(id=entry["path"], name=entry["path"], content_url=entry["path"],
                                    encoding_formats=["application/x-tar"], sha256=entry["sha256"],
                                    content_size=f"{entry['bytes']} B",
                                    description=f"WebDataset shard of the {entry['split']} split, "
                                                f"{entry['samples']} samples"))
    index = manifest.get("artifacts", {}).get("index.parquet")
    if index:
        files.append(mlc.FileObject(id="index.parquet", name="index.parquet", content_url="index.parquet",
                                    encoding_formats=["application/x-parquet"], sha256=index["sha256"],
                                    content_size=f"{index['bytes']} B",
                                    description="one row per sample: key, split, shard, per-sample metadata"))
    shard_ids = [entry["path"] for entry in shards]
    for field in types:
        extension = field.rsplit(".", 1)[-1]
        files.append(mlc.FileSet(id=f"member-{field}", name=f"member-{field}", contained_in=shard_ids,
                                 includes=[f"*/*.{field}"],
                                 encoding_formats=[_MEMBER_FORMATS.get(extension, "application/octet-stream")],
                                 description=f"the {field} member of every sample (tar member SPEAKER/CLIP.{field})"))
    record_sets = []
    if index:
        fields = [mlc.Field(id=f"samples/{name}", name=name, description=text,
                            data_types=[getattr(mlc.DataType, kind)],
                            source=mlc.Source(file_object="index.parquet", extract=mlc.Extract(column=name)))
                  for name, (kind, text) in INDEX_COLUMNS.items()]
        record_sets.append(mlc.RecordSet(id="samples", name="samples", key=["samples/key"], fields=fields,
                                         description="the samples of the build, from index.parquet"))
    metadata = mlc.Metadata(
        name=f"{manifest.get('name', 'dataset')}-talkdata-{manifest['version']}",
        description=f"{recipe['title']} (talkdata build, version id {manifest['version']}). {recipe['description']}",
        url=recipe.get("homepage") or None,
        license=[recipe["license"]],
        cite_as=recipe.get("citation") or None,
        keywords=["talking-face", "webdataset", "talkdata"],
        distribution=files,
        record_sets=record_sets,
    )
    return metadata.to_json()


def write_croissant(out: Path, manifest: dict, types: dict) -> None:
    data = croissant_metadata(manifest, types)
    write_atomic(Path(out) / CROISSANT, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
