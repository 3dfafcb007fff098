"""What a run returns (:class:`RunResult`): its steps, losses and final evaluations, and the summary
printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
