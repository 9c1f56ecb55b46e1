"""Lightning callbacks for tests that run ``seqexp`` in other processes: one writes, per rank, the
global step of every validation, checkpoint and training batch (with its examples' digests), the
other the model's weights before and after training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


class StepProbe(pl.Callback):
    """Appends one JSON line per event to ``<path>.rank<r>``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, trainer: pl.Trainer, event: str, **fields: Any) -> None:
        line = {"event": event, "step": trainer.global_step, **fields}
        with Path(f"{self.path}.rank{trainer.global_rank}").open("a") as file:
            file.write(json.dumps(line) + "\n")

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any
    ) -> None:
        inputs, targets = batch
        digests = [
            hashlib.sha1(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
            for x, y in zip(inputs, targets, strict=True)
        ]
        self.write(trainer, "batch", examples=digests)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.write(trainer, "validation")

    def on_save_checkpoint(self, trainer: pl.Trainer, *args: Any) -> None:
        self.write(trainer, "checkpoint")


class WeightsProbe(pl.Callback):
    """Saves the model's weights, per rank, when training starts and when it ends
    (``<path>.rank<r>.start.pt``, ``<path>.rank<r>.end.pt``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, when: str) -> None:
        weights = {name: value.detach().clone() for name, value in pl_module.state_dict().items()}
        torch.save(weights, f"{self.path}.rank{trainer.global_rank}.{when}.pt")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module, "start")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module, "end")


def weights(path: Path, rank: int, when: str) -> dict[str, torch.Tensor]:
    """The weights that rank ``rank`` saved when training started or ended (``when``)."""
    return torch.load(f"{path}.rank{rank}.{when}.pt")


def events(path: Path, rank: int, event: str) -> list[dict[str, Any]]:
    """The events of kind ``event`` that rank ``rank`` wrote, in order."""
    lines = Path(f"{path}.rank{rank}").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["event"] == event]
