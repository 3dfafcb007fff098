"""``talkdata.load``: a ``webdataset.DataPipeline`` from a built dataset to a profile's training items.

Stages (each a small function over an iterator, webdataset style; see :class:`TalkDataset`):
    shard plan (seed, epoch, worker / rank; :mod:`.plan`)  ->  open shards (local or fsspec; :mod:`.samples`)
    ->  tar members of the wanted fields (talkdata's own reader, :mod:`.fast.tar`)  ->  samples grouped by key
    ->  keep this consumer's samples (:mod:`.plan`)  ->  decode fields (:mod:`.members`)
    ->  profile items (windows; :mod:`.profiles`)  ->  seeded shuffle buffer (webdataset's ``shuffle``)

Everything random is seeded: the shard order by ``(seed, epoch)``, the profile's choices by
``(seed, epoch, clip key)`` (the same items whatever the number of workers), the shuffle buffer by
``(seed, epoch, rank, worker)``. Call :meth:`TalkDataset.set_epoch` before each epoch to get a
new order (the epoch is in shared memory: it reaches ``persistent_workers`` too).
"""

from __future__ import annotations

import random
import sys
import warnings
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import numpy as np
import webdataset as wds

from ..errors import UserError
from ..files import read_parquet
from .damage import DamagedSample, Handler, damaged_message, skip_damage
from .members import decode_sample
from .epoch_plan import current_consumer, in_dataloader_worker, keep_ordinals, plan_epoch, resampled_shards, rng_for
from .profile_base import ItemContext, Profile, non_negative_int, positive_int
from .profiles import get_profile
from .samples import open_shards, read_samples
from .shard_list import DatasetSource, join, open_binary, open_dataset, resolve_splits

DEFAULT_SHUFFLE_BUFFER = 64


