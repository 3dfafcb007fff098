"""Resumable HTTP(S) downloads: Range resume, bounded retries with backoff, checksums, progress.

One file (:func:`fetch_one`) streams into ``DEST.part`` while hashing; after an interrupted transfer
the next attempt (or the next run) asks for ``Range: bytes=N-`` and appends, so nothing is fetched
twice. A server that ignores the range (200 instead of 206) restarts the file from zero. Only a
transfer whose size and checksum match is renamed to ``DEST``; a mismatch moves the data aside to
``DEST.bad-md5`` (or ``.bad-sha256``, ``.bad-size``) and raises, naming the file and both values.

Transient failures (connection refused or reset, timeouts, a body shorter than announced, HTTP 408,
429 and 5xx) are retried with exponential backoff; the retry budget counts attempts that made no
progress, so a long file over a flaky link still completes, and a dead host fails after
``RetryPolicy.attempts`` tries. Other statuses (401, 403, 404, ...) fail at once with
:class:`HTTPStatusError`.

:func:`fetch_all` runs many files on a thread pool behind one progress bar (bytes, rate, ETA).
Messages only ever show each job's ``public_url``: URLs that carry a download key and
``Authorization`` headers are never printed, and the header is dropped when a redirect leaves the
host it was meant for.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ..errors import UserError
from ..progress import bar as progress_bar

CHUNK = 1 << 20
TIMEOUT = 60.0
USER_AGENT = "talkdata-downloader/0.1 (+https://github.com/talkdata)"
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in a row without progress before giving up
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_backoff: float = 60.0
    max_total: int = 100  # all attempts of one file, progress or not

    def delay(self, failures: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** max(0, failures - 1)))


DEFAULT_POLICY = RetryPolicy()


# --------------------------------------------------------------------------- errors


class DownloadError(UserError):
    """A download failed in a way the user must act on (the message says how)."""


class HTTPStatusError(DownloadError):
    def __init__(self, label: str, status: int, reason: str, public_url: str):
        self.label, self.status, self.reason, self.public_url = label, status, reason, public_url
        super().__init__(f"{label}: HTTP {status} {reason} from {public_url}")


class Unreachable(DownloadError):
    pass


class VerificationError(DownloadError):
    """Size or checksum mismatch; ``kept`` is where the data was moved aside."""

    def __init__(self, message: str, kept: Path | None):
        self.kept = kept
        super().__init__(message)


class _Transient(Exception):
    """A failure worth retrying (internal)."""


class Stopped(Exception):
    """Another download failed and asked everyone to stop (the ``.part`` file stays for a resume)."""


# --------------------------------------------------------------------------- job description


@dataclass(frozen=True)
class Checksum:
    algo: str  # "md5" or "sha256"
    hexdigest: str
    origin: str = "the recipe"  # where the expected value comes from, for messages

    def __str__(self) -> str:
        return f"{self.algo} {self.hexdigest}"


@dataclass(frozen=True)
class Job:
    """One file to fetch. ``url`` may carry a secret; messages use ``public_url`` only."""

    label: str
    url: str = field(repr=False)  # may carry a download key
    public_url: str = field()
    dest: Path = field()
    size: int | None = None
    checksum: Checksum | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    optional: bool = False

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")


@dataclass(frozen=True)
class Fetched:
    bytes: int
    algo: str
    hexdigest: str
    verified: bool  # True when a known checksum matched


# --------------------------------------------------------------------------- transport


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry credentials to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_Redirects)


def _open(url: str, headers: dict[str, str], timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    return _OPENER.open(request, timeout=timeout)


def _transient(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code in TRANSIENT_STATUS
    return isinstance(err, (_Transient, urllib.error.URLError, http.client.HTTPException, ConnectionError,
                            TimeoutError, socket.timeout))


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):  # never the server's own reason text: it may echo a credential
        return f"HTTP {err.code} {http.client.responses.get(err.code, '')}".strip()
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        err = err.reason if isinstance(err.reason, BaseException) else Exception(str(err.reason))
    text = str(err) or type(err).__name__
    return text if len(text) < 200 else text[:200] + "..."


def _status_error(job_label: str, err: urllib.error.HTTPError, public_url: str) -> HTTPStatusError:
    """The status and the standard reason phrase; the server's own phrase is never shown (it may echo a credential)."""
    status = err.code
    try:
        err.close()
    except Exception:  # pragma: no cover - best effort
        pass
    return HTTPStatusError(job_label, status, http.client.responses.get(status, "error"), public_url)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = int(span.split("-")[0]) if span and span != "*" and span.split("-")[0].isdigit() else None
    return start, (int(total) if total.isdigit() else None)


