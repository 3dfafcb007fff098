""":func:`fit`, the training loop every reference loop runs, and its run folder.

Run folder (``--out``, default ``runs/NAME``):

* ``config.json``: the resolved configuration (loop, data and its version, seed, device, torch
  version, every setting, loop-specific values), also logged at the start;
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
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from ..progress import bar as progress_bar
from ..progress import shown as bar_shown
from .batches import training_batches
from .checkpoint import CHECKPOINT, check_resumable, load_checkpoint, save_checkpoint
from .metrics import METRICS, MetricsCSV, csv_columns, read_metrics, tensorboard_writer
from .result import RunResult
from .seeding import rng_state, set_rng_state
from .settings import eval_split_names
from .model_task import Task, train_step

logger = logging.getLogger(__name__)


def check_run_folder(run: Path, loops) -> None:
    """A run folder must be new, empty, or one a run wrote (its ``config.json`` names one of ``loops``):
    a run replaces its files, so it never writes into a folder of someone else's files."""
    try:
        empty = not run.is_dir() or next(run.iterdir(), None) is None
        if empty:
            return
        config = json.loads((run / "config.json").read_text())
        ours = isinstance(config, dict) and config.get("loop") in loops
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UserError(f"--out {run} is not empty and holds no talkdata training run (no config.json of a run); "
                        "give a new or empty folder: a run writes config.json, metrics.csv, metrics.json and "
                        "checkpoint.pt there")


def every(steps: int, parts: int = 10) -> Callable[[int], bool]:
    """True on about ``parts`` evenly spaced steps and on the last one (progress lines)."""
    interval = max(1, steps // parts)
    return lambda step: step % interval == 0 or step == steps


def fit(task: Task, model, optimizer, train_set, settings, config: dict, out, device, seed: int,
        resume: bool | None = None) -> RunResult:
    """Train ``model`` for ``settings.steps`` steps, evaluating, checkpointing and resuming.

    ``resume=None`` resumes when ``out`` has a checkpoint; ``True`` requires one; ``False`` starts
    afresh (the folder's files are replaced). Messages (the config, evaluations, and about ten loss
    lines when no progress bar is shown) go to this module's logger at INFO.
    """
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
        logger.info(f"{run} already holds step {checkpoint['step']} (asked for {settings.steps}): nothing to train "
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
    logger.info(f"config (saved to {run / 'config.json'}):\n" + json.dumps(config, indent=2, sort_keys=True))
    if checkpoint is not None:
        logger.info(f"resuming from {checkpoint_path}: step {start_step}, epoch {position[0]}, "
                    f"batch {position[1]} of it")
    losses = [float(row["loss"]) for row in metrics.kept if row["phase"] == "train"]
    writer = tensorboard_writer(run / "tensorboard", start_step + 1 if checkpoint is not None else None)

    steps = settings.steps
    bar = progress_bar(total=steps, initial=min(start_step, steps), desc=f"train {task.name}", unit="step",
                       dynamic_ncols=True)
    show = every(steps)
    loss_lines = not bar_shown()  # the bar shows the loss; without one, about ten lines do

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
            logger.info(f"step {step} {split}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
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
                if loss_lines and show(step):
                    logger.info(f"step {step}/{steps} loss {loss:.5g}")
                if settings.checkpoint_every > 0 and step % settings.checkpoint_every == 0 and step < steps:
                    save_checkpoint(checkpoint_path, state(step, epoch, batch_in_epoch))
                    logger.debug(f"step {step}: saved {checkpoint_path}")
        except KeyboardInterrupt:
            if consistent and step > start_step:  # between two steps: the state is consistent, keep it
                save_checkpoint(checkpoint_path, state(step, epoch, batch_in_epoch))
                logger.warning(f"interrupted after step {step}; saved {checkpoint_path}")
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
