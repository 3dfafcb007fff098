"""Per-corpus download hooks: ``talkdata.acquire.hooks.X`` downloads the corpus ``talkdata.corpora.X`` indexes.

A corpus whose files are not a list of archives (TalkingHead-1KH: YouTube videos cut into tubes)
has a module here named like its corpus module. Its hook:

``download(recipe, root: Path, only: list[str] | None, mirror: str | None)``
    Called when the recipe has no ``[download]`` table, or one with ``method = "module"``, by
    ``talkdata download NAME`` (and ``talkdata build NAME`` without ``--source``), **with keyword
    arguments**, passing only the parameters the function declares (all of them to a ``**kwargs``
    catch-all is *not* done):

    - ``recipe``: the loaded :class:`talkdata.recipe.Recipe` (``recipe.data`` is the parsed TOML, e.g.
      its ``[youtube]`` table);
    - ``root``: ``DATA_ROOT/NAME`` (created); write only below it, in the layout the corpus module's
      ``index`` reads;
    - ``only``: the parsed ``--only`` values or None; validate them and raise
      :class:`talkdata.errors.UserError` listing the valid ones;
    - ``mirror``: the ``--mirror`` URL or None (apply it with :func:`talkdata.acquire.plan.mirror_url`).

    A hook that does not declare ``only`` (or ``mirror``) makes ``--only`` (``--mirror``) an error
    rather than being silently ignored. The hook skips what is already complete and raises
    ``UserError`` (one line) for anything the user must fix; a returned object with a ``summary()``
    method is printed. Messages go to the hook module's logger, progress bars through
    :func:`talkdata.progress.bar` (shown or hidden by the command line's ``--quiet`` / ``--no-progress``).

Hooks may import :mod:`talkdata.corpora` (the layout they write is the one the index reads) and the
rest of :mod:`talkdata.acquire`; nothing in ``corpora`` imports them.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from ...errors import UserError


def download_hook(recipe) -> Callable | None:
    """The ``download`` function of the recipe's corpus in this package, or None when it has none."""
    name = recipe.data["index"].rpartition(".")[2]
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        return None
    hook = getattr(module, "download", None)
    return hook if callable(hook) else None


def call_hook(hook: Callable, **arguments):
    """Call a dataset module's hook with the keyword arguments it declares (see the package docstring)."""
    parameters = inspect.signature(hook).parameters
    named = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for name, option in (("only", "--only"), ("mirror", "--mirror")):
        if arguments.get(name) is not None and name not in named:
            raise UserError(f"{option} is not supported by {hook.__module__}.{hook.__name__}")
    return hook(**{k: v for k, v in arguments.items() if k in named})