def get_bytes(url: str, public_url: str, headers: dict[str, str] | None = None, label: str = "",
              policy: RetryPolicy = DEFAULT_POLICY, timeout: float = TIMEOUT, limit: int = 64 << 20) -> bytes:
    """A small document (an API answer), with the same retry rules as files."""
    failures = 0
    while True:
        try:
            with _open(url, dict(headers or {}), timeout) as response:
                data = response.read(limit + 1)
            if len(data) > limit:
                raise DownloadError(f"{label or public_url}: answer larger than {limit} bytes from {public_url}")
            return data
        except urllib.error.HTTPError as err:
            if not _transient(err):
                raise _status_error(label or public_url, err, public_url) from None
            failures += 1
            last = err
        except DownloadError:
            raise
        except Exception as err:
            if not _transient(err):
                raise
            failures += 1
            last = err
        if failures >= policy.attempts:
            raise Unreachable(f"cannot reach {urlsplit(public_url).netloc} for {label or public_url} after "
                              f"{failures} attempts ({_reason(last)}): check the network connection, or use --mirror URL") from None
        time.sleep(policy.delay(failures))


# --------------------------------------------------------------------------- one file


@dataclass
class _State:
    algo: str
    offset: int = 0
    total: int | None = None
    hasher: object = None

    def reset(self) -> None:
        self.offset, self.hasher = 0, hashlib.new(self.algo)


def _hash_prefix(path: Path, state: _State) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            state.hasher.update(chunk)
            state.offset += len(chunk)


def _write(handle, chunk: bytes, path: Path) -> None:
    try:
        handle.write(chunk)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while writing {path}: free space and run the same command again "
                                "(the download resumes where it stopped)") from None
        raise