class TalkDataset(wds.DataPipeline):
    """An ``IterableDataset`` (torch's when torch is installed, else webdataset's stand-in) of
    profile items (dicts of numpy arrays). Build it with :func:`load`."""

    def __init__(self, dataset: DatasetSource, splits: tuple[str, ...], profile: Profile, context: ItemContext,
                 shuffle: bool, resampled: bool, shuffle_buffer: int, handler: Handler = None,
                 hashes: dict[str, str] | None = None):
        self.dataset = dataset
        self.splits = splits
        self.profile = profile
        self.context = context
        self.shuffle = shuffle
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.handler = handler
        self.hashes = hashes  # key -> sha256 of index.parquet, when every sample is checked (verify=True)
        self.shards = dataset.shards(splits)
        self._epoch = shared_counter(context.epoch)
        super().__init__(self._stream)

    # -- epoch -------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` in every seed (shard order, profile randomness, shuffle buffer) from the
        next pass on. The epoch is kept in shared memory, so it also reaches the DataLoader's
        ``persistent_workers``."""
        self._epoch[0] = non_negative_int("epoch", epoch)

    # -- stages ------------------------------------------------------------------------------------

    def _stream(self) -> Iterator[dict]:
        """One pass, every stage with the context of this pass (the epoch as it is now)."""
        context = replace(self.context, epoch=self.epoch)
        if in_dataloader_worker():
            sys.setswitchinterval(WORKER_SWITCH_INTERVAL)
        return self._shuffle(self._items(self._decode(self._samples(context), context), context), context)

    def _samples(self, context: ItemContext) -> Iterator[dict]:
        consumer = current_consumer()
        # checking a sample's sha256 needs all of its members
        fields = None if self.hashes is not None else set(context.fields) | {"json"}
        if self.resampled:
            shards = resampled_shards(self.shards, consumer, context.seed, context.epoch)
            samples = read_samples(open_shards(shards, self.handler), fields, self.handler)
        else:
            plan = plan_epoch(self.shards, consumer, context.seed, context.epoch, self.shuffle)
            offsets = {shard.url: shard.offset for shard in plan.shards}
            samples = keep_ordinals(read_samples(open_shards(plan.shards, self.handler), fields, self.handler), plan,
                                    offsets)
        return samples if self.hashes is None else self._verified(samples)

    def _verified(self, samples: Iterable[dict]) -> Iterator[dict]:
        """The samples whose members hash to their ``sha256`` in ``index.parquet``."""
        from ..shards import sample_hash

        for sample in samples:
            members = {name: data for name, data in sample.items() if not name.startswith("__")}
            key, url = sample["__key__"], sample["__url__"]
            expected = self.hashes.get(key)
            if expected is None or sample_hash(members) != expected:
                detail = ("is not in index.parquet" if expected is None else
                          "differs from its sha256 in index.parquet (the bytes of a member changed)")
                if skip_damage(self.handler, DamagedSample(damaged_message(url, key, "content", detail,
                                                                           self.dataset.source))):
                    continue
                return
            yield sample

    def _decode(self, samples: Iterable[dict], context: ItemContext) -> Iterator:
        fields, source = set(context.fields), self.dataset.source
        if self.handler is None:
            for sample in samples:
                yield decode_sample(sample, fields, source)
            return
        for sample in samples:
            try:
                clip = decode_sample(sample, fields, source)
            except DamagedSample as err:
                if skip_damage(self.handler, err):
                    continue
                return
            yield clip

    def _items(self, clips: Iterable, context: ItemContext) -> Iterator[dict]:
        if self.handler is None:
            for clip in clips:
                for item in self.profile.items(clip, context):
                    yield own_arrays(item)
            return
        for clip in clips:
            try:  # the video is decoded here, by the profile; a damaged one ends the clip's items
                for item in self.profile.items(clip, context):
                    yield own_arrays(item)
            except DamagedSample as err:
                if not skip_damage(self.handler, err):
                    return

    def _shuffle(self, items: Iterable[dict], context: ItemContext) -> Iterator[dict]:
        if not self.shuffle or self.shuffle_buffer <= 1:
            return iter(items)
        consumer = current_consumer()
        seed = int(rng_for(context.seed, context.epoch, consumer.rank, consumer.worker, "buffer").integers(2**63))
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(seed))(iter(items))

    def __repr__(self) -> str:
        return (f"TalkDataset({self.dataset.source!r}, profile={self.profile.name!r}, split={'+'.join(self.splits)}, "
                f"shards={len(self.shards)}, window={self.context.window}, stride={self.context.stride}, "
                f"fields={sorted(self.context.fields)})")


#: GIL switch interval in DataLoader workers (Python's default is 5 ms). A batch leaves a worker
#: through threads - torch's shared-memory hand-over and the queue's feeder - that wait for the GIL
#: while the worker's main thread makes the next items; at 5 ms per wait they, not the items, set
#: the pace. 0.5 ms took 1 worker from 2,300 to 9,800 windows/s (ATVG, no video) and from 1,100 to
#: 2,100 (FACIAL) in ``benchmarks/loader.py``.
WORKER_SWITCH_INTERVAL = 0.0005


def shared_counter(value: int):
    """A one-element int64 cell that processes forked or spawned after its creation share (a
    shared-memory torch tensor; a list when torch is not installed: then there are no workers)."""
    try:
        import torch
    except ImportError:
        return [int(value)]
    return torch.tensor([int(value)], dtype=torch.int64).share_memory_()


def own_arrays(item: dict) -> dict:
    """Copy the arrays that are views, so that an item in the shuffle buffer does not keep its whole
    decoded clip alive (memory is then buffer size x item size, whatever the clip length)."""
    return {key: value.copy() if isinstance(value, np.ndarray) and value.base is not None else value
            for key, value in item.items()}


def select_fields(profile: Profile, dataset: DatasetSource, fields, options: dict) -> frozenset[str]:
    required, optional = profile.field_sets(options)
    if fields is None:
        chosen = list(profile.default_fields(dataset, options))
    else:
        chosen = [fields] if isinstance(fields, str) else list(fields)
        usable = set(required) | set(optional)
        for name in chosen:
            if name not in usable:
                hint = f" (did you mean {name}.npy?)" if f"{name}.npy" in usable else ""
                raise UserError(f"profile {profile.name!r} does not use field {name!r}{hint}; it reads "
                                f"{', '.join(sorted(usable))}")
        missing = [name for name in required if name not in chosen]
        if missing:
            raise UserError(f"profile {profile.name!r} needs the field(s) {', '.join(missing)}; add them to fields")
    if "deepspeech.npy" in chosen and "deepspeech" not in dataset.audio_features:
        from .members import HOW_TO_GET

        raise UserError(f"{dataset.source} has no deepspeech.npy: {HOW_TO_GET['deepspeech.npy']}")
    return frozenset(chosen)


def warn_and_skip(err: BaseException) -> bool:
    """The ``handler="warn"`` of :func:`load`: a warning naming the shard and sample, then go on."""
    warnings.warn(str(err), RuntimeWarning, stacklevel=2)
    return True


def resolve_handler(handler) -> Handler:
    if handler == "raise":
        return None
    if handler == "warn":
        return warn_and_skip
    if callable(handler):
        return handler
    raise UserError(f"handler must be 'raise', 'warn' or a function taking the error and returning True to skip "
                    f"the sample, not {handler!r}")


def index_hashes(dataset: DatasetSource, splits: tuple[str, ...]) -> dict[str, str]:
    """``key -> sha256`` of the samples of ``splits``, from the dataset's ``index.parquet``."""
    import io

    try:
        table = read_parquet(io.BytesIO(dataset.read_artifact("index.parquet")), columns=["key", "split", "sha256"])
    except FileNotFoundError:
        raise UserError(f"{dataset.source} has no index.parquet, which verify=True checks the samples "
                        "against; 'talkdata verify' lists what is wrong") from None
    except Exception as err:
        raise UserError(f"cannot read index.parquet of {dataset.source} ({type(err).__name__}: {err}); "
                        "'talkdata verify' lists what is wrong") from None
    return {row["key"]: row["sha256"] for row in table.to_pylist() if row["split"] in splits}


