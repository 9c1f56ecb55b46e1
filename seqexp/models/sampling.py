"""Sampling novel sequences from a language model, as the course describes: ``a<0> = 0``,
``x<1>`` the start token; draw ``y<t>`` from ``ŷ<t>`` (not argmax), feed it back as ``x<t+1>``;
stop at ``<EOS>`` or a maximum length. Pure torch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from seqexp.checks import at_least
from seqexp.layers.recurrent import StackState

Step = Callable[[Tensor, StackState | None], tuple[Tensor, StackState]]
"""One step of a model: tokens ``x<t>`` (B,) and the state -> logits of ``ŷ<t>`` (B, V) and the new state."""


def draw(
    logits: Tensor,
    temperature: float = 1.0,
    reject: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token per row of ``logits`` (B, V), drawn from ``softmax(logits / temperature)``.

    ``reject``: a token that is redrawn whenever it comes out (``<UNK>``): the same as drawing
    from the distribution with that token's probability set to zero and the rest renormalised."""
    if temperature <= 0:
        raise ValueError(f"sampling.temperature must be > 0 (got {temperature})")
    scaled = logits / temperature
    if reject is not None:
        scaled = scaled.index_fill(-1, torch.tensor([reject], device=logits.device), float("-inf"))
    return torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(-1)


def sample(
    step: Step,
    count: int,
    start: int,
    end: int,
    max_length: int,
    temperature: float = 1.0,
    reject: int | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """``count`` sequences of token ids, each up to its first ``end`` (left out) or ``max_length``
    tokens. ``step`` starts from state ``None`` (``a<0> = 0``) and ``x<1> = start``."""
    at_least("sampling.max_length", max_length, 1)
    x = torch.full((count,), start, dtype=torch.long)
    state: StackState | None = None
    drawn, done = [], torch.zeros(count, dtype=torch.bool)
    for _ in range(max_length):
        logits, state = step(x, state)
        x = draw(logits, temperature, reject, generator)
        drawn.append(x)
        done |= x == end
        if done.all():
            break
    rows = torch.stack(drawn, 1).tolist()
    return [row[: row.index(end)] if end in row else row for row in rows]
