"""What joins an encoder to a decoder: additive attention over the encoder's states, and the bridge
from the encoder's last state to the decoder's first."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqexp.layers.recurrent import StackState


class AdditiveAttention(nn.Module):
    """Bahdanau attention: ``e<t,t'> = v · tanh(W_s s<t-1> + W_h a<t'>)``,
    ``α<t,t'> = softmax over t' of e<t,t'>``, ``context<t> = Σ_t' α<t,t'> a<t'>``; the softmax
    runs over the source's real positions only (``α`` is 0 on padding)."""

    def __init__(self, state_size: int, memory_size: int, size: int) -> None:
        super().__init__()
        self.W_s = nn.Linear(state_size, size, bias=False)
        self.W_h = nn.Linear(memory_size, size)
        self.v = nn.Linear(size, 1, bias=False)

    def forward(self, s: Tensor, memory: Tensor, keys: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``s`` (B, n_s), ``memory`` the encoder states (B, T_x, n_h), ``keys`` their ``W_h a<t'>``,
        ``mask`` the real (not padding) positions (B, T_x) or ``None`` -> the context (B, n_h) and
        ``α`` (B, T_x)."""
        e = self.v(torch.tanh(self.W_s(s)[:, None] + keys)).squeeze(-1)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        alpha = e.softmax(-1)
        return torch.einsum("bt,bth->bh", alpha, memory), alpha


class Bridge(nn.Module):
    """The encoder's last state as the decoder's first: as it is from a unidirectional encoder;
    from a bidirectional one, ``tanh(W [a→<T_x>, a←<1>] + b)`` per layer (and so for ``c``)."""

    def __init__(self, num_directions: int, hidden_size: int, state_size: int) -> None:
        super().__init__()
        self.num_directions = num_directions
        self.project = nn.ModuleList(
            nn.Linear(num_directions * hidden_size, hidden_size)
            for _ in range(state_size if num_directions == 2 else 0)
        )

    def forward(self, state: StackState) -> StackState:
        if self.num_directions == 1:
            return state
        bridged = []
        for s, project in zip(state, self.project, strict=True):
            layers, batch, n_a = s.shape[0] // 2, s.shape[1], s.shape[2]
            both = s.view(layers, 2, batch, n_a).permute(0, 2, 1, 3).reshape(layers, batch, 2 * n_a)
            bridged.append(torch.tanh(project(both)))
        return tuple(bridged)
