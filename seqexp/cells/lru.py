"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
Long Sequences"): a complex diagonal recurrence, initialised on a ring."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqexp.cells.base import LinearRecurrence


class LRUCell(LinearRecurrence):
    """LRU, with ``N`` complex states (``state_size``, default ``n_a``)::

        Λ    = exp(−exp(ν) + i·exp(θ))              (|λ_j| < 1 for every ν)
        γ    = exp(γ_log),  γ_log = log sqrt(1 − |Λ|²) at initialisation
        h<t> = Λ ⊙ h<t-1> + γ ⊙ (B x<t>)             (B complex, N × n_x)
        a<t> = Re(C h<t>) + D x<t>                   (C complex, n_a × N)

    Initialisation as the paper's: ``|λ|`` uniform on the ring ``[r_min, r_max]`` (in area),
    its phase uniform in ``[0, max_phase]``; ``B`` and ``C`` Glorot-like complex normal, ``D``
    standard normal. ``D`` is the paper's diagonal where ``n_x = n_a`` (the residual block, where
    the LRU is meant to run); a dense ``n_a × n_x`` matrix otherwise, as sizes then differ.
    """

    state_dtype_complex = True
    gradient_groups = {
        "nu_log": "recurrent",
        "theta_log": "recurrent",
        "gamma_log": "recurrent",
        "B_re": "input",
        "B_im": "input",
        "C_re": "output",
        "C_im": "output",
        "D": "output",
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int | None = None,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(
                f"cell.r_min and cell.r_max must satisfy 0 <= r_min < r_max <= 1 (got {r_min}, {r_max})"
            )
        if max_phase <= 0:
            raise ValueError(f"cell.max_phase must be > 0 (got {max_phase})")
        N = state_size or hidden_size
        self.N = N
        u1, u2 = torch.rand(N), torch.rand(N)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2)
        modulus = torch.exp(-torch.exp(nu_log))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)))
        self.B_re = nn.Parameter(torch.randn(N, input_size) / math.sqrt(2 * input_size))
        self.B_im = nn.Parameter(torch.randn(N, input_size) / math.sqrt(2 * input_size))
        self.C_re = nn.Parameter(torch.randn(hidden_size, N) / math.sqrt(N))
        self.C_im = nn.Parameter(torch.randn(hidden_size, N) / math.sqrt(N))
        diagonal = input_size == hidden_size
        self.D = nn.Parameter(torch.randn(hidden_size) if diagonal else torch.randn(hidden_size, input_size))

    def state_shape(self) -> tuple[int, ...]:
        return (self.N,)

    def eigenvalues(self) -> Tensor:
        """``Λ = exp(−exp(ν) + i·exp(θ))`` (N,)."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``Λ``, and ``γ ⊙ (B x)`` as one real product: ``γ B``'s real and imaginary rows
        interleaved, so that the product's columns are the complex result's memory."""
        gamma_B = torch.exp(self.gamma_log)[:, None, None] * torch.stack([self.B_re, self.B_im], dim=1)
        beta = (x @ gamma_B.flatten(0, 1).T).unflatten(-1, (self.N, 2))
        return self.eigenvalues(), torch.view_as_complex(beta)

    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        """``Re(C h) = C_re Re(h) − C_im Im(h)`` as one real product over ``h``'s memory, plus ``D x``."""
        C = torch.stack([self.C_re, -self.C_im], dim=-1).flatten(-2)
        Ch = torch.view_as_real(h).flatten(-2) @ C.T
        return Ch + (self.D * x if self.D.dim() == 1 else x @ self.D.T)
