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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import UserError
from ..files import read_parquet
from ..manifest import MANIFEST, load_manifest
from ..shards import split_member
from ..store import Store, as_store

INDEX = "index.parquet"
T = TypeVar("T")


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
    shard: str = ""  # the shard it was read from (named in errors)

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
    if not store.is_file(MANIFEST):
        raise UserError(f"{store.location} is not a talkdata dataset folder (no {MANIFEST}); "
                        "give the --out folder of a finished build")
    if not store.is_file(INDEX):
        raise UserError(f"{store.url(INDEX)} not found: the dataset is incomplete (run `talkdata verify "
                        f"{store.location}`)")
    return store


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


def dataset_name(out: str | Path | Store) -> str:
    """The dataset's name from its manifest (never the folder name: figures must not depend on it)."""
    return str(load_manifest(as_store(out)).get("name", "dataset"))


def index_rows(out: str | Path | Store) -> list[dict]:
    """Rows of ``index.parquet`` (key, split, shard, speaker, duration, ...) in key order."""
    store = as_store(out)
    try:
        with store.open(INDEX) as handle:
            rows = read_parquet(handle).to_pylist()
        return sorted(rows, key=lambda row: row["key"])
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged or foreign file
        raise UserError(f"cannot read {store.url(INDEX)} ({_reason(err)}); run `talkdata verify {store.location}`"
                        ) from None


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
        try:
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
        except tarfile.TarError as err:  # cut short, or not a tar
            raise UserError(f"shard {shard} cannot be read ({_reason(err)}): it is truncated or damaged; run "
                            f"`talkdata verify {store.location}`") from None
    for row in rows:
        missing = fields - set(found.get(row["key"], {}))
        if missing:
            raise UserError(f"sample {row['key']} in {row['shard']} lacks {', '.join(sorted(missing))}; "
                            f"run `talkdata verify {store.location}`")
    return found


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def decoded(shard: str, key: str, field: str, decode: Callable[[bytes], T], data: bytes, out: str | Path | Store) -> T:
    """``decode(data)``, ``data`` being member ``field`` of sample ``key`` in ``shard``; damaged bytes are one
    UserError naming the shard, the sample and the member."""
    try:
        return decode(data)
    except Exception as err:  # noqa: BLE001 - each decoder (numpy, json, wave, PyAV) raises its own types
        where = out.location if isinstance(out, Store) else out
        raise UserError(f"shard {shard}, sample {key}: {field} cannot be decoded ({_reason(err)}); "
                        f"the shard is damaged - run `talkdata verify {where}`") from None


SAMPLE_FIELDS = ("video.mp4", "audio.wav", "lmk.npy", "pose.npy", "blink.npy", "pca.npy", "mfcc.npy", "json")


def load_sample(out: str | Path | Store, key: str) -> Sample:
    """One sample of the dataset folder or URL ``out`` (UserError for a bad folder or unknown key)."""
    from ..media.encode import decode_wav

    out = check_dataset(out)
    row = find_row(index_rows(out), key, out)
    files = read_fields(out, [row], SAMPLE_FIELDS)[key]

    def member(field: str, decode: Callable[[bytes], T]) -> T:
        return decoded(row["shard"], key, field, decode, files[field], out)

    audio, rate = member("audio.wav", decode_wav)
    return Sample(key=key, meta=member("json", json.loads), video=files["video.mp4"], lmk=member("lmk.npy", npy),
                  pose=member("pose.npy", npy), blink=member("blink.npy", npy), pca=member("pca.npy", npy),
                  mfcc=member("mfcc.npy", npy), audio=audio, sample_rate=rate, shard=row["shard"])
