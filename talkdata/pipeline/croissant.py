"""``OUT/croissant.json``: the build described in Croissant 1.0 (MLCommons' dataset metadata format).

The JSON-LD is written here directly, from the manifest and the field types of
:mod:`talkdata.pipeline.hub_features`: every shard and ``index.parquet`` as a file with its sha256, the
members of the shards as file sets (one per field), and the ``samples`` record set read from
``index.parquet`` (key, split, shard, speaker, clip, frames, fps, duration, per-sample sha256). It is
the document ``mlcroissant`` writes for the same nodes (``mlcroissant.Metadata(...).to_json()``: the
same keys, a one-element list of most properties given as its element, empty values left out), without importing
``mlcroissant`` (about a second, with its torch and dataset adapters) in every build; the tests build
it with ``mlcroissant`` and compare the bytes, and validate it with ``mlcroissant.Dataset``.
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

#: Croissant data types of the INDEX_COLUMNS kinds (``mlcroissant.DataType``'s compact IRIs)
_DATA_TYPES = {"TEXT": "sc:Text", "INT64": "cr:Int64", "FLOAT64": "cr:Float64"}

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"

#: the JSON-LD context of a Croissant 1.0 document (the one ``mlcroissant`` writes)
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject", "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5",
    "parentField": "cr:parentField", "path": "cr:path", "recordSet": "cr:recordSet",
    "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated", "replace": "cr:replace",
    "samplingRate": "cr:samplingRate", "sc": "https://schema.org/", "separator": "cr:separator",
    "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
}


def _one(values: list):
    """A property with many values: the one value alone, else the list (JSON-LD's compact form; the
    node lists ``distribution``, ``recordSet`` and ``field`` stay lists, as mlcroissant writes them)."""
    return values[0] if len(values) == 1 else values


def _node(**properties) -> dict:
    """A JSON-LD node without its empty properties (None, "", [], {}; a bool is kept)."""
    return {key: value for key, value in properties.items() if value or isinstance(value, bool)}


def _file_object(path: str, sha256: str, size: int, encoding: str, description: str) -> dict:
    return _node(**{"@id": path, "@type": "cr:FileObject", "name": path, "description": description,
                    "contentUrl": path, "contentSize": f"{size} B", "encodingFormat": encoding, "sha256": sha256})


def croissant_metadata(manifest: dict, types: dict) -> dict:
    """The Croissant JSON-LD of a build (a dict)."""
    recipe = manifest["recipe"]
    files = []
    shards = manifest.get("shards", [])
    for entry in shards:
        files.append(_file_object(entry["path"], entry["sha256"], entry["bytes"], "application/x-tar",
                                  f"WebDataset shard of the {entry['split']} split, {entry['samples']} samples"))
    index = manifest.get("artifacts", {}).get("index.parquet")
    if index:
        files.append(_file_object("index.parquet", index["sha256"], index["bytes"], "application/x-parquet",
                                  "one row per sample: key, split, shard, per-sample metadata"))
    contained_in = [{"@id": entry["path"]} for entry in shards]
    for field in types:
        extension = field.rsplit(".", 1)[-1]
        files.append(_node(**{
            "@id": f"member-{field}", "@type": "cr:FileSet", "name": f"member-{field}",
            "description": f"the {field} member of every sample (tar member SPEAKER/CLIP.{field})",
            "containedIn": _one(contained_in) if contained_in else None,
            "encodingFormat": _MEMBER_FORMATS.get(extension, "application/octet-stream"),
            "includes": f"*/*.{field}"}))
    record_sets = []
    if index:
        fields = [_node(**{"@id": f"samples/{name}", "@type": "cr:Field", "name": name, "description": text,
                           "dataType": _DATA_TYPES[kind],
                           "source": {"extract": {"column": name}, "fileObject": {"@id": "index.parquet"}}})
                  for name, (kind, text) in INDEX_COLUMNS.items()]
        record_sets.append(_node(**{"@id": "samples", "@type": "cr:RecordSet", "name": "samples",
                                    "description": "the samples of the build, from index.parquet",
                                    "field": fields, "key": {"@id": "samples/key"}}))
    return _node(**{
        "@context": CONTEXT, "@type": "sc:Dataset",
        "name": f"{manifest.get('name', 'dataset')}-talkdata-{manifest['version']}",
        "description": f"{recipe['title']} (talkdata build, version id {manifest['version']}). {recipe['description']}",
        "conformsTo": CONFORMS_TO, "citeAs": recipe.get("citation") or None,
        "distribution": files,
        "keywords": ["talking-face", "webdataset", "talkdata"], "license": recipe["license"],
        "recordSet": record_sets, "url": recipe.get("homepage") or None,
    })


def write_croissant(out: Path, manifest: dict, types: dict) -> None:
    data = croissant_metadata(manifest, types)
    write_atomic(Path(out) / CROISSANT, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
