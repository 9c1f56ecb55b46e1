"""What a run shows at the terminal: a progress bar in steps of ``trainer.max_steps``, and none of
Lightning's advertisements for other products."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

ADVERTISEMENT = "💡 Tip:"
"""How Lightning's advertisements start (``rank_zero_info`` of its logger and callback connectors)."""
LIGHTNING_INFO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
"""The loggers Lightning's ``rank_zero_info`` writes to."""


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting optimizer steps towards ``trainer.max_steps`` (seqexp's
    runs are as long as that, its epochs only the stretch between validations) instead of batches of
    an epoch out of ``max_epochs`` (``Epoch 11/-2`` when that is unbounded)."""

    @property
    def total_train_batches(self) -> int | float:
        steps = self.trainer.max_steps
        return steps if steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'Step':{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:  # resumed mid-epoch
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


class NoAdvertisement(logging.Filter):
    """Drops Lightning's advertisements (``💡 Tip: … litlogger``, ``… litmodels``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERTISEMENT)


@contextmanager
def no_advertisements() -> Iterator[None]:
    """While the block runs, Lightning's advertisements are not shown; its other messages are, and
    nothing is left changed after it."""
    quiet = NoAdvertisement()
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
