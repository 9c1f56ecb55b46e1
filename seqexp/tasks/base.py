"""What a task tells the model about itself, and the data it hands to training."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from seqexp.checks import at_least

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
"""Training; validation (checkpoint selection, early stopping, tuning); test (reported, never optimised)."""


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
    pad_token: int | None = None
    """Encoder–decoders: the source token that pads a source, which attention never reads."""
    output_length: int | None = None
    """Decoders: the longest output sequence, ``<EOS>`` included."""

    def solved(self, value: float) -> bool:
        return value > self.solved_at if self.higher_is_better else value < self.solved_at


class Task(ABC):
    """A task: a seeded data generator, a loss and metrics.

    ``train_size`` examples make a fixed training set; ``None`` (only where :attr:`fresh`) draws a
    fresh training batch at every step. ``val_size`` and ``test_size`` (``None``: as many as
    ``val_size``) are the validation and test sets."""

    spec: TaskSpec
    fresh: ClassVar[bool] = False
    """Whether the task generates examples without end, so that training can draw a fresh batch at
    every step (``train_size: null``); a task with a fixed pool of data cannot."""
    length_key: str | None = "task.seq_len"
    """The config key that sets the task's dependency length, the distance its model must bridge
    (longer means a longer dependency; ``seqexp-horizon`` varies it); ``None`` where no key does."""
    length_hint: ClassVar[str] = ""
    """Where :attr:`length_key` is ``None``: which setting gives the task one, if any."""

    def __init__(
        self, seq_len: int, train_size: int | None, val_size: int, test_size: int | None = None
    ) -> None:
        if train_size is None and not self.fresh:
            raise ValueError(
                f"task.train_size must be a positive integer for {type(self).__name__}, whose examples "
                "come from a fixed pool (null, a fresh batch at every step, is for generated tasks)"
            )
        if train_size is not None:
            at_least("task.train_size", train_size, 1)
        at_least("task.val_size", val_size, 1)
        test_size = val_size if test_size is None else test_size
        at_least("task.test_size", test_size, 1)
        self.seq_len = seq_len
        self.train_size = train_size
        self.val_size = val_size
        self.test_size = test_size

    @abstractmethod
    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` training examples ``(inputs, targets)``, a deterministic function of ``seed``."""

    def examples(self, split: Split, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` examples of ``split``, a function of ``seed``. A generated task draws every split
        alike (seqexp keeps the splits apart by their seeds, :mod:`seqexp.models.data`); a task with a
        fixed pool of data draws each split from its own part of it."""
        return self.generate(n, seed)

    @property
    def steps(self) -> int:
        """Time steps per input that the memory check counts (:mod:`seqexp.config.memory`):
        ``seq_len``. A task whose inputs are longer may say so here; copy (``T + 2K``), tagging
        (``seq_len + lookahead``) and agreement (``seq_len + 5``) do not, so that their estimates
        stay as they were."""
        return self.seq_len

    def distinct_inputs(self) -> float:
        """How many distinct inputs the generator can draw, or a lower bound of it (``math.inf``
        where they are real-valued): where the validation and test sets are a negligible share
        of them, training never sees their examples; elsewhere the overlap is measured."""
        return math.inf

    @abstractmethod
    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The training loss, a scalar."""

    @abstractmethod
    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """The task's metrics on a batch, ``spec.metric`` among them."""

    def from_means(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        """The metrics of a whole split from the means of :meth:`metrics` over its examples: the
        means themselves, except where a metric is not a mean (a perplexity is ``e`` to the mean
        cross-entropy, not the mean of each batch's)."""
        return means


def left_padded(sequences: Tensor, lengths: Tensor, pad: float) -> Tensor:
    """Each sequence's first ``lengths[i]`` steps moved to the end of its row and the steps before
    them filled with ``pad``, so that every sequence ends at the last step: (n, T, ...) -> (n, T, ...)."""
    n, T = sequences.shape[:2]
    steps = torch.arange(T)
    source = (steps - (T - lengths[:, None])) % T  # output step t reads step t - (T - length)
    kept = (steps < lengths[:, None]).gather(1, source)
    trailing = (1,) * (sequences.dim() - 2)
    moved = sequences.gather(1, source.view(n, T, *trailing).expand_as(sequences))
    return torch.where(kept.view(n, T, *trailing), moved, torch.tensor(pad, dtype=sequences.dtype))
