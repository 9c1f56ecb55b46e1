"""Selective copying (Gu & Dao 2023, Mamba; MAD, Poli et al. 2024): tokens scattered among blanks,
to be written out in order at the end."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seqexp.checks import at_least
from seqexp.tasks.base import TaskSpec
from seqexp.tasks.scored import IGNORE, ScoredStepsTask


class SelectiveCopyTask(ScoredStepsTask):
    """``num_tokens`` data tokens (of ``vocab_size``) at random positions among ``seq_len``
    steps of blanks, then ``num_tokens`` copy markers; at each marker the target is the next data
    token, in their order. Only the markers' steps are scored; ``accuracy`` counts the copied
    tokens (chance ``1 / vocab_size``), solved above 0.99.

    Where the tokens fall changes from example to example, so a model must choose what to keep
    by what it reads (input-dependent gating); a time-invariant recurrence cannot (Gu & Dao 2023).
    Unlike MAD's generator, every draw is seeded."""

    fresh = True

    def __init__(
        self,
        seq_len: int = 64,
        vocab_size: int = 8,
        num_tokens: int = 8,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
    ) -> None:
        at_least("task.vocab_size", vocab_size, 2)
        at_least("task.num_tokens", num_tokens, 1)
        at_least("task.seq_len", seq_len, num_tokens, "room for the tokens")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.vocab_size, self.num_tokens = vocab_size, num_tokens
        self.blank, self.marker = vocab_size, vocab_size + 1
        self.spec = TaskSpec(
            input_size=vocab_size + 2,
            output_size=vocab_size,
            shape="many_to_many",
            metric="accuracy",
            baseline=1 / vocab_size,
            solved_at=0.99,
            tokens=True,
            higher_is_better=True,
        )

    @property
    def steps(self) -> int:
        return self.seq_len + self.num_tokens

    def distinct_inputs(self) -> float:
        return math.comb(self.seq_len, self.num_tokens) * float(self.vocab_size**self.num_tokens)

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        K, T = self.num_tokens, self.seq_len
        tokens = torch.randint(0, self.vocab_size, (n, K), generator=g)
        where = torch.rand(n, T, generator=g).argsort(-1)[:, :K].sort(-1).values
        inputs = torch.full((n, T + K), self.blank, dtype=torch.long)
        inputs.scatter_(1, where, tokens)
        inputs[:, T:] = self.marker
        targets = torch.full_like(inputs, IGNORE)
        targets[:, T:] = tokens
        return inputs, targets
