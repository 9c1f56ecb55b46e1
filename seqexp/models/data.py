"""A task's seeded data as a LightningDataModule: training batches that a resumed run sees again
exactly, and validation and test sets kept apart from training."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from seqexp.tasks import Task
from seqexp.tasks.base import Split

DATA_SCHEME = "2"
"""The version of how seqexp draws a run's data; runs are tagged with it (``seqexp.data_scheme``)."""
DATA_SCHEMES = {
    "1": "one fixed training set of task.train_size examples, cycled; a validation set; no test set",
    "2": "a fresh training batch at every step (task.train_size: null) or a fixed set, cycled; "
    "a validation and a separate test set, kept apart from training",
}
"""What each version of the data scheme means; a run recorded without the tag used version 1."""
TRAIN_STREAM, TEST_STREAM = 1, 2
SEPARATION = 1_000
"""Training never sees a validation or test example where the task has at least this many distinct
inputs per held-out example; below that, excluding them would skew training, and the overlap is
measured instead."""
OVERLAP_SAMPLE = 10_000
"""Training examples (at most) that the validation and test sets are compared with, for fresh data:
the first batches of the run, at rank 0."""

Examples = tuple[Tensor, Tensor]


def derived_seed(*parts: int) -> int:
    """A seed in ``[2^62, 2^63)`` drawn from ``parts``: apart from the small seeds ``2·seed`` and
    ``2·seed + 1`` of a fixed training set and of the validation set."""
    entropy = [part % 2**64 for part in parts]
    word = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    return 2**62 | word >> 2


def example_keys(examples: Examples) -> list[bytes]:
    """One key per example: its input and target, byte for byte."""
    inputs, targets = (t.reshape(len(t), -1).numpy() for t in examples)
    return [x.tobytes() + y.tobytes() for x, y in zip(inputs, targets, strict=True)]


def overlap(examples: Examples, reference: set[bytes]) -> float:
    """The share of ``examples`` that also occur in ``reference``."""
    keys = example_keys(examples)
    return sum(key in reference for key in keys) / len(keys)


def kept_apart(examples: Examples, avoid: set[bytes], draw: Callable[[int, int], Examples]) -> Examples:
    """``examples`` without those in ``avoid``, made up to their number again from ``draw(n, attempt)``
    (attempt 1, 2, ...), a deterministic function of its arguments."""
    n, attempt = len(examples[0]), 0
    kept: list[Examples] = []
    while True:
        keep = [key not in avoid for key in example_keys(examples)] if avoid else [True] * n
        if all(keep) and not kept:
            return examples
        kept.append((examples[0][torch.tensor(keep)], examples[1][torch.tensor(keep)]))
        missing = n - sum(len(x) for x, _ in kept)
        if not missing:
            return torch.cat([x for x, _ in kept]), torch.cat([y for _, y in kept])
        attempt += 1
        examples = draw(missing, attempt)


class StepBatches(IterableDataset):
    """The batches of one epoch of a fixed training set: the batch of training step ``k`` on rank
    ``r`` of ``W`` processes is a function of ``(seed, k·W + r)``.

    The batches of all steps and ranks together walk through the data one shuffled pass after
    another, pass ``p`` shuffled with seed ``(seed, p)``; a single process (``W = 1``) walks it one
    batch a step, ``W`` processes ``W`` batches a step, each its own. An epoch serves
    ``batches_per_epoch`` batches (optimizer steps) from the trainer's current step on, whatever
    ``W``, so validations and checkpoints fall on the same steps, and a run resumed from a
    checkpoint sees the same batches as one that never stopped, whatever the trainer's epoch count
    says. (An iterable dataset: Lightning gives it no distributed sampler of its own.)
    """

    def __init__(
        self,
        examples: TensorDataset,
        batch_size: int,
        batches_per_epoch: int,
        seed: int,
        position: Callable[[], tuple[int, int, int]],
    ) -> None:
        self.examples = examples
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.position = position
        """The trainer's current step, its rank and the number of processes."""

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[Examples]:
        first, rank, world_size = self.position()
        per_pass = math.ceil(len(self.examples) / self.batch_size)
        current_pass, order = -1, torch.empty(0, dtype=torch.long)
        for step in range(first, first + self.batches_per_epoch):
            data_pass, position = divmod(step * world_size + rank, per_pass)
            if data_pass != current_pass:
                current_pass, order = data_pass, self.order(data_pass)
            yield self.examples[order[position * self.batch_size : (position + 1) * self.batch_size]]

    def order(self, data_pass: int) -> torch.Tensor:
        """The shuffled order of the examples in pass ``data_pass`` over the data."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + data_pass)
        return torch.randperm(len(self.examples), generator=generator)


class FreshBatches(IterableDataset):
    """The batches of one epoch of fresh data: the batch of training step ``k`` on rank ``r`` is
    drawn anew, a function of ``(seed, k, r)``, without the examples in ``avoid``.

    Like :class:`StepBatches`, an epoch serves ``batches_per_epoch`` batches from the trainer's
    current step on, so a resumed run sees the same batches as one that never stopped.
    """

    def __init__(
        self,
        task: Task,
        batch_size: int,
        batches_per_epoch: int,
        seed: int,
        position: Callable[[], tuple[int, int]],
        avoid: set[bytes],
    ) -> None:
        self.task = task
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.position = position
        """The trainer's current step and rank."""
        self.avoid = avoid

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[Examples]:
        first, rank = self.position()
        for step in range(first, first + self.batches_per_epoch):
            yield self.batch(step, rank)

    def batch(self, step: int, rank: int = 0) -> Examples:
        """The training batch of ``step`` on ``rank``."""

        def draw(n: int, attempt: int) -> Examples:
            return self.task.examples("train", n, derived_seed(self.seed, TRAIN_STREAM, step, rank, attempt))

        return kept_apart(draw(self.batch_size, 0), self.avoid, draw)


