"""The per-clip task: process one clip and record its ``Outcome`` in the cache.

Run by the executor in this process or on dask workers, and by the isolated child
(``isolation.py``); neither of those imports the other. Clip problems never raise here: they are
outcomes. Configuration problems (``UserError``) and a full disk stop the build.
"""

from __future__ import annotations

import traceback

from ..errors import DISK_FULL_ERRNOS, ClipError, UserError, disk_full_error
from ..corpora.records import ClipRecord
from ..config import BuildConfig
from .cache import ClipCache
from .clip import process_clip
from .outcome import Done, Failed, Outcome, Rejected


def warm_up(config: BuildConfig) -> None:
    """Load the configured models (cached per process), so a missing model stops the build before any
    clip and a fresh isolated child does not spend a clip's stall budget on loading them."""
    from ..face.detect import detector_backend
    from ..face.landmarks import landmark_backend

    detector_backend(config.face.detector)
    landmark_backend(config.face.backend, config.face.fan_device)
    if config.audio.deepspeech_model:
        from ..audio.deepspeech import load_deepspeech

        load_deepspeech(config.audio.deepspeech_model)


def store(cache: ClipCache, key: str, outcome: Outcome, files: dict | None = None, meta: dict | None = None) -> None:
    """``cache.store``; a full disk or an output folder that cannot be written stops the build (the entry
    is written whole or not at all): it is no fault of the clip."""
    try:
        cache.store(key, outcome, files, meta)
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(err) from None
        target = err.filename2 or err.filename or cache.work
        raise UserError(f"cannot write {target} in the output folder ({err.strerror or err}); fix its permissions "
                        "(or its file system) and run the same command again to resume (finished clips are kept)"
                        ) from None


def failure(key: str, source: str, err: BaseException) -> Failed:
    """An unexpected error as ``Failed`` (retried with --retry-failed), naming where it happened."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return Failed(key, source, f"{type(err).__name__}: {err}{where}")


def process_and_store(record_data: dict, config: BuildConfig, work_dir: str, key: str) -> Outcome:
    """Process one clip and record the outcome in the cache; never raises for clip problems."""
    record = ClipRecord.from_dict(record_data)
    cache = ClipCache(work_dir)
    try:
        output = process_clip(record, config)
    except ClipError as err:
        outcome: Outcome = Rejected(record.key, record.relpath, err.reason, err.stage, str(err))
    except UserError:
        raise  # configuration problems (missing model file, ...) stop the build
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(err) from None  # stops the build; nothing half-written stays in the cache
        outcome = failure(record.key, record.relpath, err)
    except Exception as err:  # an unexpected error: record it, retry with --retry-failed
        outcome = failure(record.key, record.relpath, err)
    else:
        outcome = Done(record.key, record.relpath)
        store(cache, key, outcome, output.files, output.meta)
        return outcome
    store(cache, key, outcome)
    return outcome