def longest_clip(dataset: DatasetSource, splits: tuple[str, ...]) -> int | None:
    """Frames of the longest clip of ``splits`` (``index.parquet``'s ``frames``; only its ``split``
    and ``frames`` columns are read), or None when the dataset has no readable ``index.parquet``
    (then the check this serves is not made: ``talkdata verify`` reports the file)."""
    try:
        with open_binary(join(dataset.source, "index.parquet"), dataset.storage_options) as handle:
            table = read_parquet(handle, columns=["split", "frames"])
        # numpy, not pyarrow.compute: that would start Arrow's thread pool (see files.read_parquet)
        frames = table["frames"].to_numpy()[np.isin(table["split"].to_numpy(zero_copy_only=False), list(splits))]
    except Exception:  # noqa: BLE001 - a missing or damaged index only leaves the check out
        return None
    return int(frames.max()) if len(frames) else 0


def check_clip_length(profile: Profile, dataset: DatasetSource, splits: tuple[str, ...], window: int | None,
                      options: dict) -> None:
    """One ``UserError`` when no clip of ``splits`` is long enough for one item (an empty epoch,
    which a training loop would wait on forever or divide by)."""
    needed, why = profile.fewest_frames(window, options, dataset.fps)
    longest = longest_clip(dataset, splits) if needed > 1 else None
    if longest is None or longest >= needed:
        return
    name = "None" if profile.name == "None" else repr(profile.name)
    asked = f"window={window}: " if profile.windowed and window is not None else ""
    raise UserError(f"{asked}no clip of split {'+'.join(splits)} of {dataset.source} is long enough for one item "
                    f"of profile {name}: the longest has {longest} frames, one item needs {needed} ({why}); "
                    "give a smaller window, or build from longer clips")


def resolve_options(profile: Profile, options: dict) -> dict:
    return profile.resolve_options(options)


