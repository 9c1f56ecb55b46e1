"""Language modelling at character or word level: the course's one-to-many problem, trained with
per-step cross-entropy on the next token and sampled one token at a time."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Split, Task, TaskSpec
from seqexp.tasks.corpus import default_corpus

EOS, UNK = "<EOS>", "<UNK>"
"""Token ids 0 and 1. ``<EOS>`` ends every line of the text, and is the start token ``x<1>``."""
LEVELS = ("char", "word")
WORD = re.compile(r"\w+|[^\w\s]")
"""A word: a run of letters and digits, or one punctuation mark."""
SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}
"""The corpus in three consecutive parts, in this order: training, validation and test text."""
SOLVED_SHARE = 0.6
"""Solved once the cross-entropy is below this share of the unigram model's (the baseline's)."""
MIN_SENTENCE_STARTS = 100


def tokenize(text: str, level: str) -> list[str]:
    """Characters or words of each line, each line followed by ``<EOS>``."""
    tokens: list[str] = []
    for line in text.splitlines():
        tokens += list(line) if level == "char" else WORD.findall(line)
        tokens.append(EOS)
    return tokens


def vocabulary(tokens: list[str], size: int | None) -> list[str]:
    """``<EOS>``, ``<UNK>``, then the ``size`` most frequent tokens (all, if ``None``), most
    frequent first, ties in alphabetical order."""
    counts = Counter(t for t in tokens if t not in (EOS, UNK))
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return [EOS, UNK, *ranked[:size]]


class LanguageModelTask(Task):
    """Predict each next token of a text: ``P(y<1..T>) = Π_t P(y<t> | y<1..t-1>)``.

    The text is the UTF-8 file at ``path``, or else :func:`default_corpus` of ``corpus_sentences``
    sentences. It is cut into three consecutive parts (:data:`SHARES`): the training, validation
    and test text, no token in two of them; the vocabulary (``vocab_size`` most frequent words at
    word level, every character at char level, plus ``<EOS>`` and ``<UNK>``) comes from the
    training text. An example is ``seq_len + 1`` consecutive tokens of one part that start after an
    ``<EOS>`` (anywhere, if the part has fewer than 100 lines): ``x = tokens[:-1]``,
    ``y = tokens[1:]``, so ``x<1> = <EOS>``, the start token. ``generate`` reads the training text.

    Metric: ``bits_per_char`` (cross-entropy / ln 2) or ``perplexity`` (e^cross-entropy), per
    validation batch, averaged. Baseline: the unigram model's, which ignores the context. Solved
    once the cross-entropy is below 60% of the unigram model's."""

    length_key = None
    """``seq_len`` is the context a prediction may use, not a distance the text makes it bridge."""

    def __init__(
        self,
        seq_len: int = 64,
        train_size: int = 10_000,
        val_size: int = 1_000,
        level: str = "char",
        path: str | None = None,
        vocab_size: int = 1000,
        corpus_sentences: int = 20_000,
        corpus_seed: int = 0,
        test_size: int | None = None,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"task.level must be one of {list(LEVELS)} (got {level!r})")
        at_least("task.seq_len", seq_len, 1)
        at_least("task.vocab_size", vocab_size, 1)
        super().__init__(seq_len, train_size, val_size, test_size)
        self.level = level
        text = read_text(path) if path is not None else default_corpus(corpus_sentences, corpus_seed)
        tokens = tokenize(text, level)
        train_end = int(len(tokens) * SHARES["train"])
        val_end = int(len(tokens) * (SHARES["train"] + SHARES["val"]))
        self.vocab = vocabulary(tokens[:train_end], vocab_size if level == "word" else None)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        ids = torch.tensor([self.index.get(t, 1) for t in tokens], dtype=torch.long)
        eos = torch.zeros(1, dtype=torch.long)  # each text starts as if after a line
        parts = (ids[:train_end], ids[train_end:val_end], ids[val_end:])
        self.splits = {split: torch.cat([eos, part]) for split, part in zip(SHARES, parts, strict=True)}
        """The training, validation and test text, as token ids."""
        for split, text in self.splits.items():
            if len(text) < seq_len + 1:
                name = {"train": "training", "val": "validation", "test": "test"}[split]
                raise ValueError(
                    f"task.seq_len={seq_len} is longer than the {name} text ({len(text) - 1} tokens)"
                )
        self.spec = TaskSpec(
            input_size=len(self.vocab),
            output_size=len(self.vocab),
            shape="one_to_many",
            metric="bits_per_char" if level == "char" else "perplexity",
            baseline=self.from_xent(unigram_xent(self.splits["train"])),
            solved_at=self.from_xent(SOLVED_SHARE * unigram_xent(self.splits["train"])),
            tokens=True,
            start_token=0,
            end_token=0,
            unknown_token=1,
        )

    def from_xent(self, xent: float | Tensor) -> float | Tensor:
        """A cross-entropy in nats as the task's metric: bits per character or perplexity."""
        if self.level == "char":
            return xent / math.log(2)
        return torch.exp(xent) if isinstance(xent, Tensor) else math.exp(xent)

    def starts(self, split: Tensor) -> Tensor:
        """Where examples may start: after an ``<EOS>``, with room for ``seq_len + 1`` tokens."""
        room = len(split) - self.seq_len
        after_eos = (split[:room] == 0).nonzero().squeeze(1)
        return after_eos if len(after_eos) >= MIN_SENTENCE_STARTS else torch.arange(room)

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        return self.examples("train", n, seed)

    def examples(self, split: Split, n: int, seed: int) -> tuple[Tensor, Tensor]:
        text = self.splits[split]
        starts = self.starts(text)
        g = torch.Generator().manual_seed(seed)
        chosen = starts[torch.randint(len(starts), (n,), generator=g)]
        windows = text[chosen[:, None] + torch.arange(self.seq_len + 1)]
        return windows[:, :-1], windows[:, 1:]

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction.flatten(0, 1), target.flatten())

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        xent = self.loss(prediction, target)
        return {"xent": xent, self.spec.metric: self.from_xent(xent)}

    def from_means(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        """The metric of the mean cross-entropy over all tokens (every example has ``seq_len``)."""
        return means | {self.spec.metric: self.from_xent(means["xent"])}

    def detokenize(self, ids: list[int]) -> str:
        """Token ids as text: characters joined, or words joined by spaces; ``<EOS>`` as a new line."""
        tokens = ["\n" if i == 0 else self.vocab[i] for i in ids]
        return "".join(tokens) if self.level == "char" else " ".join(tokens).replace(" \n ", "\n")


def read_text(path: str) -> str:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"task.path must be a UTF-8 text file (got {path!r}: no such file)")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"task.path must be a UTF-8 text file ({path!r}: {error})") from None


def unigram_xent(ids: Tensor) -> float:
    """The cross-entropy (nats) of the tokens' own frequencies: the entropy of the unigram model."""
    p = torch.bincount(ids).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())
