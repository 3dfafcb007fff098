"""Per-clip work in a supervised child process, so that one bad file cannot take a build down.

Decoding untrusted media can crash the decoder (a segfault in a codec) or hang it. Every clip is
therefore processed in a child process (``python -m talkdata.pipeline.isolation``) that stays up
from one clip to the next (models are loaded once). The parent sends it one task at a time and
waits for the answer:

- the child dies (a signal, or ``os._exit`` in native code): the clip is rejected as
  ``decoder_crash`` and a fresh child takes the next clip; a child ended by an interrupt signal
  (Ctrl-C reaches the whole process group, SIGTERM, SIGHUP) is not a verdict on the clip:
  ``Interrupted`` is raised and nothing is recorded. The child ignores SIGINT itself, so Ctrl-C
  stops the build from the parent and never kills a clip half-way;
- the child sends nothing for ``stall_timeout`` seconds: it is killed and the clip is rejected as
  ``decode_timeout``. The child sends a heartbeat (at most once a second) while frames and audio
  are being decoded, so long clips never time out while they make progress.

Protocol: length-prefixed pickles on the child's stdin (tasks) and on a dedicated pipe (replies:
``("ready",)`` once the child has imported its libraries, then ``("beat",)`` or ``("done", outcome)``);
the child's own stdout goes to stderr so that prints from
native libraries cannot corrupt the replies.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from typing import BinaryIO

from .outcome import INTERRUPT_SIGNALS, Interrupted, Outcome, decode_timeout, decoder_crash

_HEADER = struct.Struct("<Q")
BEAT_INTERVAL = 1.0
#: how long a fresh child may take to import its libraries and load its models (not counted against
#: ``stall_timeout``: on a loaded machine that alone can take longer than a short clip timeout)
STARTUP_TIMEOUT = 300.0


def _write(stream: BinaryIO, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read(fd: int):
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    data = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)


class IsolatedWorker:
    """Runs ``process_and_store`` tasks in one child process, replaced after a crash or a stall."""

    def __init__(self, stall_timeout: float = 120.0):
        self.stall_timeout = stall_timeout
        self._child: subprocess.Popen | None = None
        self._replies: int | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        self._child = subprocess.Popen(
            [sys.executable, "-m", "talkdata.pipeline.isolation", str(write_fd), str(os.getpid())],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), close_fds=True,
        )
        os.close(write_fd)
        self._replies = read_fd

    def _stop(self) -> None:
        if self._child is None:
            return
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        for stream in (self._child.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        os.close(self._replies)
        self._child, self._replies = None, None

    def close(self) -> None:
        if self._child is not None and self._child.poll() is None:
            try:
                _write(self._child.stdin, None)  # ask it to exit
                self._child.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop()

    def run(self, record_data: dict, config: dict, work_dir: str, key: str) -> Outcome:
        """The clip's outcome; crashes and stalls become rejects (the caller stores them)."""
        base = (record_data.get("key") or _record_key(record_data), record_data["relpath"])
        if self._child is None or self._child.poll() is not None:
            self._stop()
            self._start()
            ready, _, _ = select.select([self._replies], [], [], STARTUP_TIMEOUT)
            if not ready or _read(self._replies) != ("ready",):
                self._child.kill()
                return self._crashed(*base)
            fresh = True  # its first message comes after the models are loaded
        else:
            fresh = False
        try:
            _write(self._child.stdin, (record_data, config, work_dir, key))
        except (BrokenPipeError, OSError):
            return self._crashed(*base)
        while True:
            ready, _, _ = select.select([self._replies], [], [], STARTUP_TIMEOUT if fresh else self.stall_timeout)
            fresh = False
            if not ready:
                self._stop()
                return decode_timeout(*base, self.stall_timeout)
            message = _read(self._replies)
            if message is None:
                return self._crashed(*base)
            if message[0] == "done":
                return message[1]
            if message[0] == "error":  # a configuration problem: re-raised in the parent
                raise message[1]

    def _crashed(self, key: str, source: str) -> Outcome:
        code = self._child.wait()
        self._stop()
        if code < 0 and -code in INTERRUPT_SIGNALS:
            raise Interrupted(f"interrupted ({signal.Signals(-code).name}) while processing {source}; run the same "
                              "command again to resume")
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return decoder_crash(key, source, how)


def _record_key(record_data: dict) -> str:
    from ..corpora.records import ClipRecord

    return ClipRecord.from_dict(record_data).key


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the supervising process dies (a killed build leaves no worker behind
    that could later write into a cache a re-run is using)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(reply_fd: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides, not us
    _die_with_parent(parent)
    replies = os.fdopen(reply_fd, "wb")
    os.dup2(2, 1)  # native libraries printing to stdout must not reach the parent's pipe
    tasks = sys.stdin.buffer
    from ..errors import UserError
    from ..media import decode
    from .task import process_and_store, warm_up

    last = [0.0]

    def beat() -> None:
        now = time.monotonic()
        if now - last[0] >= BEAT_INTERVAL:
            last[0] = now
            _write(replies, ("beat",))

    decode.progress_hook = beat
    _write(replies, ("ready",))  # imports done: the stall timer starts with the first task
    while True:
        task = _read(tasks.fileno())
        if task is None:
            return
        try:
            warm_up(task[1])  # models load before the stall timer starts (a beat right after)
            last[0] = 0.0
            beat()
            outcome = process_and_store(*task)
        except UserError as err:
            _write(replies, ("error", err))
            continue
        _write(replies, ("done", outcome))


if __name__ == "__main__":  # pragma: no cover - the child side, exercised through IsolatedWorker
    _child_main(int(sys.argv[1]), int(sys.argv[2]))
