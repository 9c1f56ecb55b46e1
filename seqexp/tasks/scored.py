"""Token tasks scored on some steps alone (the queries of recall, the copies of selective copying)."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from seqexp.tasks.base import Task

IGNORE = -100
"""The target of a step that is not scored."""


class ScoredStepsTask(Task):
    """Many-to-many over tokens, its targets :data:`IGNORE` at every step that is not scored: the
    loss is the cross-entropy over the scored steps, ``accuracy`` the share of them right."""

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction.flatten(0, 1), target.flatten(), ignore_index=IGNORE)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        scored = target != IGNORE
        right = (prediction.argmax(-1) == target) & scored
        return {"accuracy": right.sum() / scored.sum(), "xent": self.loss(prediction, target)}
