"""Subject-verb agreement across a relative clause: the course's "The cat, which already ate ...,
was full" made into a task, scored by the number of attractors as Linzen et al. (2016) score it."""

from __future__ import annotations

import dataclasses
import random
from functools import cache

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

NOUNS = (
    ("cat", "cats"),
    ("dog", "dogs"),
    ("mouse", "mice"),
    ("child", "children"),
    ("bird", "birds"),
    ("fox", "foxes"),
    ("man", "men"),
    ("woman", "women"),
)
"""Each noun, singular and plural."""
WORDS = {
    "verb": ("ate", "saw", "chased", "liked", "followed", "found"),
    "adj": ("small", "old", "hungry", "black", "lazy"),
    "adv": ("already", "often", "quietly"),
    "prep": ("near", "with", "behind"),
    "the": ("the",),
    "and": ("and",),
}
VOCAB = (",", "which", *(w for words in WORDS.values() for w in words), *(w for pair in NOUNS for w in pair))
"""Every word, in token-id order."""
PAD = len(VOCAB)
"""The token that fills a shorter sentence's start (an input only where clause lengths vary)."""
MOST_ATTRACTORS = 4
"""Accuracy is reported per number of attractors 0 .. this, the last one "this or more"."""
INDEX = {word: i for i, word in enumerate(VOCAB)}
VERBS = ("was", "were")
"""The verb to predict, by the subject's number: class 0 singular, 1 plural."""
FOLLOWS = {
    "which": ("adv", "verb"),
    "adv": ("verb",),
    "verb": ("the",),
    "the": ("adj", "noun"),
    "adj": ("adj", "noun"),
    "noun": ("prep", "and"),
    "prep": ("the",),
    "and": ("verb",),
}
"""The clause's grammar: which word class may follow which. A clause ends on a noun."""
MIN_CLAUSE = 3
"""The shortest clause: "ate the mice"."""


@cache
def can_end(word_class: str, remaining: int) -> bool:
    """Whether a clause that has just emitted ``word_class`` can end on a noun in exactly
    ``remaining`` more words."""
    if remaining == 0:
        return word_class == "noun"
    return any(can_end(nxt, remaining - 1) for nxt in FOLLOWS[word_class])


@cache
def next_classes(word_class: str, remaining: int) -> list[str]:
    """The word classes that may follow ``word_class`` in a clause that ends on a noun in exactly
    ``remaining`` more words after them."""
    return [c for c in FOLLOWS[word_class] if can_end(c, remaining)]


@cache
def clauses(word_class: str, remaining: int) -> int:
    """How many different clauses a clause that has just emitted ``word_class`` can end with, in
    exactly ``remaining`` more words (the word classes share no word)."""
    if remaining == 0:
        return int(word_class == "noun")
    return sum(words_of(nxt) * clauses(nxt, remaining - 1) for nxt in FOLLOWS[word_class])


def words_of(word_class: str) -> int:
    return 2 * len(NOUNS) if word_class == "noun" else len(WORDS[word_class])


