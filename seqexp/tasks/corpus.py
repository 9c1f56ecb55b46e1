"""The default text of the language-model task: English-like sentences from a small seeded grammar,
so that ``task=lm`` trains with no download."""

from __future__ import annotations

import random

NOUNS = (
    "cat", "dog", "bird", "child", "teacher", "farmer", "king", "queen", "river", "garden",
    "house", "tree", "ship", "horse", "book", "letter", "village", "mountain", "window", "song",
)  # fmt: skip
ADJECTIVES = ("old", "small", "happy", "quiet", "green", "tired", "bright", "strange", "little", "brave")
VERBS = ("saw", "found", "liked", "followed", "heard", "carried", "painted", "watched", "remembered", "built")
INTRANSITIVE = ("slept", "laughed", "waited", "sang", "walked", "smiled")
PREPOSITIONS = ("near", "behind", "under", "beside", "across")
NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jonas",
    "Kira", "Leo", "Mona", "Nils", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara",
    "Ugo", "Vera", "Wim", "Xenia", "Yann", "Zora", "Abel", "Bruno", "Cosmo", "Dagny",
)  # fmt: skip
"""Many names, each rare: at word level with a small vocabulary most of them become ``<UNK>``."""


def zipf(rng: random.Random, words: tuple[str, ...]) -> str:
    """One of ``words``, the k-th with probability proportional to 1/k."""
    return rng.choices(words, weights=[1 / (k + 1) for k in range(len(words))])[0]


def noun_phrase(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return zipf(rng, NAMES)
    adjective = f"{zipf(rng, ADJECTIVES)} " if rng.random() < 0.5 else ""
    return f"the {adjective}{zipf(rng, NOUNS)}"


def sentence(rng: random.Random) -> str:
    """E.g. "the old cat saw Anna near the river." or "the brave king slept, and Leo sang."."""
    subject = noun_phrase(rng)
    if rng.random() < 0.3:
        clause = f"{subject} {zipf(rng, INTRANSITIVE)}"
    else:
        clause = f"{subject} {zipf(rng, VERBS)} {noun_phrase(rng)}"
    if rng.random() < 0.4:
        clause += f" {zipf(rng, PREPOSITIONS)} {noun_phrase(rng)}"
    if rng.random() < 0.2:
        clause += f", and {noun_phrase(rng)} {zipf(rng, INTRANSITIVE)}"
    text = f"{clause}."
    return text[0].upper() + text[1:]


def default_corpus(sentences: int, seed: int = 0) -> str:
    """``sentences`` lines of text, a function of ``seed``."""
    rng = random.Random(seed)
    return "\n".join(sentence(rng) for _ in range(sentences)) + "\n"