def load(source, profile: str | None = None, fields=None, window: int | None = None, stride: int | None = None,
         split: str | tuple[str, ...] = "train", shuffle: bool = True, seed: int = 0, resampled: bool = False,
         shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, whole_clips: bool = False, storage_options: dict | None = None,
         handler: str | Callable[[BaseException], bool] = "raise", verify: bool = False, **options) -> TalkDataset:
    """Stream a built talkdata dataset as training items.

    ``source``: the dataset folder (with ``dataset.json``) or an fsspec URL to it.
    ``storage_options``: fsspec's options for that URL (``{"endpoint_url": ..., "key": ...}``).
    ``profile``: ``None`` (plain windows of the shard fields), ``"atvg"``, ``"sda"``,
    ``"diffused_heads"``, ``"facial"`` or ``"vid2vid"`` (README "Loading for training").
    ``fields``: shard members to read (e.g. ``["mfcc.npy", "pca.npy"]``); default: all the profile
    uses. Outputs that need a field left out are left out.
    ``window`` / ``stride``: frames per item and between item starts; default: the profile's window
    (16; 128 for facial; 1 for diffused_heads) and ``stride = window``. ``whole_clips=True`` gives
    one item per clip (raw and sda). A window longer than every clip of the split (by
    ``index.parquet``'s frame counts) is a ``UserError`` naming it, the split and the longest clip.
    ``split``: ``"train"``, ``"val"``, ``"test"``, a list of them or ``"all"``.
    ``shuffle``: seeded shard order and a ``shuffle_buffer``-item shuffle buffer (an int >= 0; 0 or 1:
    none); ``seed``: an int >= 0; ``resampled``:
    draw shards with replacement forever (bound it with ``.with_epoch(n)`` or ``itertools.islice``).
    ``handler``: what a damaged shard or sample does (a :class:`~talkdata.loader.damage.DamagedSample`,
    whose message names the shard, the sample and the member): ``"raise"`` (default), ``"warn"``
    (a ``RuntimeWarning``, and the sample - or the rest of a damaged tar - is skipped), or a function
    given the error that returns True to skip and go on, False to end the pass (webdataset's
    handlers work).
    ``verify``: check every sample against its sha256 in ``index.parquet`` before use (reads every
    member of the sample, asked for or not: slower; catches bytes changed inside a member, which
    decoding alone cannot).
    ``options``: profile options (``size=...``, ``identity=...``, ``features=...``, ...).
    """
    chosen = get_profile(profile)
    dataset = open_dataset(source, storage_options)
    splits = resolve_splits(dataset, split)
    options = resolve_options(chosen, options)
    if not chosen.windowed or chosen.window_fixed:
        if (window is not None and window != chosen.default_window) or whole_clips:
            raise UserError(f"profile {chosen.name!r} does not take a window "
                            f"({'pairs of frames' if not chosen.windowed else 'one target frame per item'}; "
                            "use stride / the profile options)")
        if not chosen.windowed and stride is not None:
            raise UserError(f"profile {chosen.name!r} does not take a stride (use pairs_per_clip)")
    if whole_clips:
        if not chosen.whole_clips:
            raise UserError(f"profile {chosen.name!r} does not take whole clips (whole_clips=True)")
        if window is not None:
            raise UserError("give either window or whole_clips=True, not both")
        window = None
    else:
        window = positive_int("window", chosen.default_window if window is None else window) \
            if chosen.default_window is not None else None
    stride = positive_int("stride", stride if stride is not None else (window or 1))
    seed = non_negative_int("seed", seed)
    buffer = non_negative_int("shuffle_buffer", shuffle_buffer, " (0 or 1: no shuffle buffer)")
    fields = select_fields(chosen, dataset, fields, options)
    setup = chosen.setup(dataset, fields, options)
    check_clip_length(chosen, dataset, splits, window, options)
    context = ItemContext(fields=fields, window=window, stride=stride, seed=seed, epoch=0, options=options,
                          setup=setup)
    hashes = index_hashes(dataset, splits) if verify else None
    return TalkDataset(dataset, splits, chosen, context, shuffle=bool(shuffle), resampled=bool(resampled),
                       shuffle_buffer=buffer, handler=resolve_handler(handler), hashes=hashes)
