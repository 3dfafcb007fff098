"""torch and the device of a training run: the install hint when torch is missing, ``--device``,
and torch's CPU thread count restored after a run."""

from __future__ import annotations

import contextlib

from ..errors import UserError

INSTALL_HINT = "pip install 'talkdata[train]'"


def require_torch():
    """The torch module, or a ``UserError`` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise UserError(f"the training loops need PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


def pick_device(name: str):
    torch = require_torch()
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"--device cuda: CUDA is not available ({why}, torch {torch.__version__}); use --device cpu")
        return torch.device("cuda")
    raise UserError(f"unknown device {name!r}; use cpu or cuda")


@contextlib.contextmanager
def torch_threads():
    """Restore torch's CPU thread count afterwards (the ``threads`` setting must not outlive a run)."""
    torch = require_torch()
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
