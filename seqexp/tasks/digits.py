"""Sequential digits: scikit-learn's 8×8 handwritten digits read pixel by pixel or row by row."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.tasks.base import Split, Task, TaskSpec

PIXELS = 64
STEPS = {64: 1, 8: 8}
"""Steps -> features per step: pixel by pixel (64 × 1) or row by row (8 × 8)."""
SPLIT_SEED = 0
"""Seed of the one fixed shuffle that splits the 1797 images into validation, test and training."""


@cache
def load_digits() -> tuple[Tensor, Tensor]:
    """All 1797 images, ``(N, 64)`` in [0, 1] (row-major), and their labels; shipped with
    scikit-learn, nothing downloaded."""
    from sklearn.datasets import load_digits as sklearn_digits

    images, labels = sklearn_digits(return_X_y=True)
    return torch.tensor(images, dtype=torch.float32) / 16.0, torch.tensor(labels, dtype=torch.long)


class DigitsTask(Task):
    """Classify a digit (10 classes) from its 8×8 image read as a sequence: ``seq_len=64`` steps
    of one pixel, or ``seq_len=8`` steps of one row. ``permuted: true`` reorders the 64 pixels by
    one fixed permutation (``permutation_seed``) before reading them, which scatters each stroke
    over the whole sequence: the harder, long-range variant. Chance accuracy 0.1; solved above 0.95.

    The images are shuffled once (a fixed seed) and split: the first ``val_size`` are the
    validation pool, the next ``test_size`` the test pool, the rest the training pool; the three
    never share an image. A seed picks which ``n`` images of a split's pool, in which order."""

    spec = TaskSpec(
        input_size=1,
        output_size=10,
        shape="many_to_one",
        metric="accuracy",
        baseline=0.1,
        solved_at=0.95,
        higher_is_better=True,
    )
    length_key = None
    """``seq_len`` takes two values (64 pixels or 8 rows): nothing to search over."""

    def __init__(
        self,
        seq_len: int = 64,
        train_size: int = 1_197,
        val_size: int = 300,
        permuted: bool = False,
        permutation_seed: int = 0,
        test_size: int = 300,
    ) -> None:
        if seq_len not in STEPS:
            raise ValueError(f"task.seq_len must be 64 (pixel by pixel) or 8 (row by row) (got {seq_len})")
        super().__init__(seq_len, train_size, val_size, test_size)
        total = len(load_digits()[1])
        if train_size + val_size + test_size > total:
            raise ValueError(
                f"task.train_size + task.val_size + task.test_size must be <= {total}, the number of "
                f"images (got {train_size} + {val_size} + {test_size})"
            )
        self.permuted = permuted
        self.permutation = torch.randperm(PIXELS, generator=torch.Generator().manual_seed(permutation_seed))
        self.spec = replace(DigitsTask.spec, input_size=STEPS[seq_len])

    def pool(self, split: Split) -> Tensor:
        """Image indices of ``split``'s pool."""
        order = torch.randperm(len(load_digits()[1]), generator=torch.Generator().manual_seed(SPLIT_SEED))
        val_end = self.val_size
        test_end = val_end + self.test_size
        return {"val": order[:val_end], "test": order[val_end:test_end], "train": order[test_end:]}[split]

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        return self.examples("train", n, seed)

    def examples(self, split: Split, n: int, seed: int) -> tuple[Tensor, Tensor]:
        pool = self.pool(split)
        if n > len(pool):
            raise ValueError(f"{n} images asked of the {split} pool of {len(pool)}")
        chosen = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]
        images, labels = load_digits()
        pixels = images[chosen]
        if self.permuted:
            pixels = pixels[:, self.permutation]
        return pixels.reshape(n, self.seq_len, STEPS[self.seq_len]), labels[chosen]

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"accuracy": (prediction.argmax(-1) == target).float().mean()}
