"""The sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"): an LSTM with an
exponential input gate, a normaliser and a stabiliser, and head-wise recurrent weights."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqexp.cells.base import Recurrence, State


class SLSTMCell(Recurrence):
    """sLSTM, its recurrent matrices block-diagonal over ``num_heads`` heads::

        z̃, ĩ, f̃, õ = W_{z,i,f,o} x<t> + R_{z,i,f,o} h<t-1> + b_{z,i,f,o}
        m<t> = max(log σ(f̃) + m<t-1>, ĩ)              (stabiliser; m<t> = ĩ while n<t-1> = 0)
        i<t> = exp(ĩ − m<t>),  f<t> = exp(log σ(f̃) + m<t-1> − m<t>)
        c<t> = f<t> ⊙ c<t-1> + i<t> ⊙ tanh(z̃)
        n<t> = f<t> ⊙ n<t-1> + i<t>                    (normaliser)
        h<t> = σ(õ) ⊙ c<t> / n<t>
        a<t> = h<t>

    The forget gate is the sigmoid one and the stabiliser starts as in the paper's reference code
    (``slstm_forward_pointwise``); the stabiliser makes ``c/n`` the same as without it, but finite.
    Sequential: its gates read ``h<t-1>``, so no scan applies; on CPU in float32 the oneDNN kernel
    runs its time loop in C++ (``seqexp/kernels/onednn_lstm.cpp``), elsewhere this step.
    """

    gradient_groups = {"W": "input", "R": "recurrent", "b": "bias"}
    GATES = ("z", "i", "f", "o")

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 1) -> None:
        super().__init__(input_size, hidden_size)
        if num_heads < 1 or hidden_size % num_heads:
            raise ValueError(
                f"cell.num_heads must be a positive divisor of the hidden size {hidden_size} "
                f"(got {num_heads})"
            )
        self.num_heads = num_heads
        head = hidden_size // num_heads
        self.W = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.R = nn.Parameter(torch.empty(4, num_heads, head, head))
        self.b = nn.Parameter(torch.zeros(4 * hidden_size))
        nn.init.uniform_(self.W, -(input_size**-0.5), input_size**-0.5)
        nn.init.uniform_(self.R, -(head**-0.5), head**-0.5)
        with torch.no_grad():  # forget gates start open: b_f spread over [3, 6] (seqexp's choice)
            self.b[2 * hidden_size : 3 * hidden_size] = torch.linspace(3.0, 6.0, hidden_size)

    @classmethod
    def hidden_size_multiple(cls, num_heads: int = 1, **options: Any) -> int:
        """The heads split the hidden units evenly."""
        return max(num_heads, 1)

    def project_input(self, x: Tensor) -> Tensor:
        """``W x<t> + b`` for every step at once."""
        return F.linear(x, self.W, self.b)

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        """``h, c, n, m`` all zero."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros, zeros, zeros

    def recurrent(self, h: Tensor) -> Tensor:
        """``R h`` for the four gates, head by head: (B, n_a) -> (B, 4 n_a)."""
        heads = h.unflatten(-1, (self.num_heads, -1))
        return torch.einsum("bhj,ghkj->bghk", heads, self.R).flatten(1)

    def dense_recurrent(self) -> Tensor:
        """``R`` as one (4 n_a, n_a) matrix, block-diagonal over the heads, for the kernels."""
        return torch.cat([torch.block_diag(*gate) for gate in self.R])

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]]:
        return "slstm", {"W": self.W, "b": self.b, "R": self.dense_recurrent()}

    def step(self, u_t: Tensor, state: State) -> State:
        h, c, n, m = state
        z, i, f, o = (u_t + self.recurrent(h)).chunk(4, dim=-1)
        log_f = F.logsigmoid(f)
        m_new = torch.where(n == 0, i, torch.maximum(log_f + m, i))
        i_gate = torch.exp(i - m_new)
        f_gate = torch.exp(log_f + m - m_new)
        c = f_gate * c + i_gate * torch.tanh(z)
        n = f_gate * n + i_gate
        h = torch.sigmoid(o) * c / n
        return h, c, n, m_new
