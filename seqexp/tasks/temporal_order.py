"""The temporal order problem (Hochreiter & Schmidhuber 1997, experiment 6a and 6b)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec, left_padded

TOKENS = ("a", "b", "c", "d", "X", "Y", "B", "E", "_")
"""Token ids: the four distractors, the two relevant symbols, the start and the end symbol, and
the pad that fills a shorter sequence's start (only where lengths vary)."""
X, Y, START, END, PAD = 4, 5, 6, 7, 8
WINDOWS = {
    2: ((0.10, 0.20), (0.50, 0.60)),
    3: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76)),
}
"""Where the relevant symbols fall, as fractions of the length: H&S's t1 in [10, 20] and
t2 in [50, 60] for sequences of about 100 (6a); t1, t2, t3 in [10, 20], [33, 43], [66, 76] (6b)."""


class TemporalOrderTask(Task):
    """A start symbol, distractors drawn from {a, b, c, d}, an end symbol; X or Y at one
    position in each of ``num_markers`` fixed windows (early, midway, ...). The class is the
    order of the relevant symbols: XX, XY, YX, YY (class ``sum_i [s_i = Y] 2^(m-1-i)``), or the
    eight orders of three. Chance accuracy ``1 / 2^m``; solved above 0.95.

    By default every sequence has ``seq_len`` steps and the windows scale with it: window
    ``[lo, hi]`` covers positions ``floor(lo T) .. floor(hi T)``. With ``min_len`` below
    ``seq_len``, as in H&S (lengths 100 to 110), each sequence's length is uniform in
    ``[min_len, seq_len]``, the windows scale with ``min_len`` and count from its start symbol, and
    it is left-padded to ``seq_len`` with a pad token (a ninth input). ``solved_at``: the accuracy
    a run must pass to count as solved (H&S stop once every test sequence is right)."""

    fresh = True

    def __init__(
        self,
        seq_len: int = 100,
        train_size: int | None = None,
        val_size: int = 1_000,
        num_markers: int = 2,
        test_size: int | None = None,
        min_len: int | None = None,
        solved_at: float = 0.95,
    ) -> None:
        if num_markers not in WINDOWS:
            raise ValueError(f"task.num_markers must be one of {sorted(WINDOWS)} (got {num_markers})")
        at_least("task.seq_len", seq_len, 10, "to fit the marker windows")
        min_len = seq_len if min_len is None else min_len
        at_least("task.min_len", min_len, 10, "to fit the marker windows")
        if min_len > seq_len:
            raise ValueError(f"task.min_len must be <= task.seq_len {seq_len} (got {min_len})")
        if not 1 / 2**num_markers <= solved_at < 1:
            raise ValueError(f"task.solved_at must be in [chance {1 / 2**num_markers}, 1) (got {solved_at})")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.num_markers = num_markers
        self.min_len = min_len
        self.windows = [
            (int(lo * min_len + 1e-9), int(hi * min_len + 1e-9)) for lo, hi in WINDOWS[num_markers]
        ]
        self.spec = TaskSpec(
            input_size=len(TOKENS) if min_len < seq_len else len(TOKENS) - 1,
            output_size=2**num_markers,
            shape="many_to_one",
            metric="accuracy",
            baseline=1 / 2**num_markers,
            solved_at=solved_at,
            tokens=True,
            higher_is_better=True,
        )

    def distinct_inputs(self) -> float:
        """A lower bound: the distractors alone, at the steps that are neither ends nor markers."""
        return 4.0 ** (self.min_len - 2 - self.num_markers) * 2**self.num_markers

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        T = self.seq_len
        inputs = torch.randint(0, 4, (n, T), generator=g)
        inputs[:, 0], inputs[:, -1] = START, END
        rows = torch.arange(n)
        targets = torch.zeros(n, dtype=torch.long)
        for lo, hi in self.windows:
            position = torch.randint(lo, hi + 1, (n,), generator=g)
            is_y = torch.randint(0, 2, (n,), generator=g)
            inputs[rows, position] = X + is_y
            targets = 2 * targets + is_y
        if self.min_len < T:
            inputs = self.shortened(inputs, torch.randint(self.min_len, T + 1, (n,), generator=g))
        return inputs, targets

    @staticmethod
    def shortened(inputs: Tensor, lengths: Tensor) -> Tensor:
        """Each sequence cut to its length (its end symbol moved there) and left-padded back to
        the full length: (n, T) -> (n, T), the start symbol at ``T − length``."""
        inputs = inputs.clone()
        inputs[torch.arange(len(inputs)), lengths - 1] = END
        return left_padded(inputs, lengths, PAD)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"accuracy": (prediction.argmax(-1) == target).float().mean()}

    @staticmethod
    def decode(sequence: Tensor) -> str:
        """A sequence as its symbols, e.g. ``"BacXdbYcE"``."""
        return "".join(TOKENS[i] for i in sequence.tolist())
