"""What a task tells the model about itself, and the data it hands to training."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from seqexp.checks import at_least


@dataclass(frozen=True)
class TaskSpec:
    """Everything a model needs to know to be built for a task, and nothing about models."""

    input_size: int
    """Real features per time step, or the vocabulary size when the inputs are ``tokens``."""
    output_size: int
    """Outputs per prediction: 1 for a regression, the number of classes for a classification."""
    shape: Literal["many_to_one", "many_to_many", "one_to_many", "encoder_decoder"]
    """Which of the course's kinds of sequence problem this is (``many_to_many``: T_x = T_y;
    ``one_to_many``: a language model that generates; ``encoder_decoder``: T_x ≠ T_y)."""
    metric: str
    """The task's headline metric, logged as ``val/<metric>``."""
    baseline: float
    """``metric`` of a model that ignores the input (or chance): what a run must beat."""
    solved_at: float
    """A run counts as solved once ``metric`` is past this (below it, or above if higher is better)."""
    tokens: bool = False
    """Inputs are token ids in ``[0, input_size)`` rather than real features."""
    higher_is_better: bool = False
    start_token: int | None = None
    """Generation and decoders: the token fed as ``x<1>`` before the first output."""
    end_token: int | None = None
    """Generation and decoders: ``<EOS>``, where an output sequence stops."""
    unknown_token: int | None = None
    """``<UNK>``, which sampling may reject."""
    output_length: int | None = None
    """Decoders: the longest output sequence, ``<EOS>`` included."""

    def solved(self, value: float) -> bool:
        return value > self.solved_at if self.higher_is_better else value < self.solved_at


class Task(ABC):
    """A task: a seeded data generator, a loss and metrics."""

    spec: TaskSpec

    def __init__(self, seq_len: int, train_size: int, val_size: int) -> None:
        at_least("task.train_size", train_size, 1)
        at_least("task.val_size", val_size, 1)
        self.seq_len = seq_len
        self.train_size = train_size
        self.val_size = val_size

    @abstractmethod
    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` examples ``(inputs, targets)``, a deterministic function of ``seed``."""

    @abstractmethod
    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The training loss, a scalar."""

    @abstractmethod
    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """The task's metrics on a batch, ``spec.metric`` among them."""
