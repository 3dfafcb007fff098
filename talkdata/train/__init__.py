"""Reference training loops: ``talkdata train atnet`` and ``talkdata train facial-pose``.

Owns the loops (one module per published model: ``atnet``, ``facial_pose``, each a ``Settings``,
a model, a :class:`~talkdata.train.model_task.Task` and ``setup`` / ``train``) and what they share, one
job per module: ``device`` (torch, ``--device``, thread count), ``seeding`` (seeds, RNG capture),
``settings`` (:class:`~talkdata.train.settings.LoopSettings`, ``--set``), ``batches`` (training and
evaluation batches, the read-ahead thread), ``model_task`` (a loop's model-specific parts, one step),
``metrics`` (``metrics.csv``, TensorBoard), ``checkpoint`` (``checkpoint.pt``), ``result`` (what a
run returns) and ``fit`` (the loop and its run folder).

May import: the loader (built datasets are read only through it), ``talkdata.declare``,
``talkdata.errors``, ``talkdata.progress``, ``talkdata.store``, torch, numpy and tqdm; never the build
(``talkdata.pipeline``), ``talkdata.qa``, the download machinery (``talkdata.acquire``) or the
corpora. torch is imported only when a loop runs (extra ``talkdata[train]``): ``import talkdata``
and the loader work without it.

:func:`run_training` checks torch and the device, applies ``--set`` overrides to the loop's
``Settings`` and runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from .device import pick_device, require_torch, torch_threads
from .metrics import read_metrics
from .result import RunResult
from .settings import apply_overrides

#: loop name -> module in this package
LOOPS = {"atnet": "atnet", "facial-pose": "facial_pose"}


def run_training(name: str, data: str, *, steps: int | None = None, device: str = "cpu", out: str | Path | None = None,
                 seed: int = 0, overrides: dict[str, Any] | None = None, resume: bool | None = None,
                 storage_options: dict | None = None) -> RunResult:
    """Train loop ``name`` on the dataset ``data``; writes the run folder ``out`` (default ``runs/NAME``).

    Messages go to the ``talkdata.train`` loggers; the progress bar (the loss, on stderr) follows
    :func:`talkdata.progress.shown`. ``resume``: ``None`` continues from
    ``out/checkpoint.pt`` when there is one, ``True`` requires one, ``False`` starts afresh.
    ``storage_options``: fsspec's options when ``data`` is a URL (endpoint, credentials).
    """
    if name not in LOOPS:
        raise UserError(f"unknown training loop {name!r}; choose from {', '.join(LOOPS)}")
    require_torch()
    from importlib import import_module

    module = import_module(f".{LOOPS[name]}", __name__)
    settings = apply_overrides(module.Settings(), dict(overrides or {}))
    if steps is not None:
        settings = apply_overrides(settings, {"steps": int(steps)})
    device = pick_device(device)
    run = Path(out) if out else Path("runs") / name
    from .fit import check_run_folder

    check_run_folder(run, LOOPS)  # before any data is read: a run never writes into someone else's folder
    from ..loader.shard_list import open_dataset
    from ..store import fsspec_defaults

    with fsspec_defaults(str(data), storage_options), torch_threads():  # neither outlives the run
        open_dataset(str(data))  # an unreachable or denied store: one error before the run starts
        return module.train(str(data), run, settings, device, int(seed), resume=resume)


def training_keys() -> list[str]:
    """``talkdata train --list-keys``: each loop's ``--set`` settings with default, type, range and help."""
    require_torch()
    from importlib import import_module

    from ..declare import declared, listing

    lines = []
    for name, module_name in LOOPS.items():
        settings = import_module(f".{module_name}", __name__).Settings
        lines += [f"{name}: {line}" for line in listing((d.name, d) for d in declared(settings))]
    return lines


__all__ = ["LOOPS", "RunResult", "read_metrics", "run_training", "training_keys"]
