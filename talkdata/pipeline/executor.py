"""Run per-clip work from this process (``workers=0``), on a local dask cluster, or on an existing one.

Wherever it runs, a clip is processed in a supervised child process (``isolation.py``) unless
isolation is turned off for debugging.

The executor only schedules: each task processes one clip and writes its cache entry itself
(workers must therefore see the output folder), and returns a small status dict. Results never
depend on the number of workers or the order tasks finish in, because the packing stage reads the
cache in key order.
"""

from __future__ import annotations

import atexit
import logging
import traceback
from typing import Callable

from tqdm import tqdm

from ..errors import DISK_FULL_ERRNOS, ClipError, UserError, disk_full_error
from ..corpora.records import ClipRecord
from .cache import ClipCache
from .clip import process_clip
from .isolation import IsolatedWorker


def process_and_store(record_data: dict, config: dict, work_dir: str, key: str) -> dict:
    """Process one clip and record the outcome in the cache; never raises for clip problems."""
    record = ClipRecord.from_dict(record_data)
    cache = ClipCache(work_dir)
    base = {"key": record.key, "source": record.relpath}
    try:
        output = process_clip(record, config)
    except ClipError as err:
        status = {**base, "status": "rejected", "reason": err.reason, "stage": err.stage, "message": str(err)}
        _store(cache, key, status)
        return status
    except UserError:
        raise  # configuration problems (missing model file, ...) stop the build
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(err) from None  # stops the build; nothing half-written stays in the cache
        return _store_failure(cache, key, base, err)
    except Exception as err:  # an unexpected error: record it, retry with --retry-failed
        return _store_failure(cache, key, base, err)
    status = {**base, "status": "done", "timings": output.timings}
    _store(cache, key, {k: v for k, v in status.items() if k != "timings"}, output.files, output.meta)
    return status


def _store(cache: ClipCache, key: str, status: dict, files: dict | None = None, meta: dict | None = None) -> None:
    """``cache.store``; a full disk stops the build (the entry is written whole or not at all)."""
    try:
        cache.store(key, status, files, meta)
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(err) from None
        raise


def _store_failure(cache: ClipCache, key: str, base: dict, err: BaseException) -> dict:
    """Record an unexpected error as ``failed`` (retried with --retry-failed)."""
    last = traceback.extract_tb(err.__traceback__)[-1]
    message = f"{type(err).__name__}: {err} (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    status = {**base, "status": "failed", "reason": "failed", "stage": "process", "message": message}
    _store(cache, key, status)
    return status


_WORKER: IsolatedWorker | None = None  # one supervised child per process that runs clips (dask worker or CLI)


def process_isolated(record_data: dict, config: dict, work_dir: str, key: str, stall_timeout: float) -> dict:
    """``process_and_store`` in this process's isolated child; crashes and stalls are stored as rejects."""
    global _WORKER
    if _WORKER is None:
        _WORKER = IsolatedWorker(stall_timeout)
        atexit.register(_WORKER.close)
    _WORKER.stall_timeout = stall_timeout
    status = _WORKER.run(record_data, config, work_dir, key)
    if status.get("reason") in ("decoder_crash", "decode_timeout"):  # the child could not store these
        ClipCache(work_dir).store(key, status)
    return status


def _crash_status(record: ClipRecord, err: BaseException) -> dict:
    name = type(err).__name__
    reason = "decoder_crash" if name == "KilledWorker" else "failed"
    return {"key": record.key, "source": record.relpath, "status": "failed", "reason": reason,
            "stage": "process", "message": f"{name}: {err}"}


def run_tasks(tasks: list[tuple[ClipRecord, str]], config: dict, work_dir: str, workers: int = 0,
              scheduler: str | None = None, progress: bool = True,
              on_result: Callable[[dict], None] | None = None, isolate: bool = True,
              stall_timeout: float = 120.0) -> list[dict]:
    """Process ``(record, cache key)`` tasks; returns their status dicts in task order.

    With ``isolate`` (the default) every clip is processed in a supervised child process (see
    ``isolation.py``), so a decoder crash or hang becomes a reject; without it, in the calling
    process (for debugging: a segfault then ends the build).
    """
    results: dict[int, dict] = {}
    bar = tqdm(total=len(tasks), desc="process clips", unit="clip", disable=not progress or not tasks)

    def finish(i: int, status: dict) -> None:
        results[i] = status
        bar.update(1)
        if on_result:
            on_result(status)

    try:
        if not tasks:
            return []
        if workers == 0 and not scheduler:
            for i, (record, key) in enumerate(tasks):
                if isolate:
                    finish(i, process_isolated(record.to_dict(), config, work_dir, key, stall_timeout))
                else:
                    finish(i, process_and_store(record.to_dict(), config, work_dir, key))
        else:
            _run_dask(tasks, config, work_dir, workers, scheduler, finish, isolate, stall_timeout)
    finally:
        bar.close()
    return [results[i] for i in range(len(tasks))]


def _run_dask(tasks, config, work_dir, workers, scheduler, finish, isolate, stall_timeout) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise UserError(f"cannot connect to the dask scheduler at {scheduler}: {err}") from None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        futures = {}
        for i, (record, key) in enumerate(tasks):
            args = (record.to_dict(), config, work_dir, key) + ((stall_timeout,) if isolate else ())
            future = client.submit(process_isolated if isolate else process_and_store, *args, pure=False,
                                   key=f"clip-{i}-{key[:12]}")
            futures[future] = i
        for future in as_completed(futures):
            i = futures[future]
            try:
                finish(i, future.result())
            except UserError:
                raise
            except Exception as err:  # the worker died (decoder crash) or the task was lost
                status = _crash_status(tasks[i][0], err)
                ClipCache(work_dir).store(tasks[i][1], status)
                finish(i, status)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

