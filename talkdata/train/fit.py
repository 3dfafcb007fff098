"""What every reference training loop shares: torch / device checks, seeding, settings, batches,
and :func:`fit`, the loop itself with its run folder.

Run folder (``--out``, default ``runs/NAME``):

* ``config.json``: the resolved configuration (loop, data and its version, seed, device, torch
  version, every setting, loop-specific values), also printed at the start;
* ``metrics.csv``: one row per training step (``phase`` = ``train``: ``step``, ``epoch``, the
  batch's ``loss``) and one row per evaluation (``phase`` = ``eval``, ``split``, the loss on that
  split and the loop's metric columns); columns in :func:`csv_columns`;
* ``checkpoint.pt``: the latest checkpoint (every ``checkpoint_every`` steps, at the end and on
  Ctrl-C): model, optimizer, step, data position (epoch, batches consumed in it), RNG states and
  the loop's own state; written to a temporary file and renamed, so it is never half-written;
* ``metrics.json``: the summary of a finished run (first / last losses, final evaluations);
* ``tensorboard/``: TensorBoard event files, only when ``torch.utils.tensorboard`` imports (it
  needs the ``tensorboard`` package; without it nothing is written and nothing is said).

Resume: when ``--out`` holds a ``checkpoint.pt`` the run continues from it (``--resume`` insists
on one): weights, optimizer state, RNG states and the data stream (the epoch is replayed up to the
saved position without training on it), so an interrupted run ends with the same losses and
weights as an uninterrupted one on the same device. Rows of ``metrics.csv`` after the checkpoint
are dropped. Only ``steps``, ``threads``, ``eval_every``, ``checkpoint_every`` and ``eval_splits``
may differ from the checkpoint's settings.

Only this package imports torch, and only when a loop runs: ``import talkdata`` and the loader work
without it.
"""

from __future__ import annotations

import abc
import contextlib
import csv
import json
import os
import queue
import random
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..declare import replace_checked, setting
from ..errors import UserError
from ..loader import collate

INSTALL_HINT = "pip install 'talkdata[train]'"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
#: settings that may change when a run is resumed (the others must match the checkpoint's)
RESUMABLE_CHANGES = frozenset({"steps", "threads", "eval_every", "checkpoint_every", "eval_splits"})
BASE_COLUMNS = ("step", "epoch", "phase", "split", "loss")


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


def seed_everything(seed: int, device, threads: int = 0) -> None:
    """Same seed, same device, same losses: seeded RNGs and deterministic kernels (``threads`` > 0
    also fixes torch's CPU thread count, which helps small models on busy machines)."""
    torch = require_torch()
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


@dataclass(frozen=True)
class LoopSettings:
    """Settings every reference loop has (how it runs); each loop adds its model's and its defaults.

    Declared like the build config (:func:`talkdata.declare.setting`): ``--set`` values are checked
    against each field's type and range, and an unknown name gets a did-you-mean.
    """

    steps: int = setting(2000, "training steps", ge=1, le=10**9)
    stride: int = setting(16, "frames between the starts of consecutive training windows", ge=1, le=100_000)
    workers: int = setting(0, "DataLoader worker processes (0: read in the training process)", ge=0, le=256)
    shuffle_buffer: int = setting(256, "items in the loader's shuffle buffer (0 or 1: no shuffling)", ge=0,
                                  le=10**7)
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", ge=0, le=1024)
    eval_every: int = setting(500, "evaluate every N steps (0: only at the end)", ge=0, le=10**9)
    checkpoint_every: int = setting(500, "write checkpoint.pt every N steps (0: only at the end)", ge=0, le=10**9)
    eval_splits: str = setting("val", "splits to evaluate on, comma-separated (train,val) or none "
                               "(checked by eval_split_names when the loop starts)")


def apply_overrides(settings, overrides: dict[str, Any]):
    """A copy of the ``settings`` dataclass with ``--set`` values, each checked against its declaration."""
    return replace_checked(settings, overrides, "training setting")


def eval_split_names(settings) -> list[str]:
    """``eval_splits`` ("val", "train,val", "none") as a list of split names."""
    text = settings.eval_splits.strip()
    if text in ("", "none"):
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in ("train", "val", "test"):
            raise UserError(f"eval_splits takes train, val, test (comma-separated) or none, got {settings.eval_splits!r}")
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------- data


def loader_generator(seed: int, epoch: int):
    """A DataLoader's own generator: the loader never draws from torch's global RNG (which then
    belongs to the model alone and is saved in checkpoints). talkdata's items are seeded by the
    dataset itself; this only seeds torch inside the workers."""
    torch = require_torch()
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


