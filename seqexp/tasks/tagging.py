"""Name tagging: the course's many-to-many problem with T_x = T_y, a 0/1 label per word.

"Teddy Roosevelt was a great president" vs "Teddy bears are on sale": whether "Teddy" is part of
a name is decided only by a word after it."""

from __future__ import annotations

import random

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

FIRST_NAMES = ("Harry", "Hermione", "Albus", "Ron", "Luna", "Neville", "Minerva", "Severus")
SURNAMES = ("Potter", "Granger", "Dumbledore", "Weasley", "Lovegood", "Longbottom", "McGonagall", "Snape")
AMBIGUOUS = ("Teddy", "Rose", "Jack", "Bill", "Grace", "Mark", "Frank", "Will")
"""Words that are a name, or not, depending on a word that comes after them."""
NAME_CUES = ("said", "smiled", "laughed", "spoke")
"""After an ambiguous word at the look-ahead distance: it was a name ("Teddy ... said")."""
THING_CUES = ("broke", "sold", "bears", "cards")
"""After an ambiguous word at the look-ahead distance: it was not a name ("Teddy ... bears")."""
FILLERS = (
    "the", "a", "was", "great", "president", "are", "on", "sale", "today", "in", "town",
    "very", "old", "new", "and", "then", "with", "of", "it", "there",
)  # fmt: skip
"""Words that are never names and decide nothing."""
VOCAB = (*FILLERS, *FIRST_NAMES, *SURNAMES, *AMBIGUOUS, *NAME_CUES, *THING_CUES)
INDEX = {word: i for i, word in enumerate(VOCAB)}


def f1(predicted: Tensor, actual: Tensor) -> Tensor:
    """F1 of the positive class (a name) between two boolean tensors; 1 when neither has one."""
    true_pos = (predicted & actual).sum()
    positives = predicted.sum() + actual.sum()
    return torch.where(positives > 0, 2 * true_pos / positives.clamp(min=1), torch.ones(()))


class TaggingTask(Task):
    """Sentences of ``seq_len + lookahead`` words; each word is labelled 1 if it is part of a name.

    A sentence holds filler words (0), a first name (1) maybe followed by its surname (1), and one
    ambiguous word (:data:`AMBIGUOUS`) that is a name or not with equal odds; the word
    ``lookahead`` places after it tells which (:data:`NAME_CUES` or :data:`THING_CUES`), and the
    words between decide nothing. The ambiguous word falls uniformly on one of the first
    ``seq_len`` words, whatever the look-ahead: the sentence grows with the look-ahead, so the
    ambiguous word's place never narrows down as the look-ahead grows. A unidirectional model tags
    the ambiguous word before it has read its cue: chance, 0.5, the baseline of
    ``ambiguous_accuracy`` (the headline). A bidirectional one can read it. Solved above 0.95.

    Targets are ``(n, seq_len + lookahead, 2)``: the label, and a 0/1 flag on the ambiguous word.
    Metrics: ``accuracy`` and ``f1`` (a name is the positive class) on all words,
    ``ambiguous_accuracy`` and ``ambiguous_f1`` on the ambiguous words; F1 is per validation batch,
    averaged."""

    spec = TaskSpec(
        input_size=len(VOCAB),
        output_size=1,
        shape="many_to_many",
        metric="ambiguous_accuracy",
        baseline=0.5,
        solved_at=0.95,
        tokens=True,
        higher_is_better=True,
    )
    fresh = True
    length_key = "task.lookahead"

    def __init__(
        self,
        seq_len: int = 9,
        train_size: int | None = None,
        val_size: int = 1_000,
        lookahead: int = 3,
        test_size: int | None = None,
    ) -> None:
        at_least("task.lookahead", lookahead, 1, "the distance to the deciding word")
        at_least("task.seq_len", seq_len, 1, "the places the ambiguous word can take")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.lookahead = lookahead

    @property
    def length(self) -> int:
        """Words per sentence: ``seq_len + lookahead``."""
        return self.seq_len + self.lookahead

    def distinct_inputs(self) -> float:
        """A lower bound: the ambiguous word's places, words and cues, with fillers everywhere else."""
        cues = len(NAME_CUES) + len(THING_CUES)
        return float(self.seq_len * len(AMBIGUOUS) * cues * len(FILLERS) ** (self.length - 2))

    def sentence(self, rng: random.Random) -> tuple[list[str], list[int], int]:
        """Words, their labels, and the position of the ambiguous word."""
        T, d = self.length, self.lookahead
        words = [rng.choice(FILLERS) for _ in range(T)]
        labels = [0] * T
        i = rng.randrange(self.seq_len)
        name = rng.randrange(len(FIRST_NAMES))
        first = rng.randrange(T)
        if first not in (i, i + d):
            words[first], labels[first] = FIRST_NAMES[name], 1
            if first + 1 < T and first + 1 not in (i, i + d) and rng.random() < 0.5:
                words[first + 1], labels[first + 1] = SURNAMES[name], 1
        is_name = rng.randrange(2)
        words[i], labels[i] = rng.choice(AMBIGUOUS), is_name
        words[i + d] = rng.choice(NAME_CUES if is_name else THING_CUES)
        return words, labels, i

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        rng = random.Random(seed)
        inputs, targets = [], []
        for _ in range(n):
            words, labels, i = self.sentence(rng)
            inputs.append([INDEX[w] for w in words])
            targets.append([[label, int(t == i)] for t, label in enumerate(labels)])
        shape = (n, self.length)
        return torch.tensor(inputs, dtype=torch.long).view(shape), torch.tensor(targets).view(*shape, 2)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Per-step binary cross-entropy, averaged over words."""
        return F.binary_cross_entropy_with_logits(prediction.squeeze(-1), target[..., 0].float())

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        predicted, actual = prediction.squeeze(-1) > 0, target[..., 0].bool()
        ambiguous = target[..., 1].bool()
        right = (predicted == actual).float()
        return {
            "accuracy": right.mean(),
            "f1": f1(predicted, actual),
            "ambiguous_accuracy": right[ambiguous].mean(),
            "ambiguous_f1": f1(predicted[ambiguous], actual[ambiguous]),
        }

    @staticmethod
    def decode(sentence: Tensor) -> list[str]:
        return [VOCAB[i] for i in sentence.tolist()]
