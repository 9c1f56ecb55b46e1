"""Agreement: the verb's number is the subject's, whatever the distractor nouns in between."""

from __future__ import annotations

import pytest
import torch

from seqexp.tasks.agreement import FOLLOWS, NOUNS, VOCAB, WORDS, AgreementTask, number_of


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
    assert targets.tolist() == [0, 1, 0]
    inputs, targets = AgreementTask(seq_len=3).generate(1, seed=0)
    assert AgreementTask.decode(inputs[0]) == "the men, which chased the women,"
    assert targets.tolist() == [1]


@pytest.mark.parametrize("seq_len", [3, 4, 7, 20, 60])
def test_random_sentences_are_grammatical_and_the_target_is_the_subjects_number(seq_len: int) -> None:
    inputs, targets = AgreementTask(seq_len=seq_len).generate(300, seed=seq_len)
    assert inputs.shape == (300, seq_len + 5) and targets.shape == (300,)
    for sentence, target in zip(inputs.tolist(), targets.tolist(), strict=True):
        words = [VOCAB[i] for i in sentence]
        assert words[0] == "the" and words[2:4] == [",", "which"] and words[-1] == ","
        assert number_of(words[1]) == target, "the verb agrees with the subject"
        clause = words[4:-1]
        assert len(clause) == seq_len and word_class(clause[-1]) == "noun"
        previous = "which"
        for word in clause:
            assert word_class(word) in FOLLOWS[previous], f"{previous} -> {word} in {words}"
            previous = word_class(word)


def test_distractors_come_in_both_numbers_and_the_nearest_noun_is_no_clue() -> None:
    inputs, targets = AgreementTask(seq_len=12).generate(4000, seed=3)
    nearest = torch.tensor([number_of(VOCAB[s[-2]]) for s in inputs.tolist()])
    distractors = [number_of(VOCAB[i]) for i in inputs[:, 4:-1].flatten().tolist()]
    assert {0, 1} <= set(distractors)
    assert (targets == 1).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert (nearest == targets).float().mean().item() == pytest.approx(0.5, abs=0.03)
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