def batches(dataset, batch_size: int, workers: int, what: str, seed: int = 0, start: tuple[int, int] = (0, 0),
            pin_memory: bool = False) -> Iterator[tuple[int, int, dict]]:
    """``(epoch, index, batch)`` forever: epoch after epoch of ``dataset`` (``set_epoch`` each time);
    ``index`` counts the batches of the epoch from 1. ``start = (epoch, n)`` begins at that epoch
    and skips its first ``n`` batches (they are read, not returned: the stream after them is the
    same as in a run that never stopped). Workers are started once and kept for every epoch."""
    torch = require_torch()
    epoch, skip = start
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                         generator=loader_generator(seed, epoch), pin_memory=pin_memory,
                                         persistent_workers=workers > 0)
    while True:
        dataset.set_epoch(epoch)
        count = 0
        for batch in loader:
            count += 1
            if count > skip:
                yield epoch, count, batch
        if count == 0:
            raise UserError(f"no {what} in {dataset.dataset.source}: every clip is shorter than one window "
                            "(lower --set window=...)")
        epoch, skip = epoch + 1, 0


def prefetched(iterator: Iterator, depth: int = 2) -> Iterator:
    """``iterator``'s items, read ``depth`` ahead in a background thread: the next batch is being
    loaded (0 workers) or received from a worker (its shared memory, which needs the worker's
    attention) while the step runs - torch releases the GIL in its operations. Same items, same
    order; an exception of ``iterator`` is raised at the item where it happened. Closing the
    generator stops the thread."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in iterator:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((None, error))

    thread = threading.Thread(target=read, name="talkdata-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
        close = getattr(iterator, "close", None)
        if close is not None and not thread.is_alive():
            close()


def training_batches(dataset, batch_size: int, workers: int, what: str, device, seed: int = 0,
                     start: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, int, dict]]:
    """:func:`batches` as the training loop reads them: read ahead by :func:`prefetched` when the
    step leaves the CPU to the reader - batches come from DataLoader workers, or the step runs on
    an accelerator. On the CPU without workers the batches are made between steps: a reader thread
    would compete with torch's threads for the same cores (measured 79 % vs 84 % of the step rate
    without loading, facial-pose on 2 cores)."""
    stream = batches(dataset, batch_size, workers, what, seed, start, pin_memory=device.type == "cuda")
    if workers == 0 and device.type == "cpu":
        return stream
    return prefetched(stream)


def eval_dataset(make: Callable[[], Any], split: str):
    """``make()`` (a ``load(..., split=split)``), with a hint on ``eval_splits`` when the split is empty."""
    try:
        return make()
    except UserError as err:
        if f"split {split} of" in str(err):
            raise UserError(f"{err}; evaluate on other splits with --set eval_splits=... (e.g. train)") from None
        raise


def eval_batches(dataset, batch_size: int) -> Iterator[dict]:
    """Every item of an evaluation ``dataset`` once, in order, without touching torch's global RNG."""
    torch = require_torch()
    return iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                            generator=loader_generator(0, 0)))


def every(steps: int, parts: int = 10) -> Callable[[int], bool]:
    """True on about ``parts`` evenly spaced steps and on the last one (progress lines)."""
    interval = max(1, steps // parts)
    return lambda step: step % interval == 0 or step == steps


# ------------------------------------------------------------------------------------ the loop


class Task(abc.ABC):
    """A loop's model-specific parts, for :func:`fit`."""

    name = ""
    #: metric columns of the evaluation rows (besides ``loss``), in ``metrics.csv`` order
    columns: tuple[str, ...] = ()
    #: (model metric, constant-prediction baseline metric) shown in the summary
    headline: tuple[str, str] = ("", "")

    @abc.abstractmethod
    def loss(self, model, batch: dict):
        """The training loss of one batch (a scalar tensor); may observe the batch (baselines)."""

    @abc.abstractmethod
    def evaluate(self, model, split: str) -> dict:
        """``{"loss": ..., column: value, ...}`` over every window of ``split``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def train_step(task: Task, model, optimizer, batch: dict) -> float:
    """One optimisation step; the batch loss."""
    loss = task.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def csv_columns(task: Task) -> list[str]:
    return list(BASE_COLUMNS) + [column for column in task.columns if column not in BASE_COLUMNS]


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    losses: list[float] = field(repr=False)  # training loss of steps 1 .. steps (read back after a resume)
    evaluation: dict[str, dict[str, Any]]  # split -> final metrics
    headline: tuple[str, str] = ("", "")
    resumed_from: int | None = None

    @property
    def validation(self) -> dict[str, Any]:
        return self.evaluation.get("val", {})

    def summary(self) -> str:
        head = sum(self.losses[:10]) / len(self.losses[:10])
        tail = sum(self.losses[-10:]) / len(self.losses[-10:])
        resumed = f" (resumed from step {self.resumed_from})" if self.resumed_from is not None else ""
        lines = [f"trained {self.steps} steps{resumed}: loss {head:.4g} (first 10) -> {tail:.4g} (last 10)"]
        metric, baseline = self.headline
        for split, values in self.evaluation.items():
            numbers = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, (int, float)))
            lines.append(f"{split}: {numbers}")
            if metric in values and baseline in values:
                verdict = "beats" if values[metric] < values[baseline] else "does NOT beat"
                lines.append(f"{split}: {metric} {values[metric]:.4g} {verdict} the constant prediction "
                             f"({baseline} {values[baseline]:.4g})")
        lines.append(f"run folder: {self.run_dir}")
        return "\n".join(lines)


class MetricsCSV:
    """``metrics.csv``, appended and flushed row by row; on resume, the rows after the checkpoint's
    step are dropped first."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None):
        self.path = path
        self.columns = columns
        kept: list[dict] = []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= keep_until]
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, columns, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(kept)
        self._file.flush()
        self.kept = kept

    def write(self, row: dict) -> None:
        self._writer.writerow({key: value for key, value in row.items() if value is not None})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.csv`` with numbers parsed (empty cells left out)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                if value == "":
                    continue
                if key in ("phase", "split"):
                    parsed[key] = value
                elif key in ("step", "epoch", "frames"):
                    parsed[key] = int(value)
                else:
                    parsed[key] = float(value)
            rows.append(parsed)
    return rows


