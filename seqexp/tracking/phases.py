"""Where a run's wall time goes: building it, training steps, validation, testing, and the rest
(checkpoints, the store's writes, Lightning's own work between them), recorded as ``time/<phase>_s``."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from mlflow.entities import Metric
from pytorch_lightning.loggers import MLFlowLogger

PHASES = ("setup", "train", "validation", "test", "records")
"""``setup``: from the run's start to its first training step's start (config checks, building,
the run's record opened); ``train``: training batches (forward, backward, optimizer step);
``validation``, ``test``: those loops; ``records``: all else until the run is done (checkpoints and
metrics written to the store, artifacts, data loaders started)."""


class PhaseClock(pl.Callback):
    """Times a run's phases (:data:`PHASES`) from its creation, which is the run's start."""

    def __init__(self) -> None:
        self.created = time.perf_counter()
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.started: dict[str, float] = {}

    def start(self, phase: str) -> None:
        self.started[phase] = time.perf_counter()

    def stop(self, phase: str) -> None:
        if phase in self.started:
            self.seconds[phase] += time.perf_counter() - self.started.pop(phase)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if not self.seconds["setup"]:
            self.seconds["setup"] = time.perf_counter() - self.created
        self.start("train")

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.stop("train")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start("validation")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop("validation")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start("test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop("test")

    def totals(self) -> dict[str, float]:
        """Seconds per phase until now; ``records`` is what the others leave of the wall time."""
        wall = time.perf_counter() - self.created
        measured = {phase: s for phase, s in self.seconds.items() if phase != "records"}
        return measured | {"records": max(wall - sum(measured.values()), 0.0)}

    def record(self, logger: MLFlowLogger) -> None:
        """Write :meth:`totals` to the run as ``time/<phase>_s``, in one write, as its last record."""
        now = int(time.time() * 1000)
        metrics = [Metric(f"time/{phase}_s", s, now, 0) for phase, s in self.totals().items()]
        logger.experiment.log_batch(logger.run_id, metrics=metrics)
