"""The adding problem's data is what its definition says, and a function of the seed."""

from __future__ import annotations

import pytest
import torch

from seqexp.tasks.adding import AddingTask


@pytest.mark.parametrize("seq_len", [2, 3, 10, 101])
def test_one_marker_per_half_and_the_target_is_their_sum(seq_len: int) -> None:
    inputs, targets = AddingTask(seq_len).generate(500, seed=1)
    values, markers = inputs[..., 0], inputs[..., 1]
    half = seq_len // 2
    assert inputs.shape == (500, seq_len, 2) and targets.shape == (500, 1)
    assert torch.all((values >= 0) & (values < 1))
    assert torch.all((markers == 0) | (markers == 1))
    assert torch.all(markers[:, :half].sum(1) == 1)
    assert torch.all(markers[:, half:].sum(1) == 1)
    torch.testing.assert_close(targets[:, 0], (values * markers).sum(1))


def test_hand_checked_example() -> None:
    inputs, targets = AddingTask(4).generate(1, seed=3)
    values, markers = inputs[0, :, 0].tolist(), inputs[0, :, 1].tolist()
    marked = [v for v, m in zip(values, markers, strict=True) if m == 1]
    assert len(marked) == 2 and markers[:2].count(1) == 1
    assert targets.item() == pytest.approx(marked[0] + marked[1])


def test_baseline_is_the_mse_of_always_predicting_one() -> None:
    _, targets = AddingTask(50).generate(200_000, seed=0)
    mse_of_one = ((targets - 1) ** 2).mean().item()
    assert AddingTask.spec.baseline == pytest.approx(1 / 6)
    assert mse_of_one == pytest.approx(1 / 6, rel=0.01)


@pytest.mark.parametrize("seq_len", [1, 0, -5])
def test_too_short_sequences_are_refused(seq_len: int) -> None:
    with pytest.raises(ValueError, match=r"task.seq_len must be >= 2"):
        AddingTask(seq_len)
