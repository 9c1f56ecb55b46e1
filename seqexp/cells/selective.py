"""A selective state-space model: Mamba's S6 layer (Gu & Dao 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces"), whose transitions depend on the input."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqexp.cells.base import LinearRecurrence


class SelectiveSSMCell(LinearRecurrence):
    """S6 over ``n_a`` channels, each with a state of ``N`` (``state_size``) values::

        u<t>  = W_u x<t>                                     (Mamba's input projection)
        Δ<t>  = softplus(W_Δ↑ (W_Δ↓ u<t>) + b_Δ)             (n_a,), rank ``dt_rank``
        B<t>  = W_B u<t>,  C<t> = W_C u<t>                    (N,) each
        A     = −exp(A_log)                                   (n_a, N), diagonal per channel
        h<t>  = exp(Δ<t> A) ⊙ h<t-1> + (Δ<t> ⊙ u<t>) B<t>     (n_a, N)
        a<t>  = h<t> C<t> + D ⊙ u<t>

    Initialisation as Mamba's: ``A = −(1, 2, …, N)`` per channel (S4D-real), ``D = 1``, ``Δ``'s
    bias so that ``Δ`` starts log-uniform in ``[dt_min, dt_max]``. Of the Mamba block around it,
    the causal convolution and the SiLU gate are left to the topology (the residual block's gated
    MLP): this is the selective scan itself.
    """

    gradient_groups = {
        "W_u": "input",
        "A_log": "recurrent",
        "D": "output",
        "W_dt_down": "selection",
        "W_dt_up": "selection",
        "b_dt": "selection",
        "W_B": "selection",
        "W_C": "selection",
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int = 16,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if state_size < 1:
            raise ValueError(f"cell.state_size must be a positive integer (got {state_size})")
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                f"cell.dt_min and cell.dt_max must satisfy 0 < dt_min <= dt_max (got {dt_min}, {dt_max})"
            )
        self.N = state_size
        rank = dt_rank or math.ceil(hidden_size / 16)
        self.W_u = nn.Parameter(nn.Linear(input_size, hidden_size, bias=False).weight.detach().clone())
        self.W_dt_down = nn.Parameter(nn.Linear(hidden_size, rank, bias=False).weight.detach().clone())
        self.W_B = nn.Parameter(nn.Linear(hidden_size, state_size, bias=False).weight.detach().clone())
        self.W_C = nn.Parameter(nn.Linear(hidden_size, state_size, bias=False).weight.detach().clone())
        self.W_dt_up = nn.Parameter(torch.empty(hidden_size, rank).uniform_(-(rank**-0.5), rank**-0.5))
        dt = torch.exp(torch.rand(hidden_size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.b_dt = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state_size + 1.0)).repeat(hidden_size, 1))
        self.D = nn.Parameter(torch.ones(hidden_size))

    def state_shape(self) -> tuple[int, ...]:
        return (self.hidden_size, self.N)

    def selection(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``u``, ``Δ``, ``B`` and ``C`` for every step of ``x``; ``W_Δ↓ u``, ``B`` and ``C`` in one
        product, as Mamba's ``x_proj``."""
        u = x @ self.W_u.T
        selecting = torch.cat([self.W_dt_down, self.W_B, self.W_C])
        low, B, C = (u @ selecting.T).split([self.W_dt_down.shape[0], self.N, self.N], dim=-1)
        return u, F.softplus(F.linear(low, self.W_dt_up, self.b_dt)), B, C

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, dt, B, _ = self.selection(x)
        A = -torch.exp(self.A_log)
        return torch.exp(dt[..., None] * A), (dt * u)[..., None] * B[..., None, :]

    def scan_equations(self, x: Tensor) -> tuple[str, dict[str, Tensor]]:
        u, dt, B, C = self.selection(x)
        return "selective", {"u": u, "dt": dt, "A": -torch.exp(self.A_log), "B": B, "C": C, "D": self.D}

    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        u = x @ self.W_u.T  # u and C alone: Δ and B are the scan's, not needed again here
        C = u @ self.W_C.T
        return (h * C[..., None, :]).sum(-1) + self.D * u  # C<t> · h<t>, per channel
