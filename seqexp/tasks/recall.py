"""Multi-query associative recall (MQAR: Arora et al. 2023, "Zoology"; MAD, Poli et al. 2024):
key–value pairs, then queries of those keys, each to be answered with its value."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seqexp.checks import at_least
from seqexp.tasks.base import TaskSpec
from seqexp.tasks.scored import IGNORE, ScoredStepsTask

BLANK = 0
"""The filler token between queries."""


class RecallTask(ScoredStepsTask):
    """``num_kv_pairs`` pairs ``k₁ v₁ k₂ v₂ …`` (distinct keys from the first half of the
    vocabulary, values from the second), then the rest of the ``seq_len`` steps blank but for
    each key once more, in random order at random positions: a query. At a query's step the
    target is its key's value (the token that follows it in Zoology's next-token form); no other
    step is scored. ``accuracy`` counts the queried values alone, as Zoology's; chance is
    ``2 / vocab_size``; solved above 0.99. The harder knobs: more pairs, a smaller model state."""

    fresh = True

    def __init__(
        self,
        seq_len: int = 64,
        vocab_size: int = 64,
        num_kv_pairs: int = 8,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
    ) -> None:
        at_least("task.vocab_size", vocab_size, 4)
        at_least("task.num_kv_pairs", num_kv_pairs, 1)
        keys = vocab_size // 2 - 1
        if num_kv_pairs > keys:
            raise ValueError(
                f"task.num_kv_pairs must be at most {keys}, the keys of a vocabulary of {vocab_size} "
                f"(got {num_kv_pairs})"
            )
        at_least("task.seq_len", seq_len, 3 * num_kv_pairs, "room for the pairs and a query per key")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.vocab_size, self.num_kv_pairs = vocab_size, num_kv_pairs
        self.spec = TaskSpec(
            input_size=vocab_size,
            output_size=vocab_size,
            shape="many_to_many",
            metric="accuracy",
            baseline=2 / vocab_size,
            solved_at=0.99,
            tokens=True,
            higher_is_better=True,
        )

    def distinct_inputs(self) -> float:
        half = self.vocab_size // 2
        return math.perm(half - 1, self.num_kv_pairs) * float(half**self.num_kv_pairs)

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        K, half = self.num_kv_pairs, self.vocab_size // 2
        keys = torch.rand(n, half - 1, generator=g).argsort(-1)[:, :K] + 1  # distinct, 1 .. half-1
        values = torch.randint(half, self.vocab_size, (n, K), generator=g)
        inputs = torch.full((n, self.seq_len), BLANK, dtype=torch.long)
        inputs[:, 0 : 2 * K : 2], inputs[:, 1 : 2 * K : 2] = keys, values
        query_steps = torch.rand(n, self.seq_len - 2 * K, generator=g).argsort(-1)[:, :K] + 2 * K
        order = torch.rand(n, K, generator=g).argsort(-1)
        inputs.scatter_(1, query_steps, keys.gather(1, order))
        targets = torch.full_like(inputs, IGNORE).scatter_(1, query_steps, values.gather(1, order))
        return inputs, targets
