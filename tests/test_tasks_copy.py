"""The copy memory task: inputs and targets are what Arjovsky et al.'s definition says."""

from __future__ import annotations

import math

import pytest
import torch

from seqexp.tasks.copy import CopyTask


def test_hand_checked_example() -> None:
    task = CopyTask(seq_len=3, num_symbols=2, categories=4)  # blank 4, delimiter 5
    inputs, targets = task.generate(1, seed=0)
    s0, s1 = inputs[0, :2].tolist()
    assert inputs[0].tolist() == [s0, s1, 4, 4, 5, 4, 4]
    assert targets[0].tolist() == [4, 4, 4, 4, 4, s0, s1]
    assert 0 <= s0 < 4 and 0 <= s1 < 4


@pytest.mark.parametrize("T", [1, 2, 10, 57])
def test_random_sequences_blanks_delimiter_and_the_symbols_copied_at_the_end(T: int) -> None:
    task = CopyTask(seq_len=T)
    inputs, targets = task.generate(300, seed=T)
    K, blank, delimiter = 10, 8, 9
    assert inputs.shape == targets.shape == (300, T + 20)
    assert inputs.dtype == targets.dtype == torch.long
    symbols = inputs[:, :K]
    assert torch.all((symbols >= 0) & (symbols < 8))
    assert torch.all(inputs[:, K : T + K - 1] == blank)  # T - 1 blanks
    assert torch.all(inputs[:, T + K - 1] == delimiter)
    assert torch.all(inputs[:, T + K :] == blank)
    assert torch.all(targets[:, : T + K] == blank)
    assert torch.equal(targets[:, T + K :], symbols)
    assert len(symbols.unique()) == 8, "every category is drawn"


@pytest.mark.parametrize("T", [1, 100, 500])
def test_baseline_is_the_cross_entropy_of_the_memoryless_strategy(T: int) -> None:
    """Blanks where blanks are due, then a uniform guess over the 8 categories: 10 ln 8 / (T + 20)."""
    task = CopyTask(seq_len=T)
    _, targets = task.generate(16, seed=0)
    logits = torch.full((16, T + 20, 9), -1e4)
    logits[:, : T + 10, 8] = 0.0  # certain of the blank
    logits[:, T + 10 :, :8] = 0.0  # uniform over the categories
    assert task.spec.baseline == pytest.approx(10 * math.log(8) / (T + 20))
    assert task.metrics(logits, targets)["xent"].item() == pytest.approx(task.spec.baseline, rel=1e-5)
    assert task.spec.solved_at == pytest.approx(task.spec.baseline / 10)
    assert not task.spec.higher_is_better and task.spec.tokens and task.spec.shape == "many_to_many"
    assert (task.spec.input_size, task.spec.output_size) == (10, 9)


def test_a_perfect_copy_scores_zero_and_full_recall_a_wrong_one_none() -> None:
    task = CopyTask(seq_len=7)
    _, targets = task.generate(8, seed=1)
    perfect = 50.0 * torch.nn.functional.one_hot(targets, 9).float()
    metrics = task.metrics(perfect, targets)
    assert metrics["xent"].item() < 1e-6 and metrics["recall_accuracy"].item() == 1.0
    assert task.spec.solved(metrics["xent"].item())
    wrong = perfect.clone()
    wrong[:, -10:] = 50.0 * torch.nn.functional.one_hot((targets[:, -10:] + 1) % 8, 9).float()
    assert task.metrics(wrong, targets)["recall_accuracy"].item() == 0.0


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"seq_len": 0}, r"task.seq_len must be >= 1, the delay T \(got 0\)"),
        ({"num_symbols": 0}, r"task.num_symbols must be >= 1 \(got 0\)"),
        ({"categories": 1}, r"task.categories must be >= 2 \(got 1\)"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CopyTask(**{"seq_len": 10, **knobs})
