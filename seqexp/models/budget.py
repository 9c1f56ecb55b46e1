"""Model sizes: a model's trainable parameters, and the hidden size that spends a parameter budget."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from torch import nn

from seqexp.checks import ConfigError

TOLERANCE = 0.05
"""How far from ``model.param_budget`` a model's parameter count may land, relatively."""


def trainable_parameters(model: nn.Module) -> int:
    """The number of parameters the optimizer trains."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def hidden_size_for_budget(
    count: Callable[[int], int], budget: int, tolerance: float = TOLERANCE, multiple: int = 1
) -> int:
    """The hidden size ``n``, a multiple of ``multiple``, whose model's ``count(n)`` parameters is
    nearest ``budget`` (by bisection; ``count`` must grow with ``n``). A :class:`ConfigError` if
    none lands within ``tolerance`` of it."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"model.param_budget must be null or a positive integer (got {budget!r})")
    count = cache(count)
    high = multiple
    while count(high) < budget:
        high *= 2
    low = high // 2 if high > multiple else 0  # count(low) < budget <= count(high)
    while high - low > multiple:
        middle = (low + high) // 2 // multiple * multiple
        low, high = (middle, high) if count(middle) < budget else (low, middle)
    nearest = min((n for n in (low, high) if n > 0), key=lambda n: abs(count(n) - budget))
    if abs(count(nearest) - budget) > tolerance * budget:
        sizes = ", ".join(f"hidden_size={n} has {count(n)}" for n in (low, high) if n > 0)
        which = "hidden size" if multiple == 1 else f"hidden size (a multiple of {multiple})"
        raise ConfigError(
            f"model.param_budget={budget}: no {which} gives this model {budget} parameters within "
            f"{tolerance:.0%} ({sizes}); choose another budget"
        )
    return nearest
