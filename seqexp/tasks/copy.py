"""The copy memory problem (Hochreiter & Schmidhuber 1997, in the form of Arjovsky et al. 2016)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec


class CopyTask(Task):
    """Remember ``num_symbols`` symbols across a delay of ``T`` steps, then write them out.

    Tokens: ``0 .. categories-1`` are data symbols, ``categories`` is the blank, ``categories+1``
    the delimiter. An input is the ``K = num_symbols`` data symbols, ``T - 1`` blanks, the
    delimiter and ``K`` more blanks (length ``T + 2K``); its target is ``T + K`` blanks, then the
    ``K`` symbols. With Arjovsky et al.'s ``K = 10`` and 8 categories: length ``T + 20``.

    The loss is the cross-entropy averaged over all ``T + 2K`` steps. A memoryless model that
    writes blanks and then guesses uniformly among the categories scores ``K ln C / (T + 2K)``:
    the baseline. Solved once the cross-entropy is below a tenth of that (the recalled symbols
    then get on average ``e^(-ln C / 10)`` of the probability, 0.81 for ``C = 8``).
    ``recall_accuracy`` is the share of recalled symbols whose most probable output is right
    (chance ``1 / C``)."""

    def __init__(
        self,
        seq_len: int = 100,
        train_size: int | None = None,
        val_size: int = 1_000,
        num_symbols: int = 10,
        categories: int = 8,
        test_size: int | None = None,
    ) -> None:
        at_least("task.seq_len", seq_len, 1, "the delay T")
        at_least("task.num_symbols", num_symbols, 1)
        at_least("task.categories", categories, 2)
        super().__init__(seq_len, train_size, val_size, test_size)
        self.num_symbols = num_symbols
        self.categories = categories
        self.blank = categories
        self.delimiter = categories + 1
        baseline = num_symbols * math.log(categories) / self.length
        self.spec = TaskSpec(
            input_size=categories + 2,
            output_size=categories + 1,
            shape="many_to_many",
            metric="xent",
            baseline=baseline,
            solved_at=baseline / 10,
            tokens=True,
        )

    fresh = True

    def distinct_inputs(self) -> float:
        return float(self.categories**self.num_symbols)

    @property
    def length(self) -> int:
        """Steps per sequence: ``T + 2K``."""
        return self.seq_len + 2 * self.num_symbols

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        K, T = self.num_symbols, self.seq_len
        symbols = torch.randint(0, self.categories, (n, K), generator=g)
        inputs = torch.full((n, self.length), self.blank, dtype=torch.long)
        inputs[:, :K] = symbols
        inputs[:, T + K - 1] = self.delimiter
        targets = torch.full((n, self.length), self.blank, dtype=torch.long)
        targets[:, T + K :] = symbols
        return inputs, targets

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction.flatten(0, 1), target.flatten())

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        K = self.num_symbols
        recalled = prediction[:, -K:].argmax(-1) == target[:, -K:]
        return {"xent": self.loss(prediction, target), "recall_accuracy": recalled.float().mean()}
