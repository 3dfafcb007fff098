"""What talkdata shows while it works: progress bars, and the command line's log handler.

Every module logs to its own ``logging.getLogger(__name__)`` under the ``talkdata`` logger, which
has only a ``NullHandler``: a program that imports talkdata sees nothing unless it configures
logging itself. Progress bars follow the same switch: :func:`bar` draws one (tqdm, on stderr) only
when the ``talkdata.progress`` logger is enabled for INFO, so they appear with the INFO messages and
``logging.getLogger("talkdata.progress").setLevel(logging.WARNING)`` hides them alone.

The command line calls :func:`terminal` once per run: messages go to stderr as they are (no level or
name prefix), written past any progress bar on the screen; ``--quiet`` keeps warnings and errors and
hides the bars, ``--verbose`` adds debug messages, ``--no-progress`` hides the bars only.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

ROOT = "talkdata"
PROGRESS = f"{ROOT}.progress"


def shown() -> bool:
    """Whether progress bars are drawn (the ``talkdata.progress`` logger is enabled for INFO)."""
    return logging.getLogger(PROGRESS).isEnabledFor(logging.INFO)


def bar(*, hide: bool = False, **options):
    """A tqdm bar on stderr, drawn when :func:`shown` (and not ``hide``); ``options`` go to tqdm."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=hide or not shown(), **options)


class TerminalHandler(logging.StreamHandler):
    """Writes each message to the current ``sys.stderr`` past any progress bar (tqdm clears and redraws it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # always the current sys.stderr (click's test runner and pytest replace it)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.stream):
            super().emit(record)


def hide_bars() -> None:
    """No progress bars from now on (``--no-progress``); messages are not affected."""
    logging.getLogger(PROGRESS).setLevel(logging.WARNING)


@contextlib.contextmanager
def terminal(level: int = logging.INFO) -> Iterator[None]:
    """For the duration of a command: talkdata's messages from ``level`` up on stderr, and progress
    bars when ``level`` lets INFO through. Messages are printed once, by this handler (not passed on to
    handlers of the root logger that another library may have set up). Everything is restored afterwards."""
    root, progress = logging.getLogger(ROOT), logging.getLogger(PROGRESS)
    saved = root.level, root.propagate, progress.level
    handler = TerminalHandler()
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        root.propagate = saved[1]
        progress.setLevel(saved[2])
