"""Subject-verb agreement across a relative clause: the course's "The cat, which already ate ...,
was full" made into a task."""

from __future__ import annotations

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
    singular or plural with equal odds; the relative clause has exactly ``seq_len`` words
    (e.g. "already ate the small mice near the dog and saw the cats") drawn from a small
    grammar whose every noun, a distractor, is singular or plural at random. The last noun before
    the verb is a distractor: a model that agrees with the nearest noun is at chance.

    ``seq_len`` is the clause length, the distance to bridge; sentences have ``seq_len + 5``
    tokens. Chance accuracy 0.5 (the two numbers are equally likely); solved above 0.95."""

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
    ) -> None:
        at_least("task.seq_len", seq_len, MIN_CLAUSE, "the shortest clause 'ate the mice'")
        super().__init__(seq_len, train_size, val_size, test_size)

    def distinct_inputs(self) -> float:
        """Every subject, singular or plural, times every clause of ``seq_len`` words."""
        return float(2 * len(NOUNS) * clauses("which", self.seq_len))

    def clause(self, rng: random.Random) -> list[str]:
        """``seq_len`` words after "which", from :data:`FOLLOWS`, ending on a noun."""
        words, word_class = [], "which"
        for remaining in range(self.seq_len - 1, -1, -1):
            word_class = rng.choice(next_classes(word_class, remaining))
            if word_class == "noun":
                words.append(rng.choice(NOUNS)[rng.randrange(2)])
            else:
                words.append(rng.choice(WORDS[word_class]))
        return words

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        rng = random.Random(seed)
        sentences, numbers = [], []
        for _ in range(n):
            number = rng.randrange(2)
            subject = rng.choice(NOUNS)[number]
            words = ["the", subject, ",", "which", *self.clause(rng), ","]
            sentences.append([INDEX[w] for w in words])
            numbers.append(number)
        return torch.tensor(sentences, dtype=torch.long), torch.tensor(numbers, dtype=torch.long)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"accuracy": (prediction.argmax(-1) == target).float().mean()}

    @staticmethod
    def decode(sentence: Tensor, number: int | Tensor | None = None) -> str:
        """A sentence as words; with its target, the verb and "full" too."""
        text = " ".join(VOCAB[i] for i in sentence.tolist()).replace(" ,", ",")
        return text if number is None else f"{text} {VERBS[int(number)]} full"


def number_of(word: str) -> int | None:
    """0 for a singular noun, 1 for a plural one, None for any other word."""
    for pair in NOUNS:
        if word in pair:
            return pair.index(word)
    return None
