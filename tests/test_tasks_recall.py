"""Multi-query associative recall: pairs, then each key queried once; only the values are scored."""

from __future__ import annotations

import pytest
import torch

from seqexp.tasks.recall import BLANK, IGNORE, RecallTask


def test_each_key_is_queried_once_and_answered_with_its_value() -> None:
    task = RecallTask(seq_len=40, vocab_size=32, num_kv_pairs=6)
    inputs, targets = task.generate(200, seed=0)
    assert inputs.shape == targets.shape == (200, 40)
    for row, target in zip(inputs, targets, strict=True):
        keys, values = row[0:12:2], row[1:12:2]
        assert len(keys.unique()) == 6 and (keys >= 1).all() and (keys < 16).all()
        assert (values >= 16).all() and (values < 32).all()
        queried = (target != IGNORE).nonzero().flatten()
        assert len(queried) == 6 and (queried >= 12).all()
        assert sorted(row[queried].tolist()) == sorted(keys.tolist())
        answer = dict(zip(keys.tolist(), values.tolist(), strict=True))
        assert target[queried].tolist() == [answer[k] for k in row[queried].tolist()]
        others = torch.ones(40, dtype=torch.bool)
        others[:12] = False
        others[queried] = False
        assert (row[others] == BLANK).all()


def test_accuracy_counts_the_queried_values_alone() -> None:
    task = RecallTask(seq_len=24, vocab_size=16, num_kv_pairs=4)
    inputs, targets = task.generate(8, seed=1)
    right = torch.nn.functional.one_hot(targets.clamp_min(0), 16).float() * 10
    wrong_blanks = right.clone()
    wrong_blanks[targets == IGNORE] = 0  # unscored steps guessed anything

    assert task.metrics(wrong_blanks, targets)["accuracy"] == 1.0
    assert task.metrics(-right, targets)["accuracy"] == 0.0
    assert task.spec.baseline == pytest.approx(2 / 16)


def test_the_data_is_a_function_of_the_seed() -> None:
    task = RecallTask()
    a, b, c = (task.generate(32, seed) for seed in (5, 5, 6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"vocab_size": 16, "num_kv_pairs": 8}, "at most 7"),
        ({"seq_len": 20, "num_kv_pairs": 8}, "task.seq_len"),
    ],
)
def test_impossible_sizes_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        RecallTask(**options)
