"""Agreement: the verb's number is the subject's, whatever the distractor nouns in between."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from seqexp.tasks.agreement import FOLLOWS, NOUNS, PAD, VOCAB, WORDS, AgreementTask, number_of


def word_class(word: str) -> str:
    if number_of(word) is not None:
        return "noun"
    return next(c for c, words in WORDS.items() if word in words)


def test_hand_checked_sentences() -> None:
    inputs, targets = AgreementTask(seq_len=6).generate(3, seed=1)
    assert [AgreementTask.decode(s, n) for s, n in zip(inputs, targets, strict=True)] == [
        "the dog, which ate the man with the cats, was full",
        "the children, which often ate the old small women, were full",
        "the fox, which quietly liked the lazy old dogs, was full",
    ]
    assert targets.tolist() == [[0, 1], [1, 0], [0, 1]], "(number, attractors): the cats, none, the dogs"
    inputs, targets = AgreementTask(seq_len=3).generate(1, seed=0)
    assert AgreementTask.decode(inputs[0]) == "the men, which chased the women,"
    assert targets.tolist() == [[1, 0]]


@pytest.mark.parametrize("seq_len", [3, 4, 7, 20, 60])
def test_random_sentences_are_grammatical_and_the_target_is_the_subjects_number(seq_len: int) -> None:
    inputs, targets = AgreementTask(seq_len=seq_len).generate(300, seed=seq_len)
    assert inputs.shape == (300, seq_len + 5) and targets.shape == (300, 2)
    for sentence, (number, attractors) in zip(inputs.tolist(), targets.tolist(), strict=True):
        words = [VOCAB[i] for i in sentence]
        assert words[0] == "the" and words[2:4] == [",", "which"] and words[-1] == ","
        assert number_of(words[1]) == number, "the verb agrees with the subject"
        clause = words[4:-1]
        assert attractors == sum(number_of(word) == 1 - number for word in clause)
        assert len(clause) == seq_len and word_class(clause[-1]) == "noun"
        previous = "which"
        for word in clause:
            assert word_class(word) in FOLLOWS[previous], f"{previous} -> {word} in {words}"
            previous = word_class(word)


def test_distractors_come_in_both_numbers_and_the_nearest_noun_is_no_clue() -> None:
    inputs, targets = AgreementTask(seq_len=12).generate(4000, seed=3)
    numbers = targets[:, 0]
    nearest = torch.tensor([number_of(VOCAB[s[-2]]) for s in inputs.tolist()])
    distractors = [number_of(VOCAB[i]) for i in inputs[:, 4:-1].flatten().tolist()]
    assert {0, 1} <= set(distractors)
    assert (numbers == 1).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert (nearest == numbers).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert set(inputs[:, 1].tolist()) == {VOCAB.index(w) for pair in NOUNS for w in pair}


def test_baseline_is_chance_and_a_constant_guess_scores_it() -> None:
    task = AgreementTask(seq_len=5)
    assert task.spec.baseline == 0.5 and task.spec.output_size == 2 and task.spec.higher_is_better
    assert task.spec.tokens and task.spec.input_size == len(VOCAB)
    _, targets = task.generate(10_000, seed=0)
    always_singular = torch.tensor([[1.0, 0.0]]).expand(10_000, 2)
    assert task.metrics(always_singular, targets)["accuracy"].item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("seq_len", [2, 0, -1])
def test_too_short_clauses_are_refused(seq_len: int) -> None:
    with pytest.raises(ValueError, match=rf"task.seq_len must be >= 3.*\(got {seq_len}\)"):
        AgreementTask(seq_len=seq_len)


def test_mixed_lengths_are_left_padded_and_every_length_is_drawn() -> None:
    task = AgreementTask(seq_len=12, min_len=4)
    assert task.spec.input_size == len(VOCAB) + 1, "the pad token is one more input"
    inputs, targets = task.generate(500, seed=0)
    assert inputs.shape == (500, 17)
    padding = (inputs == PAD).sum(1)
    assert set(padding.tolist()) == set(range(9)), "clauses of 4..12 words"
    for sentence, pad in zip(inputs.tolist(), padding.tolist(), strict=True):
        assert sentence[:pad] == [PAD] * pad and PAD not in sentence[pad:]
    shortest = AgreementTask.decode(inputs[padding == 8][0])
    assert len(shortest.replace(",", " ,").split()) == 9, f"4 clause words and 5 more: {shortest}"
    assert AgreementTask(seq_len=12).spec.input_size == len(VOCAB), "one length: no pad token"


def test_min_len_above_seq_len_is_refused() -> None:
    with pytest.raises(ValueError, match=r"task.min_len must be <= task.seq_len 5 \(got 6\)"):
        AgreementTask(seq_len=5, min_len=6)


def test_accuracy_per_number_of_attractors_is_over_the_sentences_with_that_many() -> None:
    task = AgreementTask(seq_len=20)
    # right on the sentences with 0 attractors, wrong on the rest; one batch or two, the same
    targets = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 2], [0, 5], [1, 7]])
    prediction = F.one_hot(torch.where(targets[:, 1] == 0, targets[:, 0], 1 - targets[:, 0]), 2).float()
    means = task.metrics(prediction, targets)
    metrics = task.from_means(means)
    assert metrics["accuracy"].item() == pytest.approx(2 / 6)
    assert {k: metrics[f"accuracy_attractors_{k}"].item() for k in (0, 1, 2, 4)} == {0: 1, 1: 0, 2: 0, 4: 0}
    assert "accuracy_attractors_3" not in metrics, "no sentence with 3 attractors"
    assert not [name for name in metrics if name.startswith(("right_", "share_"))]
