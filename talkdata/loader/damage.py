"""Damage: a shard or sample that cannot be read, and what a ``handler`` does about it.

:class:`DamagedSample` is the error every loader stage raises for damaged bytes (its message names
the shard, the sample and the member and says to run ``talkdata verify``); :func:`skip_damage`
applies the ``handler`` that :func:`talkdata.load` was given.

Imports only :mod:`talkdata.errors`.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UserError


class DamagedSample(UserError):
    """A member of a shard cannot be read (damaged bytes, a member missing from a sample whose json
    lists it, or content that differs from ``index.parquet``). The message names the shard, the
    sample and the member, and says to run ``talkdata verify``; ``load(handler=...)`` can skip these."""

    def __init__(self, message: str = ""):
        # torch's DataLoader re-raises a worker's exception as ``type(message + traceback)``: keep
        # the one line that says what is wrong (the traceback's last line holds it)
        if message.startswith("Caught DamagedSample") and "\n" in message:
            last = message.rstrip().rpartition("\n")[2]
            message = last.partition("DamagedSample: ")[2] or last
        super().__init__(message)


def damaged_message(url: str, key: str, field: str, detail: str, source: str) -> str:
    return (f"shard {url}, sample {key}: {field} {detail}; the shard is damaged - 'talkdata verify {source}' "
            "lists what is wrong (copy the dataset again, or rebuild it)")


def reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


#: what to do with a :class:`DamagedSample` (a shard or sample that cannot be read): ``None`` raises
#: it; a callable gets it and returns True to skip the sample (or the rest of the shard) and go
#: on, False to end the pass (webdataset's handler convention)
Handler = Callable[[BaseException], bool] | None


def skip_damage(handler: Handler, err: DamagedSample) -> bool:
    """True when ``handler`` says to skip what ``err`` is about; raises ``err`` when there is no
    handler; False when the handler says to stop."""
    if handler is None:
        raise err
    return bool(handler(err))

