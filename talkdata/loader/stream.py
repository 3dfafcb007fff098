"""Streaming stages: which shards (or samples) this consumer reads, and reading them from tar.

A *consumer* is one DataLoader worker of one distributed rank: consumer ``rank * workers + worker``
of ``world_size * workers``. Every consumer computes the same epoch plan from ``(seed, epoch)``:

* the split's shards, in a seeded order (the same permutation in every consumer);
* with at least as many shards as consumers, consumer ``i`` reads shards ``i, i + n, i + 2n, ...``
  of that order (**shard-level** split: no shard is opened twice);
* with fewer shards than consumers, every consumer opens every shard and keeps the samples whose
  global ordinal (shard offset from the manifest + position in the shard) is ``i mod n``
  (**sample-level** split; the skipped samples' selected fields are still read from the tar).

Either way each sample of the split is read by exactly one consumer per epoch. With
``resampled=True`` every consumer instead draws shards with replacement, forever, from its own
seeded generator (no split is needed: the stream is a random sample).

Reading (:func:`tar_members`, :func:`read_samples`) parses the tar headers itself and groups members by
key as webdataset's ``group_by_keys`` does; fields that were not asked for are skipped (seeked
past), not read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
from webdataset.utils import pytorch_worker_info

from .decode import DamagedSample
from .source import Shard, open_binary

#: what to do with a :class:`DamagedSample` (a shard or sample that cannot be read): ``None`` raises
#: it; a callable gets it and returns True to skip the sample (or the rest of the shard) and go
#: on, False to end the pass (webdataset's handler convention)
Handler = Callable[[BaseException], bool] | None


def skip_damage(handler: Handler, err: DamagedSample) -> bool:
    """True when ``handler`` says to skip what ``err`` is about; raises ``err`` when there is no
    handler; False when the handler says to stop."""
    if handler is None:
        raise err
    return bool(handler(err))


@dataclass(frozen=True)
class Consumer:
    index: int  # rank * num_workers + worker
    count: int  # world_size * num_workers
    rank: int = 0
    worker: int = 0


def current_consumer() -> Consumer:
    """This process's place among all readers (DataLoader worker info, torch.distributed or the
    ``RANK``/``WORLD_SIZE`` and ``WORKER``/``NUM_WORKERS`` environment variables)."""
    rank, world_size, worker, num_workers = pytorch_worker_info()
    return Consumer(rank * num_workers + worker, world_size * num_workers, rank, worker)


def in_dataloader_worker() -> bool:
    """True inside a torch DataLoader worker process."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return False
    return get_worker_info() is not None


def rng_for(*parts) -> np.random.Generator:
    """A numpy generator seeded from ints and strings (strings by crc32), stable across runs."""
    return np.random.default_rng([p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts])


def epoch_order(shards: list[Shard], seed: int, epoch: int, shuffle: bool) -> list[Shard]:
    if not shuffle:
        return list(shards)
    order = rng_for(seed, epoch, "shards").permutation(len(shards))
    return [shards[i] for i in order]


@dataclass(frozen=True)
class Plan:
    """What one consumer reads in one epoch: shards, and which samples of them it keeps."""

    shards: tuple[Shard, ...]
    keep_index: int = 0  # keep samples whose global ordinal % keep_count == keep_index
    keep_count: int = 1


def plan_epoch(shards: list[Shard], consumer: Consumer, seed: int, epoch: int, shuffle: bool) -> Plan:
    ordered = epoch_order(shards, seed, epoch, shuffle)
    if consumer.count <= 1:
        return Plan(tuple(ordered))
    if len(ordered) >= consumer.count:
        return Plan(tuple(ordered[consumer.index::consumer.count]))
    return Plan(tuple(ordered), consumer.index, consumer.count)


def resampled_shards(shards: list[Shard], consumer: Consumer, seed: int, epoch: int) -> Iterator[Shard]:
    """Shards drawn with replacement, forever (each consumer its own seeded stream)."""
    rng = rng_for(seed, epoch, consumer.rank, consumer.worker, "resampled")
    while True:
        yield shards[int(rng.integers(len(shards)))]