class AgreementTask(Task):
    """``the SUBJECT , which CLAUSE ,`` -> was or were. The subject is one of eight nouns,
    singular or plural with equal odds; the relative clause has ``seq_len`` words
    (e.g. "already ate the small mice near the dog and saw the cats") drawn from a small
    grammar whose every noun, a distractor, is singular or plural at random. The last noun before
    the verb is a distractor: a model that agrees with the nearest noun is at chance.

    ``seq_len`` is the clause length, the distance to bridge; sentences have ``seq_len + 5``
    tokens. With ``min_len`` below it, clause lengths are uniform in ``[min_len, seq_len]`` and
    shorter sentences are left-padded (a pad token, one more input). Chance accuracy 0.5 (the two
    numbers are equally likely); solved above 0.95.

    A target is ``(number, attractors)``: the subject's number (the class) and how many nouns of
    the clause have the other number. Besides ``accuracy``, the metrics give the accuracy over the
    sentences with ``k`` attractors, ``accuracy_attractors_k`` (``k`` = 0 .. :data:`MOST_ATTRACTORS`,
    the last "or more"), as Linzen et al. (2016) report agreement."""

    spec = TaskSpec(
        input_size=len(VOCAB),
        output_size=2,
        shape="many_to_one",
        metric="accuracy",
        baseline=0.5,
        solved_at=0.95,
        tokens=True,
        higher_is_better=True,
    )

    fresh = True

    def __init__(
        self,
        seq_len: int = 20,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
        min_len: int | None = None,
    ) -> None:
        at_least("task.seq_len", seq_len, MIN_CLAUSE, "the shortest clause 'ate the mice'")
        min_len = seq_len if min_len is None else min_len
        at_least("task.min_len", min_len, MIN_CLAUSE, "the shortest clause 'ate the mice'")
        if min_len > seq_len:
            raise ValueError(f"task.min_len must be <= task.seq_len {seq_len} (got {min_len})")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.min_len = min_len
        self.spec = dataclasses.replace(self.spec, input_size=len(VOCAB) + (min_len < seq_len))

    def distinct_inputs(self) -> float:
        """Every subject, singular or plural, times every clause of every length."""
        return float(2 * len(NOUNS) * sum(clauses("which", n) for n in range(self.min_len, self.seq_len + 1)))

    def clause(self, rng: random.Random, length: int) -> list[str]:
        """``length`` words after "which", from :data:`FOLLOWS`, ending on a noun."""
        words, word_class = [], "which"
        for remaining in range(length - 1, -1, -1):
            word_class = rng.choice(next_classes(word_class, remaining))
            if word_class == "noun":
                words.append(rng.choice(NOUNS)[rng.randrange(2)])
            else:
                words.append(rng.choice(WORDS[word_class]))
        return words

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        rng = random.Random(seed)
        sentences, targets = [], []
        for _ in range(n):
            number = rng.randrange(2)
            subject = rng.choice(NOUNS)[number]
            length = self.seq_len if self.min_len == self.seq_len else rng.randint(self.min_len, self.seq_len)
            clause = self.clause(rng, length)
            attractors = sum(number_of(word) == 1 - number for word in clause)
            words = ["the", subject, ",", "which", *clause, ","]
            sentences.append([PAD] * (self.seq_len - length) + [INDEX[w] for w in words])
            targets.append((number, attractors))
        return torch.tensor(sentences, dtype=torch.long), torch.tensor(targets, dtype=torch.long)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target[:, 0])

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """``accuracy``, and per number of attractors ``k`` the share of the batch that is right
        with ``k`` (``right_attractors_k``) and the share with ``k`` (``share_attractors_k``), means
        that :meth:`from_means` divides."""
        right = (prediction.argmax(-1) == target[:, 0]).float()
        attractors = target[:, 1].clamp(max=MOST_ATTRACTORS)
        metrics = {"accuracy": right.mean()}
        for k in range(MOST_ATTRACTORS + 1):
            has_k = (attractors == k).float()
            metrics |= {
                f"right_attractors_{k}": (right * has_k).mean(),
                f"share_attractors_{k}": has_k.mean(),
            }
        return metrics

    def from_means(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        """``accuracy`` and ``accuracy_attractors_k`` over the split's sentences with ``k`` attractors
        (left out where there are none)."""
        accuracies = {
            f"accuracy_attractors_{k}": means[f"right_attractors_{k}"] / means[f"share_attractors_{k}"]
            for k in range(MOST_ATTRACTORS + 1)
            if means[f"share_attractors_{k}"] > 0
        }
        return {name: value for name, value in means.items() if "_attractors_" not in name} | accuracies

    @staticmethod
    def decode(sentence: Tensor, target: Tensor | None = None) -> str:
        """A sentence as words (its padding left out); with its target, the verb and "full" too."""
        text = " ".join(VOCAB[i] for i in sentence.tolist() if i != PAD).replace(" ,", ",")
        return text if target is None else f"{text} {VERBS[int(target[0])]} full"


def number_of(word: str) -> int | None:
    """0 for a singular noun, 1 for a plural one, None for any other word."""
    for pair in NOUNS:
        if word in pair:
            return pair.index(word)
    return None
