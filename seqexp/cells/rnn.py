"""The basic RNN cell."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from seqexp.cells.base import RecurrentCell, State

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class RNNCell(RecurrentCell):
    """``a<t> = g(W_aa a<t-1> + W_ax x<t> + b_a)``, with ``g`` tanh or ReLU."""

    blocks = ("a",)
    native = nn.RNN

    def __init__(
        self, input_size: int, hidden_size: int, nonlinearity: Literal["tanh", "relu"] = "tanh"
    ) -> None:
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"cell.nonlinearity must be one of {sorted(ACTIVATIONS)} (got {nonlinearity!r})")
        super().__init__(input_size, hidden_size)
        self.nonlinearity = nonlinearity
        self.g = ACTIVATIONS[nonlinearity]

    def native_options(self) -> dict[str, Any]:
        return {"nonlinearity": self.nonlinearity}

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]]:
        return f"rnn_{self.nonlinearity}", {"W_x": self.W_x, "b": self.b, "W_a": self.W_a}

    def step(self, wx_t: Tensor, state: State) -> State:
        (a_prev,) = state
        a = self.g(wx_t + a_prev @ self.W_a.T)
        return (a,)
