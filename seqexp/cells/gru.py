"""The GRU cells: simplified (update gate only) and full (update and relevance gates)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqexp.cells.base import RecurrentCell, State


class SimpleGRUCell(RecurrentCell):
    """The course's simplified GRU::

    c̃<t> = tanh(W_c [c<t-1>, x<t>] + b_c)
    Γu    = σ(W_u [c<t-1>, x<t>] + b_u)
    c<t>  = Γu * c̃<t> + (1 − Γu) * c<t-1>
    a<t>  = c<t>
    """

    blocks = ("u", "c")

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]]:
        return "gru_simple", {"W_x": self.W_x, "b": self.b, "W_a": self.W_a}

    def step(self, wx_t: Tensor, state: State) -> State:
        (c_prev,) = state
        u, c = (wx_t + c_prev @ self.W_a.T).chunk(2, dim=-1)
        c_tilde = torch.tanh(c)
        gamma_u = torch.sigmoid(u)
        c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
        return (c,)


class GRUCell(RecurrentCell):
    """The full GRU. With ``reset_after=False`` it is the course's form (Cho et al. 2014)::

        c̃<t> = tanh(W_c [Γr * c<t-1>, x<t>] + b_c)
        Γu    = σ(W_u [c<t-1>, x<t>] + b_u)
        Γr    = σ(W_r [c<t-1>, x<t>] + b_r)
        c<t>  = Γu * c̃<t> + (1 − Γu) * c<t-1>
        a<t>  = c<t>

    With ``reset_after=True`` the relevance gate acts after the recurrent product, as in
    torch.nn.GRU and cuDNN: ``c̃<t> = tanh(W_cx x<t> + b_c + Γr * (W_cc c<t-1> + b_cc))``.
    Blocks are stacked as torch.nn.GRU stacks them (r, z, n = r, u, c; torch's z is 1 − Γu).
    """

    blocks = ("r", "u", "c")

    def __init__(self, input_size: int, hidden_size: int, reset_after: bool = False) -> None:
        self.reset_after = reset_after
        super().__init__(input_size, hidden_size)
        if reset_after:
            self.b_cc = nn.Parameter(torch.empty(hidden_size))
            nn.init.uniform_(self.b_cc, -(hidden_size**-0.5), hidden_size**-0.5)

    @property
    def native(self) -> type[nn.RNNBase] | None:  # type: ignore[override]
        return nn.GRU if self.reset_after else None

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]] | None:
        """The course form has seqexp's kernel; torch's form runs on torch.nn.GRU."""
        return None if self.reset_after else ("gru", {"W_x": self.W_x, "b": self.b, "W_a": self.W_a})

    def step(self, wx_t: Tensor, state: State) -> State:
        (c_prev,) = state
        n_a = self.hidden_size
        wx_ru, wx_c = wx_t.split((2 * n_a, n_a), dim=-1)
        W_a_ru, W_a_c = self.W_a.split((2 * n_a, n_a))
        r, u = (wx_ru + c_prev @ W_a_ru.T).chunk(2, dim=-1)
        gamma_r = torch.sigmoid(r)
        gamma_u = torch.sigmoid(u)
        if self.reset_after:
            c_tilde = torch.tanh(wx_c + gamma_r * (c_prev @ W_a_c.T + self.b_cc))
        else:
            c_tilde = torch.tanh(wx_c + (gamma_r * c_prev) @ W_a_c.T)
        c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
        return (c,)

    def native_weights(self) -> dict[str, Tensor]:
        """torch's update gate is ``z = 1 − Γu = σ(−(...))``: the u block changes sign."""
        n_a = self.hidden_size
        sign = self.b.new_ones(3 * n_a)
        self.block(sign, "u").fill_(-1.0)
        return {
            "weight_ih": sign[:, None] * self.W_x,
            "weight_hh": sign[:, None] * self.W_a,
            "bias_ih": sign * self.b,
            "bias_hh": torch.cat([self.b_cc.new_zeros(2 * n_a), self.b_cc]),
        }

    @torch.no_grad()
    def load_native_weights(self, weights: dict[str, Tensor]) -> None:
        super().load_native_weights(weights)
        for p in (self.W_x, self.W_a):
            self.block(p, "u").neg_()
        bias = weights["bias_ih"] + weights["bias_hh"]
        self.block(self.b, "u").copy_(-self.block(bias, "u"))
        self.block(self.b, "c").copy_(self.block(weights["bias_ih"], "c"))
        self.b_cc.copy_(self.block(weights["bias_hh"], "c"))
