"""Read what the QA figures need from a finished dataset (a folder or an fsspec URL, through
:class:`talkdata.store.Store`): the index, single samples and chosen fields of many samples.

Samples are read straight from their shard: tar members are visited in order and only the wanted
ones are read (an uncompressed tar skips the others by seeking). ``video.mp4`` stays encoded; it is
decoded by :func:`talkdata.media.mp4_frames.decode_video`, the loader's decoder.
"""

from __future__ import annotations

import difflib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import read_parquet
from ..manifest import MANIFEST, load_manifest
from ..shards import split_member
from ..store import Store, as_store

INDEX = "index.parquet"


@dataclass(frozen=True)
class Sample:
    """The decoded per-sample fields the inspection figures show (video stays encoded)."""
    key: str
    meta: dict
    video: bytes  # the H.264 mp4 bytes of video.mp4
    lmk: np.ndarray  # (T, 68, 2) crop pixels
    pose: np.ndarray  # (T, 6)
    blink: np.ndarray  # (T,)
    pca: np.ndarray  # (T, K)
    mfcc: np.ndarray  # (T, rows, 13)
    audio: np.ndarray  # (N,) float32 in [-1, 1]
    sample_rate: int

    @property
    def frames(self) -> int:
        return int(self.lmk.shape[0])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def duration(self) -> float:
        return self.frames / self.fps


def check_dataset(out: str | Path | Store, storage_options: dict | None = None) -> Store:
    """``out`` as a Store, or a UserError when it is not a finished talkdata build."""
    store = as_store(out, storage_options)
    if not store.is_dir():
        raise UserError(f"{store.location} is not a folder; give the --out folder (or URL) of a talkdata build")
    if not store.is_file(MANIFEST) or not store.is_file(INDEX):
        raise UserError(f"{store.location} is not a talkdata dataset folder (no {MANIFEST} or {INDEX}); "
                        "give the --out folder of a finished build")
    return store


def dataset_name(out: str | Path | Store) -> str:
    """The dataset's name from its manifest (never the folder name: figures must not depend on it)."""
    return str(load_manifest(as_store(out)).get("name", "dataset"))


def index_rows(out: str | Path | Store) -> list[dict]:
    """Rows of ``index.parquet`` (key, split, shard, speaker, duration, ...) in key order."""
    with as_store(out).open(INDEX) as handle:
        rows = read_parquet(handle).to_pylist()
    return sorted(rows, key=lambda row: row["key"])


def find_row(rows: list[dict], key: str, out: str | Path | Store) -> dict:
    for row in rows:
        if row["key"] == key:
            return row
    close = difflib.get_close_matches(key, [row["key"] for row in rows], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; keys are SPEAKER/CLIP as listed in index.parquet"
    where = out.location if isinstance(out, Store) else out
    raise UserError(f"no sample with key {key!r} in {where}{hint}")


def read_fields(out: str | Path | Store, rows: list[dict], fields: Iterable[str]) -> dict[str, dict[str, bytes]]:
    """``{key: {field: bytes}}`` for the samples of ``rows``, reading only ``fields`` of each.

    Each shard is opened once; a missing shard or member is a UserError that points at ``verify``.
    """
    store = as_store(out)
    fields = set(fields)
    by_shard: dict[str, set[str]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], set()).add(row["key"])
    found: dict[str, dict[str, bytes]] = {}
    for shard in sorted(by_shard):
        wanted = by_shard[shard]
        try:
            handle = store.open(shard)
        except FileNotFoundError:
            raise UserError(f"shard {shard} listed in {INDEX} is missing; run `talkdata verify {store.location}`") \
                from None
        left = {key: set(fields) for key in wanted}
        with handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:  # members are sorted by key: stop once every wanted field was read
                key, field = split_member(member.name)
                if field in left.get(key, ()) and member.isfile():
                    found.setdefault(key, {})[field] = tar.extractfile(member).read()
                    left[key].discard(field)
                    if not left[key]:
                        del left[key]
                        if not left:
                            break
    for row in rows:
        missing = fields - set(found.get(row["key"], {}))
        if missing:
            raise UserError(f"sample {row['key']} in {row['shard']} lacks {', '.join(sorted(missing))}; "
                            f"run `talkdata verify {store.location}`")
    return found


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


SAMPLE_FIELDS = ("video.mp4", "audio.wav", "lmk.npy", "pose.npy", "blink.npy", "pca.npy", "mfcc.npy", "json")


def load_sample(out: str | Path | Store, key: str) -> Sample:
    """One sample of the dataset folder or URL ``out`` (UserError for a bad folder or unknown key)."""
    from ..media.encode import decode_wav

    out = check_dataset(out)
    row = find_row(index_rows(out), key, out)
    files = read_fields(out, [row], SAMPLE_FIELDS)[key]
    audio, rate = decode_wav(files["audio.wav"])
    return Sample(key=key, meta=json.loads(files["json"]), video=files["video.mp4"], lmk=npy(files["lmk.npy"]),
                  pose=npy(files["pose.npy"]), blink=npy(files["blink.npy"]), pca=npy(files["pca.npy"]),
                  mfcc=npy(files["mfcc.npy"]), audio=audio, sample_rate=rate)
