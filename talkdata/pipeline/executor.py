"""Run tasks from this process (``workers=0``), on a local dask cluster, or on an existing one.

One ``Executor`` serves every stage of a build (clips, the shape fit's normalisation, shards), so a
local cluster starts once. ``Executor.map`` sends what every task shares (the config, the shape
model) once (into the task graph as one task), groups short items into batches of about two
seconds of work per dask task (``BatchSizer``: a task costs the driver tens of milliseconds
whatever it does), submits them in a bounded window and yields results in input order: the driver
holds a constant number of futures and items whatever the corpus size, and results never depend on
the number of workers, the batch sizes or the order tasks finish in. A batch that fails is sent
again one item per task, so an error (a worker killed by one clip) reaches only its own item.

Wherever a clip runs, it is processed in a supervised child process (``isolation.py``) unless
isolation is turned off for debugging. Each clip task writes its cache entry itself (workers must
therefore see the output folder) and returns its ``Outcome``.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import UserError
from ..progress import bar as progress_bar
from .cache import ClipCache
from .isolation import IsolatedWorker
from .outcome import Interrupted, Outcome, decoder_crash
from .task import failure, process_and_store, store

#: BLAS/OpenMP thread caps for the driver and every worker: each task is single-threaded
BLAS_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                   "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}


def cap_blas_threads() -> None:
    """One BLAS thread in this process (also for libraries already loaded)."""
    for name, value in BLAS_ENV.items():
        os.environ.setdefault(name, value)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scipy/scikit stacks
        pass


_WORKER: IsolatedWorker | None = None  # one supervised child per process that runs clips (dask worker or CLI)


def process_isolated(record_data: dict, config: dict, work_dir: str, key: str, stall_timeout: float) -> Outcome:
    """``process_and_store`` in this process's isolated child; crashes and stalls are stored as rejects."""
    global _WORKER
    if _WORKER is None:
        _WORKER = IsolatedWorker(stall_timeout)
        atexit.register(_WORKER.close)
    _WORKER.stall_timeout = stall_timeout
    outcome = _WORKER.run(record_data, config, work_dir, key)
    if getattr(outcome, "reason", None) in ("decoder_crash", "decode_timeout"):  # the child could not store these
        store(ClipCache(work_dir), key, outcome)
    return outcome


def clip_task(config: dict, work_dir: str, isolate: bool, stall_timeout: float, item: tuple[dict, str]) -> Outcome:
    """One clip (``item``: record dict, cache key) as an executor task."""
    cap_blas_threads()
    record_data, key = item
    if isolate:
        return process_isolated(record_data, config, work_dir, key, stall_timeout)
    return process_and_store(record_data, config, work_dir, key)


def _shared(value):
    return value


