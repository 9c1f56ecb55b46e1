"""The adding problem as Hochreiter & Schmidhuber (1997, experiment 4) pose it."""

from __future__ import annotations

import pytest
import torch

from seqexp.config.build import build_task
from seqexp.tasks.adding1997 import Adding1997Task, chance


def test_the_papers_sequences_markers_and_target() -> None:
    """Lengths in [T, T + T/10], left-padded; one 1-marker in the first ten pairs, one more in the
    first T/2; -1 at the first and last pair (unless marked 1); values in [-1, 1]; the target
    0.5 + (X1 + X2)/4 from the two values marked 1."""
    task = Adding1997Task(seq_len=100)
    inputs, targets = task.generate(2000, seed=3)
    assert inputs.shape == (2000, 110, 2) and targets.shape == (2000, 1)
    values, markers = inputs[..., 0], inputs[..., 1]
    assert values.min() >= -1 and values.max() <= 1
    assert set(markers.unique().tolist()) == {-1.0, 0.0, 1.0}

    padded = (inputs == 0).all(-1).cumprod(1).sum(1)  # leading (0, 0) pairs
    lengths = 110 - padded
    assert lengths.min() >= 100 and lengths.max() == 110 and lengths.float().std() > 2
    for row in range(2000):
        start = int(padded[row])
        seq_values, seq_markers = values[row, start:], markers[row, start:]
        ones = (seq_markers == 1).nonzero().flatten()
        assert len(ones) == 2 and ones[0] < 10 and ones[1] < 50
        assert seq_markers[-1] == -1 and (seq_markers[0] == -1 or ones[0] == 0)
        assert ((seq_markers == -1).sum() + (ones[0] == 0)) == 2
        if ones[0] == 0:
            assert seq_values[0] == 0
        assert targets[row, 0] == pytest.approx(0.5 + seq_values[ones].sum().item() / 4)


def test_right_within_the_tolerance_and_the_baseline_is_always_answering_a_half() -> None:
    task = Adding1997Task(seq_len=50)
    _, targets = task.generate(40_000, seed=0)
    half = torch.full_like(targets, 0.5)
    assert task.metrics(half, targets)["accuracy"].item() == pytest.approx(task.spec.baseline, abs=0.01)
    assert chance(0.04) == pytest.approx(0.1536)
    assert task.metrics(targets + 0.039, targets)["accuracy"] == 1
    assert task.metrics(targets + 0.041, targets)["accuracy"] == 0
    assert task.spec.higher_is_better and task.spec.metric == "accuracy"
    with pytest.raises(ValueError, match="solved_at"):
        Adding1997Task(seq_len=50, solved_at=0.1)
    with pytest.raises(ValueError, match="seq_len"):
        Adding1997Task(seq_len=20)


def test_the_config_builds_it(compose) -> None:
    task = build_task(compose("task=adding1997"))
    assert type(task) is Adding1997Task and (task.seq_len, task.max_len, task.tolerance) == (100, 110, 0.04)
