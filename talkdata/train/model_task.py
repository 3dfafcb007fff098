"""What a loop gives :func:`talkdata.train.fit.fit`: its model-specific parts (:class:`Task`), and one
optimisation step."""

from __future__ import annotations

import abc


class Task(abc.ABC):
    """A loop's model-specific parts, for :func:`talkdata.train.fit.fit`."""

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
