"""Selective copying: scattered tokens, written out in order after copy markers."""

from __future__ import annotations

import pytest
import torch

from seqexp.tasks.selective_copy import IGNORE, SelectiveCopyTask


def test_the_scattered_tokens_are_the_targets_in_order() -> None:
    task = SelectiveCopyTask(seq_len=30, vocab_size=8, num_tokens=5)
    inputs, targets = task.generate(300, seed=0)
    assert inputs.shape == targets.shape == (300, 35) and task.steps == 35
    assert (inputs[:, 30:] == task.marker).all() and (targets[:, :30] == IGNORE).all()
    for row, target in zip(inputs, targets, strict=True):
        scattered = row[:30][row[:30] != task.blank]
        assert scattered.tolist() == target[30:].tolist()
    positions = (inputs[:, :30] != task.blank).float().mean(0)
    assert positions.min() > 0, "tokens fall anywhere"


def test_accuracy_counts_the_copied_tokens_alone() -> None:
    task = SelectiveCopyTask(seq_len=10, num_tokens=3)
    _, targets = task.generate(4, seed=2)
    right = torch.nn.functional.one_hot(targets.clamp_min(0), 8).float()

    assert task.metrics(right, targets)["accuracy"] == 1.0
    assert task.metrics(-right, targets)["accuracy"] == 0.0


def test_the_data_is_a_function_of_the_seed() -> None:
    task = SelectiveCopyTask()
    a, b, c = (task.generate(16, seed) for seed in (3, 3, 4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_too_many_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="task.seq_len must be >= 9"):
        SelectiveCopyTask(seq_len=8, num_tokens=9)
