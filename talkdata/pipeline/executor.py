"""Run per-clip work in process (``workers=0``), on a local dask cluster, or on an existing one.

The executor only schedules: each task processes one clip and writes its cache entry itself
(workers must therefore see the output folder), and returns a small status dict. Results never
depend on the number of workers or the order tasks finish in, because the packing stage reads the
cache in key order.
"""

from __future__ import annotations

import logging
import traceback
from typing import Callable

from tqdm import tqdm

from ..errors import ClipError, UserError
from ..sources.base import ClipRecord
from .cache import ClipCache
from .clip import process_clip


def process_and_store(record_data: dict, config: dict, work_dir: str, key: str) -> dict:
    """Process one clip and record the outcome in the cache; never raises for clip problems."""
    record = ClipRecord.from_dict(record_data)
    cache = ClipCache(work_dir)
    base = {"key": record.key, "source": record.relpath}
    try:
        output = process_clip(record, config)
    except ClipError as err:
        status = {**base, "status": "rejected", "reason": err.reason, "stage": err.stage, "message": str(err)}
        cache.store(key, status)
        return status
    except UserError:
        raise  # configuration problems (missing model file, ...) stop the build
    except Exception as err:  # an unexpected error: record it, retry with --retry-failed
        last = traceback.extract_tb(err.__traceback__)[-1]
        message = f"{type(err).__name__}: {err} (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
        status = {**base, "status": "failed", "reason": "failed", "stage": "process", "message": message}
        cache.store(key, status)
        return status
    status = {**base, "status": "done", "timings": output.timings}
    cache.store(key, {k: v for k, v in status.items() if k != "timings"}, output.files, output.meta)
    return status


def _crash_status(record: ClipRecord, err: BaseException) -> dict:
    name = type(err).__name__
    reason = "decoder_crash" if name == "KilledWorker" else "failed"
    return {"key": record.key, "source": record.relpath, "status": "failed", "reason": reason,
            "stage": "process", "message": f"{name}: {err}"}


def run_tasks(tasks: list[tuple[ClipRecord, str]], config: dict, work_dir: str, workers: int = 0,
              scheduler: str | None = None, progress: bool = True,
              on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Process ``(record, cache key)`` tasks; returns their status dicts in task order."""
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
                finish(i, process_and_store(record.to_dict(), config, work_dir, key))
        else:
            _run_dask(tasks, config, work_dir, workers, scheduler, finish)
    finally:
        bar.close()
    return [results[i] for i in range(len(tasks))]


def _run_dask(tasks, config, work_dir, workers, scheduler, finish) -> None:
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
            future = client.submit(process_and_store, record.to_dict(), config, work_dir, key, pure=False,
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

