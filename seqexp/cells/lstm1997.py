"""The LSTM of Hochreiter & Schmidhuber (1997): memory cells in blocks, input and output gates,
and no forget gate."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqexp.cells.base import Recurrence, State


def g(z: Tensor) -> Tensor:
    """The cell input squashing of the paper's experiments, ``4σ(z) − 2``, in [−2, 2]."""
    return 4 * torch.sigmoid(z) - 2


def h(z: Tensor) -> Tensor:
    """The cell output squashing of the paper's experiments, ``2σ(z) − 1``, in [−1, 1]."""
    return 2 * torch.sigmoid(z) - 1


class LSTM1997Cell(Recurrence):
    """The 1997 LSTM: ``n_a`` memory cells in blocks of ``block_size`` that share one input gate
    and one output gate (block ``j(k)`` holds cell ``k``)::

        Γi<t> = σ(W_i [a<t-1>, x<t>] + b_i)          one per block
        Γo<t> = σ(W_o [a<t-1>, x<t>] + b_o)          one per block
        c̃<t>  = g(W_c [a<t-1>, x<t>] + b_c)          g(z) = 4σ(z) − 2
        c<t>   = c<t-1> + Γi<t>_j(k) * c̃<t>         the constant error carousel: no forget gate
        a<t>   = Γo<t>_j(k) * h(c<t>)                 h(z) = 2σ(z) − 1

    ``W_x`` and ``W_a`` stack the rows of ``c`` (``n_a``), ``i`` and ``o`` (``n_a / block_size``
    each). The paper's hidden layer also feeds the gates' activations back; here, as in the
    course's LSTM, only the cells' outputs ``a<t-1>`` recur. Every parameter starts uniform in
    ``±init_range``, as the paper's weights do, except the gates' biases where ``gate_bias`` is
    set: the paper starts input and output gates negatively biased, so that a cell's state does
    not drift (and its ``h`` saturate) before it has anything to store.

    Args: input_size ``n_x``; hidden_size ``n_a``, a multiple of ``block_size``; block_size, the
    cells per block; init_range; gate_bias, the initial ``b_i`` and ``b_o`` (``None``: uniform).
    State: ``(a, c)``, each (B, n_a); ``a<0> = c<0> = 0``.
    """

    gradient_groups = {"W_x": "input", "W_a": "recurrent", "b": "bias"}
    blocks = ("c", "i", "o")
    bridgeable = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        block_size: int = 1,
        init_range: float = 0.1,
        gate_bias: float | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if block_size < 1 or hidden_size % block_size:
            raise ValueError(
                f"cell.block_size must be a positive divisor of the hidden size {hidden_size} "
                f"(got {block_size})"
            )
        if init_range <= 0:
            raise ValueError(f"cell.init_range must be > 0 (got {init_range})")
        self.block_size = block_size
        self.num_blocks = hidden_size // block_size
        rows = hidden_size + 2 * self.num_blocks
        self.W_x = nn.Parameter(torch.empty(rows, input_size))
        self.W_a = nn.Parameter(torch.empty(rows, hidden_size))
        self.b = nn.Parameter(torch.empty(rows))
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        if gate_bias is not None:
            with torch.no_grad():
                self.b[hidden_size:].fill_(gate_bias)

    @classmethod
    def hidden_size_multiple(cls, block_size: int = 1, **options: Any) -> int:
        """The blocks split the cells evenly."""
        return max(block_size, 1)

    def project_input(self, x: Tensor) -> Tensor:
        """``W_x x<t> + b`` for every step at once: (..., n_x) -> (..., n_a + 2 n_blocks)."""
        return F.linear(x, self.W_x, self.b)

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        """``a<0> = 0``, ``c<0> = 0``."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros

    def per_cell(self, gate: Tensor) -> Tensor:
        """A block's gate repeated for each of its cells: (B, n_blocks) -> (B, n_a)."""
        return gate.repeat_interleave(self.block_size, dim=-1)

    def step(self, wx_t: Tensor, state: State) -> State:
        a_prev, c_prev = state
        c, i, o = (wx_t + a_prev @ self.W_a.T).split([self.hidden_size, self.num_blocks, self.num_blocks], -1)
        gamma_i = self.per_cell(torch.sigmoid(i))
        gamma_o = self.per_cell(torch.sigmoid(o))
        c_tilde = g(c)
        c = c_prev + gamma_i * c_tilde
        a = gamma_o * h(c)
        return a, c
