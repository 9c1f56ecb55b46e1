"""The LSTM cell, and the LSTM with peephole connections."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqexp.cells.base import RecurrentCell, State


class LSTMCell(RecurrentCell):
    """The LSTM of the course::

        c̃<t> = tanh(W_c [a<t-1>, x<t>] + b_c)
        Γu    = σ(W_u [a<t-1>, x<t>] + b_u)
        Γf    = σ(W_f [a<t-1>, x<t>] + b_f)
        Γo    = σ(W_o [a<t-1>, x<t>] + b_o)
        c<t>  = Γu * c̃<t> + Γf * c<t-1>
        a<t>  = Γo * tanh(c<t>)

    Blocks are stacked as torch.nn.LSTM stacks them (i, f, g, o = u, f, c, o).
    ``forget_bias`` is the initial value of ``b_f``.
    """

    blocks = ("u", "f", "c", "o")
    state_size = 2
    native = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.block(self.b, "f").fill_(self.forget_bias)

    def after_scheme(self) -> None:
        """An initialisation scheme keeps ``b_f`` at ``forget_bias`` (and peepholes at zero)."""
        super().after_scheme()
        self.block(self.b, "f").fill_(self.forget_bias)

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]]:
        return "lstm", {"W_x": self.W_x, "b": self.b, "W_a": self.W_a, "peepholes": None}

    def step(self, wx_t: Tensor, state: State) -> State:
        a_prev, c_prev = state
        u, f, c, o = (wx_t + a_prev @ self.W_a.T).chunk(4, dim=-1)
        c_tilde = torch.tanh(c)
        gamma_u = torch.sigmoid(u)
        gamma_f = torch.sigmoid(f)
        gamma_o = torch.sigmoid(o)
        c = gamma_u * c_tilde + gamma_f * c_prev
        a = gamma_o * torch.tanh(c)
        return a, c


class PeepholeLSTMCell(LSTMCell):
    """LSTM whose gates also see the cell state (Gers & Schmidhuber 2000)::

        Γu    = σ(W_u [a<t-1>, x<t>] + p_u * c<t-1> + b_u)
        Γf    = σ(W_f [a<t-1>, x<t>] + p_f * c<t-1> + b_f)
        c<t>  = Γu * c̃<t> + Γf * c<t-1>
        Γo    = σ(W_o [a<t-1>, x<t>] + p_o * c<t>   + b_o)
        a<t>  = Γo * tanh(c<t>)

    ``p_u``, ``p_f``, ``p_o`` are vectors (diagonal weights). With ``p = 0`` it is the LSTM.
    """

    native = None

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size, forget_bias)
        self.p_u = nn.Parameter(torch.zeros(hidden_size))
        self.p_f = nn.Parameter(torch.zeros(hidden_size))
        self.p_o = nn.Parameter(torch.zeros(hidden_size))

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]]:
        peepholes = torch.stack([self.p_u, self.p_f, self.p_o])
        return "lstm", {"W_x": self.W_x, "b": self.b, "W_a": self.W_a, "peepholes": peepholes}

    def step(self, wx_t: Tensor, state: State) -> State:
        a_prev, c_prev = state
        u, f, c, o = (wx_t + a_prev @ self.W_a.T).chunk(4, dim=-1)
        c_tilde = torch.tanh(c)
        gamma_u = torch.sigmoid(u + self.p_u * c_prev)
        gamma_f = torch.sigmoid(f + self.p_f * c_prev)
        c = gamma_u * c_tilde + gamma_f * c_prev
        gamma_o = torch.sigmoid(o + self.p_o * c)
        a = gamma_o * torch.tanh(c)
        return a, c
