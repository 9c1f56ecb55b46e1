"""The LightningModule: a recurrent stack and a head, trained on a task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from seqexp.recurrent import NativeStack, RecurrentStack
from seqexp.tasks import Task

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class SequenceModel(pl.LightningModule):
    """An input encoder, a recurrent stack and a dense head, shaped by the task's spec.

    Token inputs are embedded (``embedding_size``); real ones go in as they are. Many-to-many:
    ``ŷ<t> = W_y a<t> + b_y`` at every step; many-to-one: ``ŷ = W_y summary + b_y``, where the
    summary is the last state of each direction of the top layer."""

    def __init__(
        self,
        task: Task,
        stack: RecurrentStack | NativeStack,
        encoder: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        self.encoder = encoder
        self.stack = stack
        self.head = nn.Linear(stack.output_size, task.spec.output_size)
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.scheduler_options = scheduler_options or {}
        self.val_metric = MeanMetric()

    def forward(self, x: Tensor) -> Tensor:
        outputs, summary = self.stack(self.encoder(x))
        return self.head(summary if self.task.spec.shape == "many_to_one" else outputs)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.task.loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        prediction = self(x)
        metrics = self.task.metrics(prediction, y)
        self.val_metric.update(metrics[self.task.spec.metric], weight=len(x))
        logged = {"val/loss": self.task.loss(prediction, y)} | {f"val/{k}": v for k, v in metrics.items()}
        self.log_dict(logged, prog_bar=True, batch_size=len(x))

    def on_validation_epoch_end(self) -> None:
        """Log the baseline and the solved flag beside the metric, so runs compare at a glance."""
        spec = self.task.spec
        metric = self.val_metric.compute()
        self.val_metric.reset()
        self.log(f"val/{spec.metric}_baseline", spec.baseline)
        self.log("val/solved", float(spec.solved(metric)))

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.make_scheduler(optimizer), **self.scheduler_options}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