def tensorboard_writer(path: Path, purge_step: int | None):
    """A ``SummaryWriter`` on ``path`` when ``torch.utils.tensorboard`` imports, else ``None`` (silently)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path), purge_step=purge_step)


def rng_state(device) -> dict:
    torch = require_torch()
    version, state, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    out = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
           "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                     "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                     "gauss": float(numpy_state["gauss"])}}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict, device) -> None:
    torch = require_torch()
    torch.set_rng_state(state["torch"])
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    torch = require_torch()
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict:
    torch = require_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a foreign or damaged file: say which, do not guess
        raise UserError(f"cannot read the checkpoint {path} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                        "move it away to start the run afresh") from None


def check_resumable(checkpoint: dict, config: dict, path: Path) -> None:
    """The checkpoint must come from the same loop, data version, seed and settings."""
    old = checkpoint.get("config", {})
    for key in ("loop", "dataset_version", "seed"):
        if old.get(key) != config.get(key):
            raise UserError(f"{path} is a checkpoint of another run ({key} {old.get(key)!r}, this run {config.get(key)!r}); "
                            "use another --out, or delete the folder to start again")
    for key, value in config["settings"].items():
        if key not in RESUMABLE_CHANGES and old.get("settings", {}).get(key) != value:
            raise UserError(f"{path} was trained with {key}={old.get('settings', {}).get(key)!r}, this run asks for "
                            f"{key}={value!r}; only {', '.join(sorted(RESUMABLE_CHANGES))} may change when resuming "
                            "(use another --out to start a new run)")


def _print_config(config: dict, path: Path, log) -> None:
    if log:
        log(f"config (saved to {path}):\n" + json.dumps(config, indent=2, sort_keys=True))


def fit(task: Task, model, optimizer, train_set, settings, config: dict, out, device, seed: int,
        log: Callable[[str], None] | None, progress: bool = True, resume: bool | None = None) -> RunResult:
    """Train ``model`` for ``settings.steps`` steps, evaluating, checkpointing and resuming.

    ``resume=None`` resumes when ``out`` has a checkpoint; ``True`` requires one; ``False`` starts
    afresh (the folder's files are replaced).
    """
    from tqdm import tqdm

    run = Path(out)
    config = json.loads(json.dumps(config))  # plain JSON types (the checkpoint loads with weights_only=True)
    checkpoint_path = run / CHECKPOINT
    checkpoint = None
    if resume is not False and checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path)
        check_resumable(checkpoint, config, checkpoint_path)
    elif resume:
        raise UserError(f"--resume: {run} has no {CHECKPOINT} to resume from")
    split_names = eval_split_names(settings)

    start_step, position = 0, (0, 0)
    if checkpoint is not None and int(checkpoint["step"]) >= settings.steps and (run / "metrics.json").is_file():
        if log:
            log(f"{run} already holds step {checkpoint['step']} (asked for {settings.steps}): nothing to train "
                "(raise --steps to continue)")
        metrics_rows = read_metrics(run / METRICS) if (run / METRICS).is_file() else []
        return RunResult(run, int(checkpoint["step"]),
                         [row["loss"] for row in metrics_rows if row["phase"] == "train"],
                         json.loads((run / "metrics.json").read_text())["eval"], task.headline, int(checkpoint["step"]))
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        task.load_state_dict(checkpoint.get("task", {}))
        set_rng_state(checkpoint["rng"], device)
        start_step = int(checkpoint["step"])
        position = (int(checkpoint["epoch"]), int(checkpoint["batch_in_epoch"]))
        config = {**config, "resumed_from_step": start_step}
    try:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        metrics = MetricsCSV(run / METRICS, csv_columns(task), start_step if checkpoint is not None else None)
    except OSError as err:
        raise UserError(f"cannot write the run folder {run}: {err.strerror or err}") from None
    _print_config(config, run / "config.json", log)
    if checkpoint is not None and log:
        log(f"resuming from {checkpoint_path}: step {start_step}, epoch {position[0]}, batch {position[1]} of it")
    losses = [float(row["loss"]) for row in metrics.kept if row["phase"] == "train"]
    writer = tensorboard_writer(run / "tensorboard", start_step + 1 if checkpoint is not None else None)

    steps = settings.steps
    bar = tqdm(total=steps, initial=min(start_step, steps), desc=f"train {task.name}", unit="step",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    show = every(steps)

    def say(message: str) -> None:
        if log:
            with tqdm.external_write_mode(file=sys.stdout):
                log(message)

    def state(step: int, epoch: int, batch_in_epoch: int) -> dict:
        return {"format": 1, "loop": task.name, "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "task": task.state_dict(),
                "rng": rng_state(device), "config": config}

    def evaluate(step: int, epoch: int) -> dict[str, dict]:
        results = {}
        for split in split_names:
            values = task.evaluate(model, split)
            results[split] = values
            metrics.write({"step": step, "epoch": epoch, "phase": "eval", "split": split, **values})
            if writer is not None:
                for key, value in values.items():
                    writer.add_scalar(f"eval_{split}/{key}", value, step)
            say(f"step {step} {split}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        return results

    evaluation: dict[str, dict] = {}
    step, (epoch, batch_in_epoch) = start_step, position  # the last trained step and its batch
    consistent = True  # False while the model, the optimizer and metrics.csv are being changed
    stream = training_batches(train_set, settings.batch_size, settings.workers, f"{task.name} training windows",
                              device, seed, position) if start_step < steps else iter(())
    try:  # metrics.csv and the TensorBoard writer are closed however the run ends
        try:
            while step < steps:
                next_epoch, next_index, batch = next(stream)
                consistent = False
                loss = train_step(task, model, optimizer, batch)
                step, epoch, batch_in_epoch = step + 1, next_epoch, next_index
                losses.append(loss)
                metrics.write({"step": step, "epoch": epoch, "phase": "train", "split": "train", "loss": loss})
                if writer is not None:
                    writer.add_scalar("train/loss", loss, step)
                if settings.eval_every > 0 and step % settings.eval_every == 0 and step < steps:
                    evaluate(step, epoch)
                consistent = True
                bar.set_postfix(loss=f"{loss:.4g}", epoch=epoch, refresh=False)
                bar.update(1)
                if not progress and show(step):
                    say(f"step {step}/{steps} loss {loss:.5g}")
                if settings.checkpoint_every > 0 and step % settings.checkpoint_every == 0 and step < steps:
                    save_checkpoint(checkpoint_path, state(step, epoch, batch_in_epoch))
        except KeyboardInterrupt:
            if consistent and step > start_step:  # between two steps: the state is consistent, keep it
                save_checkpoint(checkpoint_path, state(step, epoch, batch_in_epoch))
                say(f"interrupted after step {step}; saved {checkpoint_path}")
            raise
        finally:
            bar.close()
            del stream  # stop DataLoader workers now
        evaluation = evaluate(step, epoch)
        summary = {"steps": step, "first_loss": losses[0] if losses else None,
                   "last_loss": losses[-1] if losses else None,
                   "first10_loss": float(np.mean(losses[:10])) if losses else None,
                   "last10_loss": float(np.mean(losses[-10:])) if losses else None, "eval": evaluation}
        (run / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if step > start_step:
            save_checkpoint(checkpoint_path, state(step, epoch, batch_in_epoch))
    finally:
        if writer is not None:
            writer.close()
        metrics.close()
    return RunResult(run, step, losses, evaluation, task.headline, start_step if checkpoint is not None else None)


@contextlib.contextmanager
def torch_threads():
    """Restore torch's CPU thread count afterwards (the ``threads`` setting must not outlive a run)."""
    torch = require_torch()
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
