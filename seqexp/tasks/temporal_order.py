"""The temporal order problem (Hochreiter & Schmidhuber 1997, experiment 6a and 6b)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

TOKENS = ("a", "b", "c", "d", "X", "Y", "B", "E")
"""Token ids: the four distractors, the two relevant symbols, the start and the end symbol."""
X, Y, START, END = 4, 5, 6, 7
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

    H&S drew lengths of 100 to 110; here every sequence has ``seq_len`` steps and the windows
    scale with it: window ``[lo, hi]`` covers positions ``floor(lo T) .. floor(hi T)``."""

    fresh = True

    def __init__(
        self,
        seq_len: int = 100,
        train_size: int | None = None,
        val_size: int = 1_000,
        num_markers: int = 2,
        test_size: int | None = None,
    ) -> None:
        if num_markers not in WINDOWS:
            raise ValueError(f"task.num_markers must be one of {sorted(WINDOWS)} (got {num_markers})")
        at_least("task.seq_len", seq_len, 10, "to fit the marker windows")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.num_markers = num_markers
        self.windows = [
            (int(lo * seq_len + 1e-9), int(hi * seq_len + 1e-9)) for lo, hi in WINDOWS[num_markers]
        ]
        self.spec = TaskSpec(
            input_size=len(TOKENS),
            output_size=2**num_markers,
            shape="many_to_one",
            metric="accuracy",
            baseline=1 / 2**num_markers,
            solved_at=0.95,
            tokens=True,
            higher_is_better=True,
        )

    def distinct_inputs(self) -> float:
        """A lower bound: the distractors alone, at the steps that are neither ends nor markers."""
        return 4.0 ** (self.seq_len - 2 - self.num_markers) * 2**self.num_markers

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
        return inputs, targets

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"accuracy": (prediction.argmax(-1) == target).float().mean()}

    @staticmethod
    def decode(sequence: Tensor) -> str:
        """A sequence as its symbols, e.g. ``"BacXdbYcE"``."""
        return "".join(TOKENS[i] for i in sequence.tolist())
