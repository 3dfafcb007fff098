"""The outcome of one clip: ``Done | Rejected | Failed``, the one type every path records.

The executor, the isolation layer and the cache all speak this type; ``status.json`` in a cache
entry is its dict form (``to_status`` / ``from_status``). The same event is the same outcome on
every path: a decoder that kills its process is ``Rejected("decoder_crash")`` whether it ran in
the isolated child, in a dask worker or in this process.

An interruption (Ctrl-C, SIGTERM, SIGHUP) is never an outcome: it raises ``Interrupted`` and
nothing is recorded for the clip, so the same command processes it again.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Union

from ..errors import REASONS, UserError

#: signals that mean "the user or the system stopped the build", not "this clip is bad"
INTERRUPT_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})


class Interrupted(UserError):
    """The build was interrupted while a clip was in flight; nothing is recorded for it (the CLI
    prints one ``error:`` line; the same command resumes)."""


@dataclass(frozen=True)
class Done:
    key: str
    source: str


@dataclass(frozen=True)
class Rejected:
    key: str
    source: str
    reason: str
    stage: str
    message: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS or self.reason == "failed":
            raise ValueError(f"unknown reject reason {self.reason!r}")


@dataclass(frozen=True)
class Failed:
    """An unexpected error: retried with ``--retry-failed``."""

    key: str
    source: str
    message: str
    stage: str = "process"


Outcome = Union[Done, Rejected, Failed]


def decoder_crash(key: str, source: str, how: str) -> Rejected:
    """The process that decoded the clip died (``how``: "signal SIGSEGV", "exit code 1", ...)."""
    return Rejected(key, source, "decoder_crash", "decode", f"the worker process died ({how}) while processing this clip")


def decode_timeout(key: str, source: str, seconds: float) -> Rejected:
    return Rejected(key, source, "decode_timeout", "decode",
                    f"no progress for {seconds:g} s while processing (decoder hang?); the worker was killed")


def to_status(outcome: Outcome) -> dict:
    """The ``status.json`` form (the format of earlier builds' caches)."""
    base = {"key": outcome.key, "source": outcome.source}
    if isinstance(outcome, Done):
        return {**base, "status": "done"}
    if isinstance(outcome, Rejected):
        return {**base, "status": "rejected", "reason": outcome.reason, "stage": outcome.stage,
                "message": outcome.message}
    return {**base, "status": "failed", "reason": "failed", "stage": outcome.stage, "message": outcome.message}


def from_status(status: dict) -> Outcome:
    base = (status["key"], status["source"])
    if status["status"] == "done":
        return Done(*base)
    if status["status"] == "rejected":
        return Rejected(*base, status["reason"], status.get("stage", ""), status.get("message", ""))
    if status["status"] == "failed":
        return Failed(*base, status.get("message", ""), status.get("stage", "process"))
    raise ValueError(f"unknown status {status['status']!r}")


def reason(outcome: Outcome) -> str | None:
    """The reject reason code (``failed`` for ``Failed``), None for ``Done``."""
    if isinstance(outcome, Rejected):
        return outcome.reason
    return "failed" if isinstance(outcome, Failed) else None