def _quiet_worker_logs() -> None:
    """Dask's own worker logging ("Compute Failed ... Traceback") must not reach the user's terminal:
    every failure reaches the driver, which prints one ``error:`` line."""
    for name in ("distributed", "distributed.worker", "distributed.nanny", "distributed.core", "distributed.client",
                 "distributed.scheduler", "distributed.utils_perf"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


#: seconds a scheduler address has to complete dask's handshake (the TCP connection itself: 10 s)
SCHEDULER_ANSWER_TIMEOUT = 15.0


def check_scheduler_answers(address: str) -> None:
    """A UserError unless a dask server answers at ``address``. distributed's ``Client`` waits forever on a
    server that accepts the connection but does not speak dask's protocol (the dashboard's HTTP port, 8787,
    given for the scheduler's, 8786), so one connection is tried first, with a deadline. It runs on its
    own thread and event loop (the caller may be inside one); nothing outlives the check."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def probe() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=10), SCHEDULER_ANSWER_TIMEOUT)
        await comm.close()

    with ThreadPoolExecutor(1, thread_name_prefix="talkdata-scheduler-probe") as pool:
        try:
            pool.submit(asyncio.run, probe()).result()
        except asyncio.TimeoutError:  # connected, but no dask handshake came back
            raise UserError(f"no dask scheduler answered at {address} within {SCHEDULER_ANSWER_TIMEOUT:g} s: give "
                            "the scheduler's address (tcp://HOST:8786 by default; 8787 is its dashboard)") from None
        except (OSError, ValueError, TypeError) as err:
            raise UserError(f"cannot connect to the dask scheduler at {address}: {err}") from None


class Executor:
    """Where tasks run: ``workers=0`` (this process), a local cluster of ``workers`` processes, or ``scheduler``."""

    def __init__(self, workers: int = 0, scheduler: str | None = None):
        self.workers, self.scheduler = workers, scheduler
        self._client = self._cluster = None

    @property
    def local(self) -> bool:
        return self.workers == 0 and not self.scheduler

    def __enter__(self) -> Executor:
        cap_blas_threads()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self):
        if self._client is not None:
            return self._client
        for name, value in BLAS_ENV.items():  # inherited by the local cluster's worker processes
            os.environ.setdefault(name, value)
        _quiet_worker_logs()
        import dask
        from dask.distributed import Client, LocalCluster

        # distributed keeps the last ``low-level-log-length`` messages of every batched stream (client ->
        # scheduler: each graph; scheduler -> worker: each task with its items) for debugging: 1,000 by default,
        # held in this process (the client, and the local cluster's scheduler); a batch of items is a few
        # hundred KB, so that log alone would grow with the corpus up to hundreds of MB
        dask.config.set({"distributed.admin.low-level-log-length": 0})

        if self.scheduler:
            check_scheduler_answers(self.scheduler)
            try:
                self._client = Client(self.scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError, TypeError) as err:
                raise UserError(f"cannot connect to the dask scheduler at {self.scheduler}: {err}") from None
        else:
            # the worker processes start with SIGINT ignored: Ctrl-C reaches the whole process group, and
            # only this process decides what an interruption means (the workers end with the cluster)
            main = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                # one task per worker thread at a time: a worker that dies takes only the clip it was processing
                dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.CRITICAL,
                                             # its HTTP routes (no dashboard) on a free loopback port, not
                                             # 8787: a cluster the user already runs keeps that port
                                             scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            self._client = Client(self._cluster)
        self._client.run(_quiet_worker_logs)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def map(self, fn: Callable, items: Iterable, shared: tuple = (), total: int | None = None, desc: str = "",
            unit: str = "task", on_error: Callable[[Any, BaseException], Any] | None = None) -> Iterator:
        """``fn(*shared, item)`` for every item, yielded in input order.

        ``shared`` is sent to the cluster once; items are grouped into batches (one dask task each)
        and at most a bounded window of them is in flight, so neither the futures nor the buffered
        results grow with the number of items. ``on_error`` turns the exception of one item's task
        (a dead worker, ...) into its result, or re-raises. ``total``: the number of items, if
        known (the progress bar; batches then stay small enough to keep every worker busy to the end).
        """
        bar = progress_bar(total=total, desc=desc, unit=unit, hide=total == 0, dynamic_ncols=True)
        try:
            if self.local:
                for item in items:
                    yield fn(*shared, item)
                    bar.update(1)
                return
            yield from self._map_dask(fn, items, shared, total, bar, on_error)
        finally:
            bar.close()

    def _map_dask(self, fn, items, shared, total, bar, on_error) -> Iterator:
        from dask.distributed import as_completed

        client = self._connect()
        # each shared value goes into the graph once, as a task (not scattered: a scattered value dies with the
        # worker holding it and cancels every task that needs it; a task's result is computed again)
        sent = [client.submit(_shared, value, pure=False, key=f"shared-{os.urandom(8).hex()}") for value in shared]
        workers = len(client.scheduler_info().get("workers", {})) or max(self.workers, 1)
        sizer = BatchSizer(workers, total)
        task = functools.partial(run_batch, fn)
        name = getattr(fn, "__name__", "task")
        pending: dict = {}  # future -> (index of its first item, number of items, the items pickled)
        done: dict[int, Any] = {}
        next_out = 0
        iterator = iter(items)
        exhausted = False
        completed = as_completed()
        submitted = 0
        held = 0  # bytes of the pickled items whose results have not been given back yet
        seen = [0, 0]  # items pickled so far and their bytes: the batch also fits what is left of the byte budget

        def pickled(first: int, batch: list) -> tuple[int, int, bytes]:
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            seen[0] += len(batch)
            seen[1] += len(data)
            return first, len(batch), data

        def send(packed: list[tuple[int, int, bytes]]) -> None:
            """One ``client.map`` call for several batches (one message, not one per task); each batch's
            items travel (and wait in ``pending``) pickled: a few hundred bytes per item, not Python objects."""
            nonlocal held
            tag = os.urandom(4).hex()
            futures = client.map(task, *[[value] * len(packed) for value in sent], [data for _, _, data in packed],
                                 pure=False, key=[f"{name}-{first}-{tag}" for first, _, _ in packed])
            pending.update(zip(futures, packed))
            completed.update(futures)
            held += sum(len(data) for _, _, data in packed)

        def refill() -> None:
            """Top the window up; the batch size follows the measured seconds per item. The window is
            bounded in tasks, in items and in bytes (``BatchSizer.BYTES_IN_FLIGHT`` of pickled items)."""
            nonlocal submitted, exhausted
            size = sizer.size(submitted)
            room = min(sizer.window(size) - len(pending), (sizer.items_in_flight - (submitted - next_out)) // size)
            if exhausted or room < 1 or (pending and room < max(1, sizer.window(size) // 4)):
                return
            packed, adding = [], 0
            for _ in range(room):
                budget = sizer.BYTES_IN_FLIGHT - held - adding
                if budget < (seen[1] / seen[0] if seen[0] else 1) and (pending or packed):
                    break
                if seen[0]:  # items of the size seen so far
                    size = max(1, min(size, int(budget * seen[0] / seen[1])))
                batch = list(itertools.islice(iterator, size))
                if batch:
                    packed.append(pickled(submitted, batch))
                    adding += len(packed[-1][2])
                    submitted += len(batch)
                if len(batch) < size:
                    exhausted = True
                    break
            if packed:
                send(packed)

        try:
            refill()
            while pending:
                future = next(completed)
                first, count, data = pending.pop(future)
                try:
                    results, seconds = future.result()
                    sizer.observe(count, seconds)
                except (UserError, KeyboardInterrupt):
                    raise
                except Exception as err:
                    batch = pickle.loads(data)
                    if count > 1:  # find the item it belongs to: each item of the batch as its own task
                        held -= len(data)
                        send([pickled(first + j, [item]) for j, item in enumerate(batch)])
                        future.release()
                        continue
                    if on_error is None:
                        raise
                    results = [on_error(batch[0], err)]
                future.release()
                # an item's bytes count against the window until its result is given back (results that
                # finished out of order wait in ``done``)
                share, rest = divmod(len(data), count)
                for j, result in enumerate(results):
                    done[first + j] = (result, share + (rest if j == count - 1 else 0))
                while next_out in done:
                    result, size = done.pop(next_out)
                    held -= size
                    yield result
                    next_out += 1
                    bar.update(1)
                refill()
        finally:
            for future in pending:
                future.cancel()


def run_batch(fn: Callable, *args) -> tuple[list, float]:
    """Executor task: ``fn(*shared, item)`` for each item of a batch (the last argument: the items pickled), and
    the seconds it took."""
    *shared, data = args
    started = time.perf_counter()
    results = [fn(*shared, item) for item in pickle.loads(data)]
    return results, time.perf_counter() - started


class BatchSizer:
    """How many items go into one dask task, and how many tasks are in flight.

    A task costs the driver and the scheduler tens of milliseconds whatever it does, so short items
    are grouped until a task is about ``TARGET_SECONDS`` of work (measured on the workers, starting
    from one item per task), more on a big cluster: ``SECONDS_PER_WORKER`` x workers keeps the
    driver at about 5 tasks a second however many workers it feeds. The batch never grows past what
    keeps every worker busy until the end (``total`` items: at least ``TAIL_TASKS`` batches per
    worker for what is left), and the items in flight stay under ``items_in_flight`` (4,096, more
    on a big cluster: 256 per worker) and under ``BYTES_IN_FLIGHT`` of pickled items, so the
    driver's memory is a constant: it grows neither with the batch nor with the number of items.
    """

    TARGET_SECONDS = 2.0
    SECONDS_PER_WORKER = 0.2
    MAX_BATCH = 256
    TAIL_TASKS = 2
    ITEMS_IN_FLIGHT = 4096
    ITEMS_PER_WORKER = 256
    BYTES_IN_FLIGHT = 32 * 2**20

    def __init__(self, workers: int, total: int | None):
        self.workers, self.total = workers, total
        self.items_in_flight = max(self.ITEMS_IN_FLIGHT, self.ITEMS_PER_WORKER * workers)
        self.target = max(self.TARGET_SECONDS, self.SECONDS_PER_WORKER * workers)
        self._items = 0
        self._seconds = 0.0

    def observe(self, items: int, seconds: float) -> None:
        self._items += items
        self._seconds += seconds

    def size(self, submitted: int) -> int:
        if not self._items:
            return 1
        per_item = self._seconds / self._items
        size = self.MAX_BATCH if per_item <= 0 else int(min(self.target / per_item, self.MAX_BATCH))
        if self.total:
            size = min(size, (self.total - submitted) // (self.TAIL_TASKS * self.workers))
        return max(1, min(size, self.items_in_flight // (2 * self.workers)))

    def window(self, size: int) -> int:
        """Tasks in flight: 16 per worker (hides the scheduler's round trips for short tasks), fewer for big batches."""
        return max(2 * self.workers, min(max(64, 16 * self.workers), self.items_in_flight // size))


def run_clips(executor: Executor, tasks: Iterable[tuple[dict, str]], total: int, config: dict, work_dir: str,
              isolate: bool = True, stall_timeout: float = 120.0) -> Iterator[Outcome]:
    """Process ``(record dict, cache key)`` tasks; yields their outcomes in task order.

    With ``isolate`` (the default) every clip is processed in a supervised child process (see
    ``isolation.py``), so a decoder crash or hang becomes a reject; without it, in the process
    that runs the task (for debugging: a segfault then ends the build).
    """

    def lost(item: tuple[dict, str], err: BaseException) -> Outcome:
        if isinstance(err, Interrupted):  # Ctrl-C or SIGTERM reached the worker: not a verdict on the clip
            raise err
        record_data, key = item
        from ..corpora.records import ClipRecord

        record = ClipRecord.from_dict(record_data)
        if type(err).__name__ == "KilledWorker":  # the worker process died on this clip: the decoder crashed it
            outcome = decoder_crash(record.key, record.relpath, f"{type(err).__name__}: {err}")
        else:
            outcome = failure(record.key, record.relpath, err)
        store(ClipCache(work_dir), key, outcome)
        return outcome

    return executor.map(clip_task, tasks, shared=(config, work_dir, isolate, stall_timeout), total=total,
                        desc="process clips", unit="clip", on_error=lost)