def _transfer(job: Job, state: _State, on_bytes: Callable[[int], None], on_total: Callable[[int], None],
              stop: threading.Event | None, timeout: float) -> None:
    """One HTTP request continuing at ``state.offset``; returns when the file is complete."""
    headers = dict(job.headers)
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    try:
        response = _open(job.url, headers, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and state.offset:  # nothing left after our offset: complete, or the file shrank
            _, total = _content_range(err.headers.get("Content-Range"))
            err.close()
            if total == state.offset:
                state.total = total
                return
            on_bytes(-state.offset)
            state.reset()
            job.part.unlink(missing_ok=True)
            raise _Transient("the server rejected the resume offset; restarting the file") from None
        raise
    with response:
        start, total = _content_range(response.headers.get("Content-Range"))
        if response.status == 206 and start != state.offset:
            on_bytes(-state.offset)  # a range we did not ask for: drop the partial file, ask for all of it
            state.reset()
            job.part.unlink(missing_ok=True)
            raise _Transient(f"the server answered bytes {start}- to a request for bytes {state.offset}-")
        if state.offset and response.status != 206:
            on_bytes(-state.offset)  # the server ignored the range: start again from zero
            state.reset()
        length = response.headers.get("Content-Length")
        if total is None and length is not None and length.isdigit():
            total = state.offset + int(length)
        if total is not None and state.total is None:
            on_total(total)
        state.total = total if total is not None else state.total
        if job.size is not None and total is not None and total != job.size:
            raise VerificationError(f"{job.label}: the server announces {total} bytes, the recipe expects "
                                    f"{job.size} ({job.public_url}); nothing was downloaded", None)
        with job.part.open("ab" if state.offset else "wb") as out:
            while True:
                if stop is not None and stop.is_set():
                    raise Stopped()
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                _write(out, chunk, job.part)
                state.hasher.update(chunk)
                state.offset += len(chunk)
                on_bytes(len(chunk))
    if total is not None and state.offset < total:
        raise _Transient(f"connection closed after {state.offset} of {total} bytes")
    if total is not None and state.offset > total:
        on_bytes(-state.offset)
        state.reset()
        raise _Transient("the server sent more bytes than announced; restarting the file")


def move_aside(path: Path, tag: str, like: Path | None = None) -> Path:
    """Rename ``path`` to ``LIKE.bad-TAG`` (``LIKE`` defaults to ``path``; ``.1``, ``.2``, ... when taken)."""
    like = like or path
    target = like.with_name(f"{like.name}.bad-{tag}")
    n = 1
    while target.exists():
        target = like.with_name(f"{like.name}.bad-{tag}.{n}")
        n += 1
    path.replace(target)
    return target


def hash_file(path: Path, algo: str) -> str:
    hasher = hashlib.new(algo)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _verify(label: str, path: Path, final: Path, got_size: int, size: int | None, checksum: Checksum | None,
            digest: str) -> None:
    """Raise :class:`VerificationError` (after moving ``path`` aside as ``final.bad-*``) on a mismatch."""
    if size is not None and got_size != size:
        kept = move_aside(path, "size", final)
        raise VerificationError(f"size mismatch for {label}: expected {size} bytes, got {got_size}; the file is kept "
                                f"as {kept} (nothing was deleted): remove it and run again", kept)
    if checksum and digest != checksum.hexdigest.lower():
        kept = move_aside(path, checksum.algo, final)
        raise VerificationError(f"checksum mismatch for {label}: expected {checksum.algo} {checksum.hexdigest} (from "
                                f"{checksum.origin}), got {digest}; the file is kept as {kept} (nothing was "
                                "deleted): remove it and run again, or check the source / --mirror", kept)


def check_file(path: Path, label: str, size: int | None, checksum: Checksum | None) -> Fetched:
    """Verify a file already in place (a copy the user brought, or one from an earlier run).

    On a mismatch the file is moved aside (``PATH.bad-md5`` ...) and :class:`VerificationError` says which
    file, which value was expected (and from where) and which was found.
    """
    algo = checksum.algo if checksum else "sha256"
    actual = path.stat().st_size
    digest = hash_file(path, algo) if size is None or actual == size else ""
    _verify(label, path, path, actual, size, checksum, digest)
    return Fetched(actual, algo, digest, checksum is not None)


def fetch_one(job: Job, *, on_bytes: Callable[[int], None] = lambda n: None,
              on_total: Callable[[int], None] = lambda n: None, stop: threading.Event | None = None,
              policy: RetryPolicy = DEFAULT_POLICY, timeout: float = TIMEOUT) -> Fetched:
    """Download ``job`` into ``job.dest`` (resuming ``job.part``), verify, and rename into place."""
    job.part.parent.mkdir(parents=True, exist_ok=True)
    state = _State(job.checksum.algo if job.checksum else "sha256")
    state.reset()
    if job.part.exists():
        _hash_prefix(job.part, state)
        on_bytes(state.offset)
    logger.debug(f"{job.label}: fetching {job.public_url}" + (f" from byte {state.offset}" if state.offset else ""))
    failures = attempts = 0
    while True:
        before = state.offset
        try:
            _transfer(job, state, on_bytes, on_total, stop, timeout)
            break
        except urllib.error.HTTPError as err:
            if not _transient(err):
                raise _status_error(job.label, err, job.public_url) from None
            last: BaseException = err
        except (DownloadError, Stopped):
            raise
        except Exception as err:
            if not _transient(err):
                raise
            last = err
        attempts += 1
        failures = 0 if state.offset > before else failures + 1
        if failures >= policy.attempts or attempts >= policy.max_total:
            raise Unreachable(f"cannot download {job.label} from {urlsplit(job.public_url).netloc} after {attempts} "
                              f"attempts ({_reason(last)}): check the network connection, or use --mirror URL; "
                              "running the same command again resumes the file") from None
        delay = policy.delay(max(1, failures))
        logger.debug(f"{job.label}: attempt {attempts} failed ({_reason(last)}); trying again in {delay:g} s")
        if stop is not None:
            if stop.wait(delay):
                raise Stopped()
        else:
            time.sleep(delay)
    size = job.size if job.size is not None else state.total
    digest = state.hasher.hexdigest()
    _verify(job.label, job.part, job.dest, state.offset, size, job.checksum, digest)
    job.part.replace(job.dest)
    return Fetched(state.offset, state.algo, digest, job.checksum is not None)


# --------------------------------------------------------------------------- many files


@dataclass
class Outcome:
    done: dict[int, Fetched] = field(default_factory=dict)
    skipped: dict[int, DownloadError] = field(default_factory=dict)  # optional files that failed


def fetch_all(jobs: list[Job], *, workers: int = 4, desc: str = "download",
              on_done: Callable[[Job, Fetched], None] | None = None,
              policy: RetryPolicy = DEFAULT_POLICY, timeout: float = TIMEOUT) -> Outcome:
    """Fetch ``jobs`` with ``workers`` threads behind one progress bar.

    The first failure of a required file stops the others (their ``.part`` files stay, so a re-run
    resumes) and is raised after the pool has drained; an optional file that fails is reported and
    skipped. ``on_done`` runs in the worker thread after each verified file.
    """
    outcome = Outcome()
    if not jobs:
        return outcome
    known = sum(job.size or 0 for job in jobs)
    bar = progress_bar(total=known or None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                       dynamic_ncols=True, leave=False)
    lock = threading.Lock()
    stop = threading.Event()
    errors: dict[int, BaseException] = {}

    def add(n: int) -> None:
        with lock:
            bar.update(n)

    def work(index: int, job: Job) -> None:
        if stop.is_set():
            return

        def grow(total: int) -> None:
            if job.size is None:
                with lock:
                    bar.total = (bar.total or 0) + total
                    bar.refresh()

        try:
            fetched = fetch_one(job, on_bytes=add, on_total=grow, stop=stop, policy=policy, timeout=timeout)
            if on_done is not None:
                on_done(job, fetched)
            outcome.done[index] = fetched
        except Stopped:
            return
        except DownloadError as err:
            if job.optional:
                outcome.skipped[index] = err
                logger.warning(f"skipped optional {job.label}: {err}")
                return
            errors[index] = err
            stop.set()
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            errors[index] = err
            stop.set()

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="talkdata-dl") as pool:
            futures = [pool.submit(work, i, job) for i, job in enumerate(jobs)]
            try:
                for future in as_completed(futures):
                    future.result()
            except KeyboardInterrupt:
                stop.set()
                raise
    finally:
        bar.close()
    if errors:
        first = min(errors)
        for index in sorted(errors)[1:]:
            if not isinstance(errors[index], Stopped):
                logger.error(f"also failed: {errors[index]}")
        raise errors[first]
    return outcome
