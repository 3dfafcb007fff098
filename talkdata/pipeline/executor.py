"""Run tasks from this process (``workers=0``), on a local dask cluster, or on an existing one.

One ``Executor`` serves every stage of a build (clips, the shape fit's normalisation, shards), so a
local cluster starts once. ``Executor.map`` sends what every task shares (the config, the shape
model) once (into the task graph as one task), submits tasks in a bounded window and yields results in input order:
the driver holds a constant number of futures whatever the corpus size, and results never depend
on the number of workers or the order tasks finish in.

Wherever a clip runs, it is processed in a supervised child process (``isolation.py``) unless
isolation is turned off for debugging. Each clip task writes its cache entry itself (workers must
therefore see the output folder) and returns its ``Outcome``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import threading
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
        from dask.distributed import Client, LocalCluster

        if self.scheduler:
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
                import dask

                # one task per worker thread at a time: a worker that dies takes only the clip it was processing
                dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.CRITICAL)
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            self._client = Client(self._cluster)
        self._client.run(_quiet_worker_logs)
        return self._client

    def _window(self) -> int:
        if self.local:
            return 1
        workers = len(self._client.scheduler_info().get("workers", {})) or max(self.workers, 1)
        return max(64, 16 * workers)  # enough queued per worker to hide the scheduler's round trips

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def map(self, fn: Callable, items: Iterable, shared: tuple = (), total: int | None = None, desc: str = "",
            unit: str = "task", on_error: Callable[[Any, BaseException], Any] | None = None) -> Iterator:
        """``fn(*shared, item)`` for every item, yielded in input order.

        ``shared`` is sent to the cluster once; at most a small window of tasks is in flight, so
        neither the futures nor the buffered results grow with the number of items. ``on_error``
        turns an exception of a task (a dead worker, ...) into a result, or re-raises.
        """
        bar = progress_bar(total=total, desc=desc, unit=unit, hide=total == 0, dynamic_ncols=True)
        try:
            if self.local:
                for item in items:
                    yield fn(*shared, item)
                    bar.update(1)
                return
            yield from self._map_dask(fn, items, shared, bar, on_error)
        finally:
            bar.close()

    def _map_dask(self, fn, items, shared, bar, on_error) -> Iterator:
        from dask.distributed import as_completed

        client = self._connect()
        # each shared value goes into the graph once, as a task (not scattered: a scattered value dies with the
        # worker holding it and cancels every task that needs it; a task's result is computed again)
        sent = [client.submit(_shared, value, pure=False, key=f"shared-{os.urandom(8).hex()}") for value in shared]
        window = self._window()
        pending: dict = {}  # future -> (index, item)
        done: dict[int, Any] = {}
        next_out = 0
        iterator = iter(items)
        exhausted = False
        completed = as_completed()
        submitted = 0

        name = getattr(fn, "__name__", "task")

        def refill() -> None:
            """Top the window up, in one ``client.map`` call per batch (one message, not one per task)."""
            nonlocal submitted, exhausted
            room = window - (submitted - next_out)
            if exhausted or (pending and room < max(1, window // 4)):
                return
            batch = list(itertools.islice(iterator, room))
            exhausted = len(batch) < room
            if not batch:
                return
            tag = os.urandom(4).hex()
            futures = client.map(fn, *[[value] * len(batch) for value in sent], batch, pure=False,
                                 key=[f"{name}-{submitted + j}-{tag}" for j in range(len(batch))])
            for j, (future, item) in enumerate(zip(futures, batch)):
                pending[future] = (submitted + j, item)
            completed.update(futures)
            submitted += len(batch)

        try:
            refill()
            while pending:
                future = next(completed)
                index, item = pending.pop(future)
                try:
                    result = future.result()
                except (UserError, KeyboardInterrupt):
                    raise
                except Exception as err:
                    if on_error is None:
                        raise
                    result = on_error(item, err)
                done[index] = result
                future.release()
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
                    bar.update(1)
                refill()
        finally:
            for future in pending:
                future.cancel()


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
