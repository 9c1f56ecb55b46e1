"""Temporal order: the class is the order of the relevant symbols, which sit in their windows."""

from __future__ import annotations

import pytest
import torch

from seqexp.tasks.temporal_order import END, PAD, START, TOKENS, TemporalOrderTask, X, Y


def test_hand_checked_examples() -> None:
    task = TemporalOrderTask(seq_len=10)
    assert task.windows == [(1, 2), (5, 6)]
    inputs, targets = task.generate(200, seed=0)
    words = [TemporalOrderTask.decode(s) for s in inputs]
    # class = order of X/Y: XX 0, XY 1, YX 2, YY 3
    order = {("X", "X"): 0, ("X", "Y"): 1, ("Y", "X"): 2, ("Y", "Y"): 3}
    for word, target in zip(words, targets.tolist(), strict=True):
        assert word[0] == "B" and word[-1] == "E" and len(word) == 10
        relevant = [c for c in word if c in "XY"]
        assert word[1:3].count("X") + word[1:3].count("Y") == 1
        assert word[5:7].count("X") + word[5:7].count("Y") == 1
        assert order[tuple(relevant)] == target
    assert set(targets.tolist()) == {0, 1, 2, 3}
    assert TemporalOrderTask.decode(torch.tensor([START, 0, X, 3, 1, Y, 2, 2, 0, END])) == "BaXdbYccaE"


def test_the_windows_scale_with_the_length_as_in_the_paper() -> None:
    assert TemporalOrderTask(seq_len=100).windows == [(10, 20), (50, 60)]
    assert TemporalOrderTask(seq_len=100, num_markers=3).windows == [(10, 20), (33, 43), (66, 76)]
    assert TemporalOrderTask(seq_len=500).windows == [(50, 100), (250, 300)]


@pytest.mark.parametrize(("seq_len", "num_markers"), [(10, 2), (37, 2), (100, 2), (10, 3), (64, 3), (250, 3)])
def test_random_sequences_one_relevant_symbol_per_window_and_the_class_is_their_order(
    seq_len: int, num_markers: int
) -> None:
    task = TemporalOrderTask(seq_len=seq_len, num_markers=num_markers)
    inputs, targets = task.generate(500, seed=seq_len)
    assert inputs.shape == (500, seq_len) and targets.shape == (500,)
    assert torch.all(inputs[:, 0] == START) and torch.all(inputs[:, -1] == END)
    relevant = (inputs == X) | (inputs == Y)
    assert torch.all(relevant.sum(1) == num_markers)
    middle = inputs[:, 1:-1]
    assert torch.all((middle < 4) | (middle == X) | (middle == Y)), "distractors are a, b, c, d"
    expected = torch.zeros(500, dtype=torch.long)
    for lo, hi in task.windows:
        in_window = relevant[:, lo : hi + 1]
        assert torch.all(in_window.sum(1) == 1)
        symbol = inputs[:, lo : hi + 1][in_window]
        expected = 2 * expected + (symbol == Y).long()
    assert torch.equal(targets, expected)
    assert set(targets.tolist()) == set(range(2**num_markers))


@pytest.mark.parametrize("num_markers", [2, 3])
def test_baseline_is_chance_and_a_constant_guess_scores_it(num_markers: int) -> None:
    task = TemporalOrderTask(seq_len=20, num_markers=num_markers)
    classes = 2**num_markers
    assert task.spec.baseline == 1 / classes and task.spec.output_size == classes
    assert task.spec.input_size == len(TOKENS) - 1 == 8 and task.spec.higher_is_better  # no pad at one length
    _, targets = task.generate(20_000, seed=0)
    constant = torch.zeros(20_000, classes)
    constant[:, 0] = 1.0
    assert task.metrics(constant, targets)["accuracy"].item() == pytest.approx(1 / classes, abs=0.01)
    right = 10.0 * torch.nn.functional.one_hot(targets, classes).float()
    assert task.metrics(right, targets)["accuracy"].item() == 1.0 and task.spec.solved(1.0)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"seq_len": 9}, r"task.seq_len must be >= 10, to fit the marker windows \(got 9\)"),
        ({"num_markers": 4}, r"task.num_markers must be one of \[2, 3\] \(got 4\)"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TemporalOrderTask(**{"seq_len": 20, **knobs})


def test_the_papers_lengths_vary_and_a_sequence_is_left_padded_its_markers_counted_from_its_start() -> None:
    """H&S 6a: lengths 100 to 110, X/Y at 10-20 and 50-60 after the start symbol."""
    task = TemporalOrderTask(seq_len=110, min_len=100)
    inputs, targets = task.generate(2000, seed=3)

    assert task.windows == [(10, 20), (50, 60)] and task.spec.input_size == 9  # the pad is a ninth input
    starts = (inputs == START).long().argmax(1)
    lengths = 110 - starts
    assert lengths.min() == 100 and lengths.max() == 110 and len(set(lengths.tolist())) == 11
    assert torch.all(inputs[:, -1] == END) and torch.all((inputs == START).sum(1) == 1)
    assert torch.all((inputs == END).sum(1) == 1)
    before_start = torch.arange(110) < starts[:, None]
    assert torch.all((inputs == PAD) == before_start)
    expected = torch.zeros(2000, dtype=torch.long)
    for lo, hi in task.windows:
        for row in range(2000):
            window = inputs[row, starts[row] + lo : starts[row] + hi + 1]
            relevant = window[(window == X) | (window == Y)]
            assert len(relevant) == 1
            expected[row] = 2 * expected[row] + int(relevant[0] == Y)
    assert torch.equal(targets, expected)
    assert torch.all(((inputs == X) | (inputs == Y)).sum(1) == 2)


def test_without_min_len_the_data_are_what_they_were() -> None:
    """``min_len = seq_len`` draws nothing more: recorded runs rerun on the same data, no pad token."""
    same, default = TemporalOrderTask(seq_len=50, min_len=50), TemporalOrderTask(seq_len=50)
    assert torch.equal(same.generate(64, 5)[0], default.generate(64, 5)[0])
    assert default.spec.input_size == 8 and PAD not in default.generate(64, 5)[0]
    inputs, targets = default.generate(4, 0)
    # the digest of the data the task drew before min_len existed (seqexp at 8f26485)
    assert (inputs.sum().item(), (inputs * torch.arange(50)).sum().item(), targets.tolist()) == (
        380,
        9117,
        [0, 2, 2, 0],
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seq_len": 100, "min_len": 120}, "task.min_len must be <= task.seq_len 100"),
        ({"seq_len": 100, "min_len": 5}, "task.min_len"),
        ({"seq_len": 100, "solved_at": 1.0}, r"task.solved_at must be in \[chance 0.25, 1\)"),
        ({"seq_len": 100, "solved_at": 0.1}, "task.solved_at must be in"),
    ],
)
def test_bad_lengths_and_thresholds_are_refused_naming_their_key(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TemporalOrderTask(**options)


def test_solved_at_sets_what_counts_as_solved() -> None:
    strict = TemporalOrderTask(seq_len=100, val_size=2000, solved_at=0.9995)
    assert strict.spec.solved(1.0) and not strict.spec.solved(1999 / 2000)
    assert TemporalOrderTask(seq_len=100).spec.solved(0.96)
