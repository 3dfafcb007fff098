"""Samples from shards: open each shard, read the wanted tar members and group them by key.

:func:`read_samples` gives ``{"__key__", "__url__", field: bytes, ...}`` in tar order. Members of
one key are grouped by the same rule as webdataset's ``group_by_keys`` (consecutive members with
the same key; the field is the file name after its first dot). The tar itself is read by
:func:`talkdata.loader.fast.tar.tar_members`, which skips (seeks past) the fields not asked for.

Imports :mod:`talkdata.loader.fast.tar`, :mod:`talkdata.loader.damage` and
:mod:`talkdata.loader.shard_list`.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ..shards import split_member
from .damage import DamagedSample, Handler, skip_damage
from .fast.tar import tar_members
from .shard_list import Shard, open_binary


def open_shards(shards: Iterable[Shard], handler: Handler = None) -> Iterator[dict]:
    """``{"url", "stream", "offset"}`` per shard, for :func:`read_samples`. A missing shard is a
    :class:`DamagedSample` (``handler`` may skip it)."""
    for shard in shards:
        try:
            stream = open_binary(shard.url, shard.storage_options)
        except FileNotFoundError:
            err = DamagedSample(f"shard {shard.url} listed in dataset.json is missing: the dataset is incomplete "
                                "('talkdata verify' lists what is wrong; copy or rebuild it)")
            if skip_damage(handler, err):
                continue
            return
        try:
            yield {"url": shard.url, "stream": stream, "offset": shard.offset}
        finally:
            stream.close()


def member_filter(fields: set[str] | None):
    """Predicate on member names: keep ``{key}.{field}`` whose field is in ``fields`` (every member
    when ``fields`` is None)."""
    if fields is None:
        return lambda name: True

    def keep(name: str) -> bool:
        return split_member(name)[1] in fields

    return keep


def split_name(name: str) -> tuple[str | None, str]:
    """``"s1/clip.mfcc.npy"`` -> ``("s1/clip", "mfcc.npy")`` (the WebDataset rule: the first dot of the
    file name)."""
    key, field = split_member(name)
    if "." not in name.rpartition("/")[2] or key.endswith("/") or not key:
        return None, ""
    return key, field.lower()


def read_samples(opened: Iterable[dict], fields: set[str] | None, handler: Handler = None) -> Iterator[dict]:
    """Samples ``{"__key__", "__url__", field: bytes, ...}`` in tar order, only ``fields`` read (all
    members when None).

    Members of one key are grouped as webdataset's ``group_by_keys`` groups them (consecutive members
    with the same key, the extension after the first dot of the file name). A damaged tar is a
    :class:`DamagedSample`; when ``handler`` skips it, the rest of that shard is skipped (the
    sample being read when the damage was found included).
    """
    keep = member_filter(fields)
    for source in opened:
        url = source["url"]
        try:
            yield from _grouped(tar_members(source["stream"], url, keep), url)
        except DamagedSample as err:
            if not skip_damage(handler, err):
                return


def _grouped(members: Iterable[tuple[str, bytes]], url: str) -> Iterator[dict]:
    current = None
    for name, data in members:
        key, suffix = split_name(name)
        if key is None:
            continue
        if current is None or key != current["__key__"]:
            if current is not None:
                yield current
            current = {"__key__": key, "__url__": url}
        if suffix in current:
            raise DamagedSample(f"shard {url} has {name} twice; rebuild the dataset")
        current[suffix] = data
    if current is not None:
        yield current
