"""Training a stack a few steps the same way everywhere, to compare what its kernels learn."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def trained(stack: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """``stack``'s parameters after one step of Adam with weight decay per batch, through a linear
    head on its summary (the same head for every stack: weights 0.1, bias 0)."""
    dtype = next(stack.parameters()).dtype
    head = nn.Linear(stack.output_size, 1, dtype=dtype)
    nn.init.constant_(head.weight, 0.1)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.Adam([*stack.parameters(), *head.parameters()], lr=1e-2, weight_decay=1e-3)
    for x, y in batches:
        optimizer.zero_grad()
        (head(stack(x)[1]).squeeze(-1) - y).square().mean().backward()
        optimizer.step()
    return {name: p.detach().clone() for name, p in stack.named_parameters()}
