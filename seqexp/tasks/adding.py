"""The adding problem (Hochreiter & Schmidhuber 1997, in the form of Arjovsky et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec


class AddingTask(Task):
    """Each step is ``(value, marker)``, values uniform in [0, 1]; one marker falls uniformly
    in the first half of the sequence and one in the second; the target is the sum of the two
    marked values. Always predicting 1, the mean of that sum, gives MSE 1/6: the baseline."""

    spec = TaskSpec(
        input_size=2,
        output_size=1,
        shape="many_to_one",
        metric="mse",
        baseline=1 / 6,
        solved_at=0.01,
    )

    fresh = True

    def __init__(
        self,
        seq_len: int = 50,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
    ) -> None:
        at_least("task.seq_len", seq_len, 2, "two markers, one per half")
        super().__init__(seq_len, train_size, val_size, test_size)

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        T, half = self.seq_len, self.seq_len // 2
        values = torch.rand(n, T, generator=g)
        first = torch.randint(0, half, (n,), generator=g)
        second = torch.randint(half, T, (n,), generator=g)
        markers = torch.zeros(n, T)
        rows = torch.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        inputs = torch.stack([values, markers], dim=-1)
        targets = (values[rows, first] + values[rows, second]).unsqueeze(-1)
        return inputs, targets

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"mse": F.mse_loss(prediction, target)}
