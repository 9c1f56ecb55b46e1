"""A task's seeded data as a LightningDataModule."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from seqexp.tasks import Task


class TaskData(pl.LightningDataModule):
    """Train and validation sets drawn from ``task`` with seeds ``2·seed`` and ``2·seed + 1``.

    Batches are sliced from whole tensors (a sampler of index lists), not collated sample by sample.
    """

    def __init__(self, task: Task, batch_size: int, seed: int) -> None:
        super().__init__()
        self.task = task
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str) -> None:
        self.train = TensorDataset(*self.task.generate(self.task.train_size, 2 * self.seed))
        self.val = TensorDataset(*self.task.generate(self.task.val_size, 2 * self.seed + 1))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, RandomSampler(self.train))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, SequentialSampler(self.val))

    def _loader(self, dataset: TensorDataset, order: RandomSampler | SequentialSampler) -> DataLoader:
        batches = BatchSampler(order, self.batch_size, drop_last=False)
        return DataLoader(dataset, sampler=batches, batch_size=None)
