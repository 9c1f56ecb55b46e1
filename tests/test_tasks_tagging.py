"""Name tagging (many-to-many, T_x = T_y): the generator's labels, the metrics, and what a
unidirectional and a bidirectional model can learn of the ambiguous words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from seqexp.checks import ConfigError
from seqexp.commands.train import train
from seqexp.config.build import build_task
from seqexp.tasks.tagging import (
    AMBIGUOUS,
    FIRST_NAMES,
    NAME_CUES,
    SURNAMES,
    THING_CUES,
    VOCAB,
    TaggingTask,
    f1,
)


def test_every_word_gets_the_label_its_role_says() -> None:
    task = TaggingTask(seq_len=4, lookahead=3)
    inputs, targets = task.generate(200, seed=0)
    for sentence, target in zip(inputs, targets, strict=True):
        words, labels, flags = task.decode(sentence), target[:, 0].tolist(), target[:, 1].tolist()
        [i] = [t for t, flag in enumerate(flags) if flag]
        assert words[i] in AMBIGUOUS
        assert words[i + 3] in NAME_CUES + THING_CUES
        assert labels[i] == (words[i + 3] in NAME_CUES)
        for t, (word, label) in enumerate(zip(words, labels, strict=True)):
            if t != i:
                assert label == (word in FIRST_NAMES + SURNAMES), (word, label)


def test_a_hand_checked_sentence() -> None:
    """ "Teddy was sold ..." with look-ahead 2: not a name; "Harry Potter" is one."""
    task = TaggingTask(seq_len=6, lookahead=2)
    words = ["Harry", "Potter", "Teddy", "was", "sold", "today"]
    x = torch.tensor([[VOCAB.index(w) for w in words]])
    target = torch.tensor([[[1, 0], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0]]])
    right = torch.tensor([[[5.0], [5.0], [-5.0], [-5.0], [-5.0], [-5.0]]])
    wrong_on_teddy = right.clone()
    wrong_on_teddy[0, 2] = 5.0
    assert task.decode(x[0]) == words
    assert {k: float(v) for k, v in task.metrics(right, target).items()} == {
        "accuracy": 1.0,
        "f1": 1.0,
        "ambiguous_accuracy": 1.0,
        "ambiguous_f1": 1.0,
    }
    metrics = task.metrics(wrong_on_teddy, target)
    assert float(metrics["accuracy"]) == pytest.approx(5 / 6)
    assert float(metrics["f1"]) == pytest.approx(2 * 2 / (3 + 2))
    assert float(metrics["ambiguous_accuracy"]) == 0.0


def test_f1() -> None:
    predicted = torch.tensor([True, True, False, False])
    actual = torch.tensor([True, False, True, False])
    assert float(f1(predicted, actual)) == pytest.approx(0.5)
    assert float(f1(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool))) == 1.0


@pytest.mark.parametrize("lookahead", [1, 5, 15])
def test_the_ambiguous_words_places_do_not_narrow_as_the_lookahead_grows(lookahead: int) -> None:
    """The sentence grows with the look-ahead: the ambiguous word takes any of the first
    ``seq_len`` places, its cue ``lookahead`` words later, whatever the look-ahead."""
    task = TaggingTask(seq_len=16, lookahead=lookahead)
    inputs, targets = task.generate(2000, seed=1)
    assert inputs.shape == (2000, 16 + lookahead) and targets.shape == (2000, 16 + lookahead, 2)
    places = targets[..., 1].argmax(1)
    assert sorted(set(places.tolist())) == list(range(16))
    cues = inputs[torch.arange(2000), places + lookahead]
    assert all(VOCAB[c] in NAME_CUES + THING_CUES for c in cues.tolist())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("task.lookahead=0", "task.lookahead must be >= 1"),
        ("task.seq_len=0", r"task.seq_len must be >= 1, the places the ambiguous word can take"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(bad: str, message: str, compose) -> None:
    with pytest.raises(ConfigError, match=message):
        build_task(compose("task=tagging", "task.lookahead=3", bad))


def tagging_run(compose: Callable[..., DictConfig], topology: str, run_dir: Path) -> dict[str, float]:
    cfg = compose(
        "task=tagging",
        f"topology={topology}",
        "task.seq_len=5",
        "task.lookahead=3",
        "task.val_size=256",
        "task.test_size=256",
        "data.batch_size=64",
        "model.hidden_size=16",
        "model.embedding_size=8",
        "optimizer.lr=0.02",
        "trainer.max_steps=150",
        "data.batches_per_epoch=150",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "callbacks.gradient_flow=null",
    )
    return train(cfg, run_dir).metrics


def test_only_a_bidirectional_model_tags_the_ambiguous_words(tmp_path: Path, compose) -> None:
    uni = tagging_run(compose, "uni", tmp_path / "uni")
    bi = tagging_run(compose, "bi", tmp_path / "bi")
    assert uni["val/accuracy"] > 0.9 and bi["val/accuracy"] > 0.9, "both tag the unambiguous words"
    assert abs(uni["val/ambiguous_accuracy"] - 0.5) < 0.1, "unidirectional: chance on the ambiguous words"
    assert bi["val/ambiguous_accuracy"] > 0.9
    assert bi["val/solved"] == 1.0 and uni["val/solved"] == 0.0
    assert uni["val/ambiguous_accuracy_baseline"] == 0.5
    assert bi["test/ambiguous_accuracy"] > 0.9 and abs(uni["test/ambiguous_accuracy"] - 0.5) < 0.1
    assert bi["test/solved"] == 1.0 and uni["test/solved"] == 0.0
