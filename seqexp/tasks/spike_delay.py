"""Measuring spike delays (Gers, Schraudolph & Schmidhuber 2002, "Learning Precise Timing with
LSTM Recurrent Networks", JMLR 3: the MSD task): a train of spikes, and at each spike the time
since the one before."""

from __future__ import annotations

import torch
from torch import Tensor

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

IGNORE = -1.0
"""The target of a step that is not scored (every step but the spikes after the first)."""
TOLERANCE = 0.49
"""An answer is right when it is within this many steps of the delay (the paper's criterion)."""


class SpikeDelayTask(Task):
    """One real input per step: 1 at a spike, 0 elsewhere. After ``max_delay − 1`` steps of silence
    at most (the lead-in, uniform), the first spike; then ``intervals`` more spikes, each
    ``d`` steps after the one before, ``d`` uniform in ``[min_delay, max_delay]``; silence to the end
    (sequences are ``(intervals + 1) · max_delay`` steps). At each spike after the first the target
    is ``d − min_delay``, the delay beyond the shortest (the paper's ``I(n)`` with its period ``F``
    = ``min_delay``); no other step is scored.

    Many-to-many regression: the loss is the squared error over the scored steps; ``accuracy`` is
    the share of them answered within :data:`TOLERANCE` steps (a timer that reads the delay right).
    The best constant answer is right on one delay in ``max_delay − min_delay + 1``: the baseline.
    ``intervals: 1`` is two spikes and one answer (the paper's NMSD); more make the model reset its
    timer at every spike, as in the paper's continual MSD. The length knob is ``max_delay``."""

    fresh = True
    length_key = "task.max_delay"

    def __init__(
        self,
        min_delay: int = 10,
        max_delay: int = 14,
        intervals: int = 1,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
        solved_at: float = 0.99,
    ) -> None:
        at_least("task.min_delay", min_delay, 1)
        at_least("task.max_delay", max_delay, min_delay + 1, "two delays at least, to tell apart")
        at_least("task.intervals", intervals, 1)
        delays = max_delay - min_delay + 1
        if not 1 / delays <= solved_at < 1:
            raise ValueError(f"task.solved_at must be in [chance {1 / delays:.3g}, 1) (got {solved_at})")
        super().__init__((intervals + 1) * max_delay, train_size, val_size, test_size)
        self.min_delay, self.max_delay, self.intervals = min_delay, max_delay, intervals
        self.spec = TaskSpec(
            input_size=1,
            output_size=1,
            shape="many_to_many",
            metric="accuracy",
            baseline=1 / delays,
            solved_at=solved_at,
            higher_is_better=True,
        )

    def distinct_inputs(self) -> float:
        """Lead-ins times the delays of every interval."""
        return float(self.max_delay * (self.max_delay - self.min_delay + 1) ** self.intervals)

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """``(n, T, 1)`` spikes and ``(n, T)`` targets (:data:`IGNORE` off the scored spikes)."""
        g = torch.Generator().manual_seed(seed)
        delays = torch.randint(self.min_delay, self.max_delay + 1, (n, self.intervals), generator=g)
        first = torch.randint(0, self.max_delay, (n, 1), generator=g)
        spikes = first + torch.cat([torch.zeros(n, 1, dtype=torch.long), delays.cumsum(1)], dim=1)
        inputs = torch.zeros(n, self.seq_len).scatter_(1, spikes, 1.0)
        targets = torch.full((n, self.seq_len), IGNORE)
        targets.scatter_(1, spikes[:, 1:], (delays - self.min_delay).float())
        return inputs.unsqueeze(-1), targets

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean squared error over the scored steps (0 where a chunk of steps has none)."""
        scored = target != IGNORE
        error = (prediction.squeeze(-1) - target).masked_fill(~scored, 0.0)
        return error.pow(2).sum() / scored.sum().clamp(min=1)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        scored = target != IGNORE
        error = (prediction.squeeze(-1) - target)[scored]
        return {"accuracy": (error.abs() < TOLERANCE).float().mean(), "mse": error.pow(2).mean()}
