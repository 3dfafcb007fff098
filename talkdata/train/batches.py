"""Batches from the loader as the loops read them: training batches epoch after epoch from a saved
position (read ahead in a thread when that helps), evaluation batches once in order; neither draws
from torch's global RNG."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

from ..errors import UserError
from ..loader import collate
from .device import require_torch


def loader_generator(seed: int, epoch: int):
    """A DataLoader's own generator: the loader never draws from torch's global RNG (which then
    belongs to the model alone and is saved in checkpoints). talkdata's items are seeded by the
    dataset itself; this only seeds torch inside the workers."""
    torch = require_torch()
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


def batches(dataset, batch_size: int, workers: int, what: str, seed: int = 0, start: tuple[int, int] = (0, 0),
            pin_memory: bool = False) -> Iterator[tuple[int, int, dict]]:
    """``(epoch, index, batch)`` forever: epoch after epoch of ``dataset`` (``set_epoch`` each time);
    ``index`` counts the batches of the epoch from 1. ``start = (epoch, n)`` begins at that epoch
    and skips its first ``n`` batches (they are read, not returned: the stream after them is the
    same as in a run that never stopped). Workers are started once and kept for every epoch."""
    torch = require_torch()
    epoch, skip = start
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                         generator=loader_generator(seed, epoch), pin_memory=pin_memory,
                                         persistent_workers=workers > 0)
    while True:
        dataset.set_epoch(epoch)
        count = 0
        for batch in loader:
            count += 1
            if count > skip:
                yield epoch, count, batch
        if count == 0:
            raise UserError(f"no {what} in {dataset.dataset.source}: every clip is shorter than one window "
                            "(lower --set window=...)")
        epoch, skip = epoch + 1, 0


def prefetched(iterator: Iterator, depth: int = 2) -> Iterator:
    """``iterator``'s items, read ``depth`` ahead in a background thread: the next batch is being
    loaded (0 workers) or received from a worker (its shared memory, which needs the worker's
    attention) while the step runs - torch releases the GIL in its operations. Same items, same
    order; an exception of ``iterator`` is raised at the item where it happened. Closing the
    generator stops the thread."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in iterator:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((None, error))

    thread = threading.Thread(target=read, name="talkdata-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
        close = getattr(iterator, "close", None)
        if close is not None and not thread.is_alive():
            close()


def training_batches(dataset, batch_size: int, workers: int, what: str, device, seed: int = 0,
                     start: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, int, dict]]:
    """:func:`batches` as the training loop reads them: read ahead by :func:`prefetched` when the
    step leaves the CPU to the reader - batches come from DataLoader workers, or the step runs on
    an accelerator. On the CPU without workers the batches are made between steps: a reader thread
    would compete with torch's threads for the same cores (measured 79 % vs 84 % of the step rate
    without loading, facial-pose on 2 cores)."""
    stream = batches(dataset, batch_size, workers, what, seed, start, pin_memory=device.type == "cuda")
    if workers == 0 and device.type == "cpu":
        return stream
    return prefetched(stream)


def eval_dataset(make: Callable[[], Any], split: str):
    """``make()`` (a ``load(..., split=split)``), with a hint on ``eval_splits`` when the split is empty."""
    try:
        return make()
    except UserError as err:
        if f"split {split} of" in str(err):
            raise UserError(f"{err}; evaluate on other splits with --set eval_splits=... (e.g. train)") from None
        raise


def eval_batches(dataset, batch_size: int) -> Iterator[dict]:
    """Every item of an evaluation ``dataset`` once, in order, without touching torch's global RNG."""
    torch = require_torch()
    return iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                            generator=loader_generator(0, 0)))
