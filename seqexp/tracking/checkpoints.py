"""Checkpoints a run can resume from exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from seqexp.tracking.runs import RunLogger

LAST = "last.ckpt"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


class RecordedCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` that has the run's logger write what it holds back before it saves, so
    that no checkpoint is ahead of the run's record: if the write fails (a tracking server gone),
    nothing is saved, and the run resumed from the checkpoint before computes again what was not
    recorded."""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, RunLogger):
                    logger.flush()
        super()._save_checkpoint(trainer, filepath)


def best_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """The checkpoint with the lowest ``val/loss``, updated after every epoch."""
    return RecordedCheckpoint(checkpoint_dir(run_dir), monitor="val/loss", save_on_train_epoch_end=True)


def last_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """``last.ckpt``, overwritten after every epoch: where a killed run resumes from."""
    return RecordedCheckpoint(
        checkpoint_dir(run_dir),
        filename=LAST.removesuffix(".ckpt"),
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


class ExactResume(pl.Callback):
    """Makes a run resumed from a checkpoint repeat an uninterrupted one exactly.

    Before every training step it seeds torch's generators with ``(seed, step)``, so that the
    step's random draws (dropout) do not depend on what else drew random numbers before it; and
    it keeps the step that metrics are logged at equal to the global step (Lightning 2.6 counts one
    batch too many after resuming from a checkpoint saved at an epoch's end).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        seed = self.seed * 1_000_003 + trainer.global_step
        if pl_module.device.type == "cpu":  # torch.manual_seed visits every backend: 0.1 ms a step
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step


class EndsWithValidation(pl.Callback):
    """Makes a run that stops at ``trainer.max_steps`` in the middle of an epoch (of
    ``data.batches_per_epoch`` batches) end with a validation and a checkpoint all the same:
    asking the Trainer to stop makes it validate, then end the epoch, which saves the checkpoints."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
