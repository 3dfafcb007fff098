"""``collate``: batches of talkdata items for ``torch.utils.data.DataLoader``.

The batch is the one torch's ``default_collate`` makes (arrays stacked into tensors, ints into an
int64 tensor, strings into a list), built faster: the numpy arrays are stacked once.

Inside a DataLoader worker the batch must travel to the main process. torch sends every tensor
through its own shared-memory segment, whose file descriptor is passed over a socket: about 0.5 ms
per tensor, whatever its size. For the small tensors of the audio / landmark profiles that is most
of the cost of a batch (the worker then delivers a tenth of what it computes). So in a worker,
tensors under :data:`BY_VALUE_BYTES` are made :class:`TensorByValue`: a ``torch.Tensor`` in every
respect in the worker, pickled as its bytes, and unpickled in the main process as a plain
``torch.Tensor``. Larger tensors (video frames) keep torch's shared memory, which is faster from
about half a megabyte on (``benchmarks/loader.py`` measures both).

Sliding windows travel as their rows. FACIAL's audio windows (B, L, 16, F) repeat every feature
row 16 times: window ``t + 1`` is window ``t`` moved on by one row. A batch like that (checked bit
for bit when it is pickled, see :func:`sliding_rows`) is sent by value as its ``L + 15`` distinct
rows per item - 11x fewer bytes than 32 windows, 14x than 128, and no shared-memory segment - and
the same contiguous (B, L, 16, F) tensor is rebuilt on arrival.
"""

from __future__ import annotations

import numpy as np

from .epoch_plan import in_dataloader_worker
from .windows import sliding_view

BY_VALUE_BYTES = 384 * 1024

_TensorByValue = None


def _tensor_from_array(array: np.ndarray):
    import torch

    return torch.from_numpy(array)


def _tensor_from_rows(rows: np.ndarray, window: int):
    """The contiguous (B, L, window, ...) tensor of the sliding windows over ``rows`` (B, L + window - 1, ...)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(sliding_view(rows, window, axis=1)))


def is_sliding(batch: np.ndarray) -> bool:
    """Whether ``batch`` (B, L, W, ...) holds sliding windows: ``batch[:, t + 1, k] == batch[:, t, k + 1]``,
    bit for bit (so -0.0 and NaN payloads are kept), with L and W at least 2."""
    if batch.ndim < 3 or batch.shape[1] < 2 or batch.shape[2] < 2 or batch.dtype.kind not in "fiub":
        return False
    bits = batch.view(np.dtype(f"u{batch.dtype.itemsize}"))
    if not np.array_equal(bits[0, 1, :-1], bits[0, 0, 1:]):  # the usual "no", cheaply
        return False
    return bool(np.array_equal(bits[:, 1:, :-1], bits[:, :-1, 1:]))


def sliding_rows(batch: np.ndarray) -> np.ndarray | None:
    """The distinct rows (B, L + W - 1, ...) of a batch of sliding windows (B, L, W, ...) (each
    window's first row, then the last window's other rows), or None when ``batch`` is not one
    (:func:`is_sliding`). ``sliding_view(rows, W, axis=1)`` gives ``batch`` back."""
    if not is_sliding(batch):
        return None
    return np.concatenate([batch[:, :, 0], batch[:, -1, 1:]], axis=1)


def tensor_by_value_class():
    """The ``TensorByValue`` class (made on first use, so that importing this module needs no torch)."""
    global _TensorByValue
    if _TensorByValue is None:
        import torch

        class TensorByValue(torch.Tensor):
            """A CPU tensor that is pickled as its bytes - sliding windows as their rows - (no shared
            memory) and arrives as a plain tensor."""

            # operations on it give plain tensors, at plain-tensor speed
            __torch_function__ = torch._C._disabled_torch_function_impl

            def __reduce_ex__(self, protocol):
                array = self.detach().numpy()
                rows = sliding_rows(array)
                if rows is not None:
                    return _tensor_from_rows, (rows, array.shape[2])
                return _tensor_from_array, (array,)

        _TensorByValue = TensorByValue
    return _TensorByValue


def collate(items: list[dict]) -> dict:
    """A ``collate_fn`` for talkdata items: the same batch as torch's ``default_collate``, faster
    (see the module docstring for how batches leave a worker). Needs torch."""
    import torch
    from torch.utils.data import default_collate

    in_worker = in_dataloader_worker()
    by_value = tensor_by_value_class() if in_worker else None
    batch = {}
    for key, first in items[0].items():
        values = [item[key] for item in items]
        if isinstance(first, np.ndarray) and first.dtype.kind in "fiub" and \
                all(isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype == first.dtype for v in values):
            shape = (len(values),) + first.shape
            if in_worker and first.nbytes * len(values) >= BY_VALUE_BYTES and not is_sliding(first[None]):
                out = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, first.dtype)).dtype).share_memory_()
                np.stack(values, out=out.numpy())
                batch[key] = out
            else:
                stacked = torch.from_numpy(np.stack(values))
                batch[key] = stacked.as_subclass(by_value) if in_worker else stacked
        elif type(first) is int and all(type(v) is int for v in values):
            stacked = torch.tensor(values, dtype=torch.int64)
            batch[key] = stacked.as_subclass(by_value) if in_worker else stacked
        elif type(first) is str and all(type(v) is str for v in values):
            batch[key] = values
        else:
            batch[key] = default_collate(values)
    return batch
