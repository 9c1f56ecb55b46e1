"""Parity of a bit string, trained on short strings and tested on longer ones: state tracking
(Grazzi et al. 2024; Deletang et al. 2023; the xLSTM paper's formal languages)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Split, Task, TaskSpec

PAD = 2
"""Token ids: bits 0 and 1, and the pad that fills a shorter string's start."""


class ParityTask(Task):
    """Bits ``x<1..L>``, the answer ``x<1> ⊕ … ⊕ x<L>`` read at the last token. Training and
    validation strings have lengths uniform in ``[min_len, max_len]``, test strings in
    ``[test_min_len, test_max_len]``: ``val/accuracy`` is in-distribution, ``test/accuracy``
    measures length generalisation. Strings shorter than the split's longest are padded at the
    start with a pad token. Chance 0.5; solved above 0.99.

    A recurrence whose transitions are linear with positive eigenvalues (minGRU, minLSTM, the
    LRU in its real-positive part, Mamba's S6) cannot flip a sign at every 1, so it cannot
    compute parity at any length it has not been fitted to (Grazzi et al. 2024); an LSTM can."""

    fresh = True
    length_key = "task.max_len"

    def __init__(
        self,
        min_len: int = 2,
        max_len: int = 12,
        test_min_len: int = 13,
        test_max_len: int = 48,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
    ) -> None:
        at_least("task.min_len", min_len, 1)
        at_least("task.max_len", max_len, min_len, "no shorter than task.min_len")
        at_least("task.test_min_len", test_min_len, 1)
        at_least("task.test_max_len", test_max_len, test_min_len, "no shorter than task.test_min_len")
        super().__init__(max_len, train_size, val_size, test_size)
        self.min_len, self.max_len = min_len, max_len
        self.test_min_len, self.test_max_len = test_min_len, test_max_len
        self.spec = TaskSpec(
            input_size=3,
            output_size=2,
            shape="many_to_one",
            metric="accuracy",
            baseline=0.5,
            solved_at=0.99,
            tokens=True,
            higher_is_better=True,
        )

    @property
    def steps(self) -> int:
        """The test strings are the longest."""
        return max(self.max_len, self.test_max_len)

    def distinct_inputs(self) -> float:
        return float(2**self.max_len)

    def examples(self, split: Split, n: int, seed: int) -> tuple[Tensor, Tensor]:
        if split == "test":
            return self.strings(n, seed, self.test_min_len, self.test_max_len)
        return self.strings(n, seed, self.min_len, self.max_len)

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        return self.strings(n, seed, self.min_len, self.max_len)

    @staticmethod
    def strings(n: int, seed: int, shortest: int, longest: int) -> tuple[Tensor, Tensor]:
        """``n`` strings of lengths uniform in ``[shortest, longest]``, left-padded to ``longest``."""
        g = torch.Generator().manual_seed(seed)
        bits = torch.randint(0, 2, (n, longest), generator=g)
        lengths = torch.randint(shortest, longest + 1, (n, 1), generator=g)
        padded = torch.arange(longest) < longest - lengths
        bits = bits.masked_fill(padded, 0)
        return bits.masked_fill(padded, PAD), bits.sum(1) % 2

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {
            "accuracy": (prediction.argmax(-1) == target).float().mean(),
            "xent": self.loss(prediction, target),
        }