def open_shards(shards: Iterable[Shard], handler: Handler = None) -> Iterator[dict]:
    """``{"url", "stream", "offset"}`` per shard, for webdataset's tar expander. A missing shard is a
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
        return name.rpartition("/")[2].partition(".")[2] in fields

    return keep


BLOCK = 512
_SKIP_CHUNK = 1 << 20


def _number(field: bytes) -> int:
    """A tar header number: octal text, or GNU base-256 when the high bit is set."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _byte_sum(data: bytes) -> int:
    """The sum of the bytes of a 512-byte header, exactly (5x faster than ``sum(data)``): the low half
    of Adler-32 is 1 + the byte sum modulo 65521, and 256 bytes sum to at most 65280."""
    view = memoryview(data)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def _pax_records(data: bytes) -> dict[str, str]:
    records, position = {}, 0
    while position < len(data):
        space = data.index(b" ", position)
        length = int(data[position:space])
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def tar_members(stream, url: str, keep) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular members of a tar stream whose name passes ``keep``.

    Reads the 512-byte headers itself (ustar, GNU long names, pax ``path`` / ``size``) and *skips*
    the other members - with ``seek`` when the stream can seek, else by reading - instead of
    reading them through ``tarfile``'s stream mode (10 KB reads and per-member header objects,
    which cost more than decoding the fields a profile needs). Damaged headers are a ``DamagedSample``.
    """
    seekable = bool(getattr(stream, "seekable", lambda: False)())
    offset = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    last = ""  # the last member's name, for messages

    def read(size: int) -> bytes:
        nonlocal offset
        data = stream.read(size)
        while len(data) < size:
            more = stream.read(size - len(data))
            if not more:
                raise DamagedSample(f"shard {url} is truncated (byte {offset + len(data)} of {size}"
                                    f"{f', in or after {last}' if last else ''}); 'talkdata verify' lists what is wrong")
            data += more
        offset += size
        return data

    def skip(size: int) -> None:
        nonlocal offset
        if size <= 0:
            return
        if seekable:
            stream.seek(size, 1)
            offset += size
        else:
            while size > 0:
                step = min(size, _SKIP_CHUNK)
                read(step)
                size -= step

    while True:
        start = offset
        header = stream.read(BLOCK)
        if len(header) < BLOCK:
            # a tar ends with zero blocks; the data ending first means the file was cut (also after
            # a seek past the end, over a member that was not read)
            where = f"a tar header at byte {start} is cut short" if header else f"it ends before byte {start}"
            raise DamagedSample(f"shard {url} is truncated ({where}{f', in or after {last}' if last else ''}); "
                                "'talkdata verify' lists what is wrong")
        if header.count(0) == BLOCK:  # end of archive
            return
        offset += BLOCK
        try:
            checksum = _number(header[148:156])
        except ValueError:  # not octal digits: not a tar header at all
            checksum = -1
        unsigned = _byte_sum(header) - sum(header[148:156]) + 8 * 32
        if checksum != unsigned and checksum != unsigned - 256 * sum(b > 127 for b in header[:148] + header[156:]):
            raise DamagedSample(f"shard {url} is damaged (bad tar header checksum at byte {start})"
                                f"{f', after {last}' if last else ''}; 'talkdata verify' lists what is wrong")
        try:
            size = _number(header[124:136])
        except ValueError:
            raise DamagedSample(f"shard {url} is damaged (a tar header at byte {start} has no size); "
                                "'talkdata verify' lists what is wrong") from None
        kind = header[156:157]
        if kind in (b"L", b"x", b"g"):
            data = read(size)
            skip(-size % BLOCK)
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"x":
                pax = _pax_records(data)
            continue
        if "size" in pax:
            size = int(pax["size"])
        name = pax.get("path") or long_name
        if name is None:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if header[257:263] == b"ustar\0" and header[345]:  # POSIX ustar prefix
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape") + "/" + name
        long_name, pax = None, {}
        last = name
        if kind in (b"0", b"\0", b"7") and keep(name):
            yield name, read(size)
            skip(-size % BLOCK)
        else:
            skip(size + (-size % BLOCK))


def split_name(name: str) -> tuple[str | None, str]:
    """``"s1/clip.mfcc.npy"`` -> ``("s1/clip", "mfcc.npy")`` (webdataset's rule: the first dot of the
    file name)."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    if not dot or not stem:
        return None, ""
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def read_samples(opened: Iterable[dict], fields: set[str] | None, handler: Handler = None) -> Iterator[dict]:
    """Samples ``{"__key__", "__url__", field: bytes, ...}`` in tar order, only ``fields`` read (all
    members when None).

    Members of one key are grouped as webdataset's ``group_by_keys`` does (consecutive members with
    the same key, the extension after the first dot of the file name). A damaged tar is a
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


def keep_ordinals(samples: Iterable[dict], plan: Plan, offsets: dict[str, int]) -> Iterator[dict]:
    """Keep the samples whose global ordinal is ``plan.keep_index`` mod ``plan.keep_count``."""
    if plan.keep_count <= 1:
        yield from samples
        return
    position: dict[str, int] = {}
    for sample in samples:
        url = sample["__url__"]
        ordinal = offsets[url] + position.get(url, 0)
        position[url] = position.get(url, 0) + 1
        if ordinal % plan.keep_count == plan.keep_index:
            yield sample
