"""The embedded Reber grammar (Cleeremans et al. 1989; Hochreiter & Schmidhuber 1997, exp. 1)."""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

SYMBOLS = "BTPSXVE"
"""Token ids 0..6; :data:`PAD` (7) fills sequences past their end."""
PAD = len(SYMBOLS)
IGNORE = -1
"""Target of a padded step: no loss, no metric."""
REBER = {
    0: (("T", 1), ("P", 2)),
    1: (("S", 1), ("X", 3)),
    2: (("T", 2), ("V", 4)),
    3: (("X", 2), ("S", 5)),
    4: (("P", 3), ("V", 5)),
    5: (("E", None),),
}
"""The Reber grammar after its leading B: node -> (symbol, next node), each edge equally likely."""
MIN_LENGTH = 9
"""The shortest embedded string: B T BTXSE T E."""


@cache
def reber_strings(node: int | None, length: int) -> int:
    """How many paths of exactly ``length`` symbols lead from ``node`` out of the grammar (the
    Reber strings after their leading B, from node 0)."""
    if node is None:
        return int(length == 0)
    if length == 0:
        return 0
    return sum(reber_strings(nxt, length - 1) for _, nxt in REBER[node])


def embedded_reber(rng: random.Random) -> tuple[str, list[str]]:
    """One embedded Reber string and, for each of its symbols but the last, the set of legal
    next symbols: ``B {T|P} <Reber string> {same T|P} E``."""
    outer = rng.choice("TP")
    string, legal = ["B", outer, "B"], ["TP", "B", "TP"]
    node: int | None = 0
    while node is not None:
        symbol, node = rng.choice(REBER[node])
        string.append(symbol)
        legal.append("".join(s for s, _ in REBER[node]) if node is not None else outer)
    string += [outer, "E"]
    legal.append("E")
    return "".join(string), legal


@cache
def legal_mask(symbols: str) -> tuple[int, ...]:
    """``symbols`` as a 0/1 mask over :data:`SYMBOLS`."""
    return tuple(int(s in symbols) for s in SYMBOLS)


class ReberTask(Task):
    """Next-symbol prediction on embedded Reber strings: each step reads a symbol and predicts
    the next (a distribution over the 7 symbols, many-to-many, cross-entropy on the symbol that
    came). The second symbol (T or P) must come back as the second-to-last, across the whole
    inner string: the long-range dependency.

    Strings vary in length; those longer than ``seq_len + 1`` symbols are redrawn, and an input
    (every symbol but the last: at most ``seq_len`` steps) is padded on the right with ``PAD``.
    Targets are ``(n, seq_len, 8)``: column 0 the next symbol (``-1`` on padding), columns 1..7
    the 0/1 mask of the legal next symbols. Padded steps count in neither loss nor metrics; a
    unidirectional stack's outputs at real steps never see the padding after them (a
    bidirectional one would, and would also see the answer: use ``topology=uni`` or ``deep``).

    ``string_accuracy`` is Hochreiter & Schmidhuber's criterion: a string is right when at every
    step the legal next symbols are the most probable ones (the ``k`` largest outputs are the
    ``k`` legal symbols). A model that learnt the grammar but not the long-range dependency has to
    guess the second-to-last symbol: right half the time, the baseline 0.5. Solved above 0.95.
    ``recall_accuracy`` is that one step alone (baseline 0.5); ``step_accuracy`` all real steps."""

    spec = TaskSpec(
        input_size=len(SYMBOLS) + 1,
        output_size=len(SYMBOLS),
        shape="many_to_many",
        metric="string_accuracy",
        baseline=0.5,
        solved_at=0.95,
        tokens=True,
        higher_is_better=True,
    )

    fresh = True

    def __init__(
        self,
        seq_len: int = 30,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
    ) -> None:
        at_least("task.seq_len", seq_len, MIN_LENGTH - 1, f"the shortest string has {MIN_LENGTH} symbols")
        super().__init__(seq_len, train_size, val_size, test_size)

    def distinct_inputs(self) -> float:
        """Embedded strings of at most ``seq_len + 1`` symbols: two outer symbols, each around
        every inner Reber string four symbols shorter."""
        return float(2 * sum(reber_strings(0, length) for length in range(self.seq_len + 1 - 4)))

    def strings(self, n: int, seed: int) -> list[tuple[str, list[str]]]:
        """``n`` strings of at most ``seq_len + 1`` symbols, with their legal next symbols."""
        rng = random.Random(seed)
        drawn: list[tuple[str, list[str]]] = []
        while len(drawn) < n:
            string, legal = embedded_reber(rng)
            if len(string) <= self.seq_len + 1:
                drawn.append((string, legal))
        return drawn

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        inputs = np.full((n, self.seq_len), PAD, dtype=np.int64)
        targets = np.zeros((n, self.seq_len, 1 + len(SYMBOLS)), dtype=np.int64)
        targets[..., 0] = IGNORE
        for i, (string, legal) in enumerate(self.strings(n, seed)):
            ids = [SYMBOLS.index(s) for s in string]
            steps = len(ids) - 1
            inputs[i, :steps] = ids[:-1]
            targets[i, :steps, 0] = ids[1:]
            targets[i, : len(legal), 1:] = [legal_mask(symbols) for symbols in legal]
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction.flatten(0, 1), target[..., 0].flatten(), ignore_index=IGNORE)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        real = target[..., 0] != IGNORE
        legal = target[..., 1:].bool()
        # The k legal symbols are the k most probable: every legal output beats every illegal one.
        lowest_legal = prediction.masked_fill(~legal, float("inf")).amin(-1)
        highest_illegal = prediction.masked_fill(legal, float("-inf")).amax(-1)
        step_right = (lowest_legal > highest_illegal) | ~real
        lengths = real.sum(1)
        recall = step_right[torch.arange(len(target)), lengths - 2]
        return {
            "string_accuracy": step_right.all(1).float().mean(),
            "recall_accuracy": recall.float().mean(),
            "step_accuracy": step_right[real].float().mean(),
        }

    @staticmethod
    def decode(sequence: Tensor) -> str:
        """Token ids as symbols, padding dropped."""
        return "".join(SYMBOLS[i] for i in sequence.tolist() if i != PAD)