class TaskData(pl.LightningDataModule):
    """A task's training, validation and test data for a run of seed ``seed``.

    Validation: ``val_size`` examples drawn with seed ``2·seed + 1``. Training: a fresh batch at
    every step (``task.train_size`` null, :class:`FreshBatches`) or ``train_size`` examples drawn
    once with seed ``2·seed`` and cycled (:class:`StepBatches`). Test: ``test_size`` examples drawn
    with a seed of their own. Where the task's inputs are many (:data:`SEPARATION`), test examples
    that occur in validation or training, and fresh training examples that occur in validation or
    test, are drawn again: no example is in two splits. Either way the run logs
    ``data/val_overlap`` and ``data/test_overlap``, the shares of validation and test examples that
    also occur in training (for fresh data: in its first ``data/overlap_sample`` examples).

    Batches are sliced from whole tensors (a sampler of index tensors) or drawn whole, not
    collated sample by sample.
    """

    def __init__(self, task: Task, batch_size: int, batches_per_epoch: int, seed: int) -> None:
        super().__init__()
        self.task = task
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.val: TensorDataset | None = None
        self.test: TensorDataset | None = None
        self.train: TensorDataset | None = None
        self.fresh: FreshBatches | None = None
        self.overlap: dict[str, float] = {}

    def setup(self, stage: str) -> None:
        if self.val is not None:  # trainer.test after trainer.fit: the same data
            return
        task = self.task
        val = task.examples("val", task.val_size, 2 * self.seed + 1)
        train = task.generate(task.train_size, 2 * self.seed) if task.train_size is not None else None
        held_out = held_out_examples = set(example_keys(val))
        separate = task.fresh and task.distinct_inputs() >= SEPARATION * (task.val_size + task.test_size)
        if separate and train is not None:
            held_out = held_out | set(example_keys(train))
        test = self.drawn_apart("test", task.test_size, held_out if separate else set())
        self.val, self.test = TensorDataset(*val), TensorDataset(*test)
        if train is not None:
            self.train = TensorDataset(*train)
            reference, sample = set(example_keys(train)), len(train[0])
        else:
            held_out_examples = held_out_examples | set(example_keys(test))
            self.fresh = FreshBatches(
                task,
                self.batch_size,
                self.batches_per_epoch,
                self.seed,
                lambda: (self.trainer.global_step, self.trainer.global_rank),
                held_out_examples if separate else set(),
            )
            reference, sample = self.training_sample(self.fresh)
        self.overlap = {
            "data/val_overlap": overlap(val, reference),
            "data/test_overlap": overlap(test, reference),
            "data/overlap_sample": float(sample),
        }
        if stage == "fit" and self.trainer is not None:
            for logger in self.trainer.loggers:
                logger.log_metrics(self.overlap, step=0)

    def drawn_apart(self, split: Split, n: int, avoid: set[bytes]) -> Examples:
        def draw(count: int, attempt: int) -> Examples:
            return self.task.examples(split, count, derived_seed(self.seed, TEST_STREAM, attempt))

        return kept_apart(draw(n, 0), avoid, draw)

    def training_sample(self, fresh: FreshBatches) -> tuple[set[bytes], int]:
        """The keys of the first training batches of the run (at rank 0): :data:`OVERLAP_SAMPLE`
        examples, or fewer if the run trains on fewer; and their number."""
        batches = math.ceil(OVERLAP_SAMPLE / self.batch_size)
        if self.trainer is not None and self.trainer.max_steps > 0:
            batches = min(batches, self.trainer.max_steps)
        keys = [key for step in range(batches) for key in example_keys(fresh.batch(step))]
        return set(keys), len(keys)

    def train_dataloader(self) -> DataLoader:
        if self.fresh is not None:
            return DataLoader(self.fresh, batch_size=None)
        batches = StepBatches(
            self.train,
            self.batch_size,
            self.batches_per_epoch,
            self.seed,
            lambda: (self.trainer.global_step, self.trainer.global_rank, self.trainer.world_size),
        )
        return DataLoader(batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return in_batches(self.val, self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return in_batches(self.test, self.batch_size)


def in_batches(examples: TensorDataset, batch_size: int) -> DataLoader:
    """``examples`` in order, ``batch_size`` at a time."""
    in_order = torch.arange(len(examples)).split(batch_size)
    return DataLoader(examples, sampler=list(in_order), batch_size=None)
