"""Parity: bits, the answer at the last token; training and test lengths apart."""

from __future__ import annotations

import pytest
import torch
from sizes import TINY

from seqexp.tasks.parity import PAD, ParityTask

TINY_WITHOUT_LENGTH = [o for o in TINY if not o.startswith("task.seq_len")]


def real_lengths(inputs: torch.Tensor) -> torch.Tensor:
    return (inputs != PAD).sum(1)


def test_training_and_validation_strings_have_the_training_lengths_and_their_parity() -> None:
    task = ParityTask(min_len=2, max_len=12)
    for split in ("train", "val"):
        inputs, targets = task.examples(split, 500, seed=3)
        lengths = real_lengths(inputs)
        assert inputs.shape == (500, 12)
        assert lengths.min() == 2 and lengths.max() == 12
        assert torch.equal(targets, inputs.masked_fill(inputs == PAD, 0).sum(1) % 2)
        starts = 12 - lengths  # padding only at the start
        assert all(
            (row[:s] == PAD).all() and (row[s:] != PAD).all() for row, s in zip(inputs, starts, strict=True)
        )


def test_test_strings_are_all_longer_than_any_training_string() -> None:
    task = ParityTask(min_len=2, max_len=12, test_min_len=13, test_max_len=48)
    inputs, targets = task.examples("test", 500, seed=3)
    lengths = real_lengths(inputs)

    assert inputs.shape == (500, 48) and task.steps == 48
    assert lengths.min() == 13 and lengths.max() == 48
    assert torch.equal(targets, inputs.masked_fill(inputs == PAD, 0).sum(1) % 2)
    assert 0.4 < targets.float().mean() < 0.6


def test_the_data_is_a_function_of_the_seed() -> None:
    task = ParityTask()
    a, b, c = (task.examples("train", 64, seed) for seed in (1, 1, 2))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_accuracy_and_chance() -> None:
    task = ParityTask()
    targets = torch.tensor([0, 1, 1, 0])
    perfect = torch.nn.functional.one_hot(targets, 2).float() * 5

    assert task.metrics(perfect, targets)["accuracy"] == 1.0
    assert task.metrics(-perfect, targets)["accuracy"] == 0.0
    assert task.spec.baseline == 0.5 and task.spec.higher_is_better and task.length_key == "task.max_len"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_len": 5, "max_len": 4}, "task.max_len must be >= 5"),
        ({"min_len": 0}, "task.min_len must be >= 1"),
        ({"test_min_len": 20, "test_max_len": 10}, "task.test_max_len must be >= 20"),
    ],
)
def test_bad_lengths_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        ParityTask(**options)


def test_a_run_records_in_distribution_and_out_of_length_accuracy(run_seqexp, records) -> None:
    """A task without ``seq_len`` (parity's lengths are a range) names and records its runs."""
    run_seqexp("task=parity", "task.max_len=6", "task.test_max_len=20", *TINY_WITHOUT_LENGTH)

    (run,) = records.search_runs([records.get_experiment_by_name("parity").experiment_id])
    assert run.info.run_name.startswith("lstm-uni-parity-seed0") and run.info.status == "FINISHED"
    assert {"val/accuracy", "test/accuracy", "test/accuracy_baseline"} <= set(run.data.metrics)
