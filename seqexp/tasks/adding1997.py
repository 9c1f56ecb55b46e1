"""The adding problem in its original form (Hochreiter & Schmidhuber 1997, experiment 4)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec, left_padded

FIRST_WINDOW = 10
"""X1 is marked among the first ten pairs."""


def chance(tolerance: float) -> float:
    """The share of sequences that always answering 0.5 (the mean target) gets within ``tolerance``:
    ``P(|X1 + X2| < 4 tolerance)`` for ``X1 + X2`` triangular on [−2, 2], ``a − a²/4`` with
    ``a = 4 tolerance`` (0.1536 at the paper's 0.04)."""
    a = min(4 * tolerance, 2.0)
    return a - a * a / 4


class Adding1997Task(Task):
    """Each step is a pair ``(value, marker)``, values uniform in [−1, 1]. Lengths are uniform in
    ``[T, T + T // 10]`` (``T = seq_len``). One of the first ten pairs is marked 1 (its value
    ``X1``), then one of the first ``T/2 − 1`` still unmarked pairs (``X2``); the first and the last
    pair are marked −1 unless marked 1; the rest 0. A value marked 1 at the first pair is set to 0.
    The target, at the sequence's end, is ``0.5 + (X1 + X2) / 4``; the loss is squared error; a
    sequence is right when the absolute error is below ``tolerance`` (the paper's 0.04).
    ``accuracy`` is the share right; always answering 0.5 scores :func:`chance` (the baseline).

    Sequences are left-padded with ``(0, 0)`` pairs to the longest length, ``T + T // 10``, so that
    every one ends at the last step. ``solved_at``: the accuracy a run must pass to count as solved
    (the paper stops once the 2000 most recent sequences are all right)."""

    spec: TaskSpec
    fresh = True

    def __init__(
        self,
        seq_len: int = 100,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
        tolerance: float = 0.04,
        solved_at: float = 0.95,
    ) -> None:
        at_least(
            "task.seq_len", seq_len, 2 * FIRST_WINDOW + 2, "X1 in the first 10 pairs, X2 in the first T/2 - 1"
        )
        if not 0 < tolerance < 2:
            raise ValueError(f"task.tolerance must be in (0, 2) (got {tolerance})")
        if not chance(tolerance) <= solved_at < 1:
            raise ValueError(
                f"task.solved_at must be in [chance {chance(tolerance):.4g}, 1) (got {solved_at})"
            )
        super().__init__(seq_len, train_size, val_size, test_size)
        self.tolerance = tolerance
        self.max_len = seq_len + seq_len // 10
        self.spec = TaskSpec(
            input_size=2,
            output_size=1,
            shape="many_to_one",
            metric="accuracy",
            baseline=chance(tolerance),
            solved_at=solved_at,
            higher_is_better=True,
        )

    @property
    def steps(self) -> int:
        return self.max_len

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        T, L = self.seq_len, self.max_len
        rows = torch.arange(n)
        lengths = torch.randint(T, L + 1, (n,), generator=g)
        values = torch.rand(n, L, generator=g) * 2 - 1
        first = torch.randint(0, FIRST_WINDOW, (n,), generator=g)
        second = torch.randint(0, T // 2 - 1, (n,), generator=g)
        second = second + (second >= first)  # one of the first T/2 pairs other than X1's
        markers = torch.zeros(n, L)
        markers[:, 0] = -1.0
        markers[rows, lengths - 1] = -1.0
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        values[:, 0] = torch.where(markers[:, 0] == 1.0, 0.0, values[:, 0])
        targets = 0.5 + (values[rows, first] + values[rows, second]) / 4
        inputs = left_padded(torch.stack([values, markers], dim=-1), lengths, 0.0)
        return inputs, targets.unsqueeze(-1)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        right = ((prediction - target).abs() < self.tolerance).float().mean()
        return {"accuracy": right, "mse": F.mse_loss(prediction, target)}
