"""A task's seeded data as a LightningDataModule, in batches that a resumed run sees again exactly."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from seqexp.tasks import Task


class StepBatches(Sampler[torch.Tensor]):
    """The batches of one epoch: the batch of training step ``k`` is a function of ``(seed, k)``.

    The batches of all steps together walk through the data one shuffled pass after another, pass
    ``p`` shuffled with seed ``(seed, p)``. An epoch serves ``batches_per_epoch`` batches from the
    trainer's current step on, so a run resumed from a checkpoint sees the same batches as one that
    never stopped, whatever the trainer's epoch count says.
    """

    def __init__(
        self, size: int, batch_size: int, batches_per_epoch: int, seed: int, current_step: Callable[[], int]
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.current_step = current_step

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        per_pass = math.ceil(self.size / self.batch_size)
        first = self.current_step()
        current_pass, order = -1, torch.empty(0, dtype=torch.long)
        for k in range(first, first + self.batches_per_epoch):
            data_pass, position = divmod(k, per_pass)
            if data_pass != current_pass:
                current_pass, order = data_pass, self.order(data_pass)
            yield order[position * self.batch_size : (position + 1) * self.batch_size]

    def order(self, data_pass: int) -> torch.Tensor:
        """The shuffled order of the examples in pass ``data_pass`` over the data."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + data_pass)
        return torch.randperm(self.size, generator=generator)


class TaskData(pl.LightningDataModule):
    """Train and validation sets drawn from ``task`` with seeds ``2·seed`` and ``2·seed + 1``.

    Batches are sliced from whole tensors (a sampler of index tensors), not collated sample by sample.
    """

    def __init__(self, task: Task, batch_size: int, batches_per_epoch: int, seed: int) -> None:
        super().__init__()
        self.task = task
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed

    def setup(self, stage: str) -> None:
        self.train = TensorDataset(*self.task.generate(self.task.train_size, 2 * self.seed))
        self.val = TensorDataset(*self.task.generate(self.task.val_size, 2 * self.seed + 1))

    def train_dataloader(self) -> DataLoader:
        batches = StepBatches(
            len(self.train),
            self.batch_size,
            self.batches_per_epoch,
            self.seed,
            lambda: self.trainer.global_step,
        )
        return DataLoader(self.train, sampler=batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        in_order = torch.arange(len(self.val)).split(self.batch_size)
        return DataLoader(self.val, sampler=list(in_order), batch_size=None)
