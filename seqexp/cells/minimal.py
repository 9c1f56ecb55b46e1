"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates of ``x<t>`` alone, so
the recurrence is linear in ``h`` and a scan runs it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqexp.cells.base import LinearRecurrence


def g(x: Tensor) -> Tensor:
    """The paper's activation for the candidate: ``x + 0.5`` for ``x >= 0``, ``σ(x)`` below, so that
    ``h̃`` is positive and has a logarithm (the log-space scan)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """``log g(x)``, computed stably: ``log(relu(x) + 0.5)`` for ``x >= 0``, ``−softplus(−x)`` below."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def log_space_scan(log_coefficients: Tensor, log_values: Tensor) -> Tensor:
    """The paper's parallel scan (Heinsen 2023) of ``h<t> = a<t> h<t-1> + b<t>`` from ``h<0> = 0``,
    in log space: ``h<t> = exp(a*<t> + logcumsumexp(log b − a*)<t>)``, ``a* = cumsum(log a)``."""
    a_star = log_coefficients.cumsum(0)
    return torch.exp(a_star + torch.logcumsumexp(log_values - a_star, dim=0))


class MinGRUCell(LinearRecurrence):
    """minGRU::

        z<t> = σ(Linear_z(x<t>))
        h̃<t> = g(Linear_h(x<t>))
        h<t> = (1 − z<t>) ⊙ h<t-1> + z<t> ⊙ h̃<t>
        a<t> = h<t>

    :meth:`paper_scan` is the paper's log-space form, the reference the scan is tested against.
    """

    gradient_groups = {"W_z": "input", "W_h": "input", "b_z": "bias", "b_h": "bias"}

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        gates = nn.Linear(
            input_size, 2 * hidden_size
        )  # torch.nn.Linear's initialisation, as the paper's code
        W_z, W_h = gates.weight.detach().chunk(2)
        b_z, b_h = gates.bias.detach().chunk(2)
        self.W_z, self.W_h = nn.Parameter(W_z.clone()), nn.Parameter(W_h.clone())
        self.b_z, self.b_h = nn.Parameter(b_z.clone()), nn.Parameter(b_h.clone())

    def state_shape(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def gates(self) -> tuple[Tensor, Tensor]:
        """``[W_z; W_h]`` and ``[b_z; b_h]``: ``[Linear_z(x) | Linear_h(x)]`` is one product."""
        return torch.cat([self.W_z, self.W_h]), torch.cat([self.b_z, self.b_h])

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = F.linear(x, *self.gates()).chunk(2, dim=-1)
        z = torch.sigmoid(k_z)
        return 1 - z, z * g(k_h)

    def scan_equations(self, x: Tensor) -> tuple[str, dict[str, Tensor]]:
        W, b = self.gates()
        return "mingru", {"x": x, "W": W, "b": b}

    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        return h

    def paper_scan(self, x: Tensor) -> Tensor:
        """``h<1..T>`` from ``h<0> = 0`` in the paper's log space: ``log z = −softplus(−k)``,
        ``log(1 − z) = −softplus(k)``."""
        k = F.linear(x, self.W_z, self.b_z)
        return log_space_scan(-F.softplus(k), -F.softplus(-k) + log_g(F.linear(x, self.W_h, self.b_h)))


class MinLSTMCell(LinearRecurrence):
    """minLSTM, with the paper's time-independent normalisation of its two gates::

    f<t> = σ(Linear_f(x<t>)),  i<t> = σ(Linear_i(x<t>))
    f'<t> = f<t> / (f<t> + i<t>),  i'<t> = i<t> / (f<t> + i<t>)
    h̃<t> = g(Linear_h(x<t>))
    h<t> = f'<t> ⊙ h<t-1> + i'<t> ⊙ h̃<t>
    a<t> = h<t>
    """

    gradient_groups = {
        "W_f": "input",
        "W_i": "input",
        "W_h": "input",
        "b_f": "bias",
        "b_i": "bias",
        "b_h": "bias",
    }

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        gates = nn.Linear(input_size, 3 * hidden_size)
        W_f, W_i, W_h = gates.weight.detach().chunk(3)
        b_f, b_i, b_h = gates.bias.detach().chunk(3)
        self.W_f, self.W_i, self.W_h = (nn.Parameter(w.clone()) for w in (W_f, W_i, W_h))
        self.b_f, self.b_i, self.b_h = (nn.Parameter(b.clone()) for b in (b_f, b_i, b_h))

    def state_shape(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def gates(self) -> tuple[Tensor, Tensor]:
        """``[W_f; W_i; W_h]`` and ``[b_f; b_i; b_h]``: the three linear maps are one product."""
        return torch.cat([self.W_f, self.W_i, self.W_h]), torch.cat([self.b_f, self.b_i, self.b_h])

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = F.linear(x, *self.gates()).chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(k_h)

    def scan_equations(self, x: Tensor) -> tuple[str, dict[str, Tensor]]:
        W, b = self.gates()
        return "minlstm", {"x": x, "W": W, "b": b}

    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        return h

    def paper_scan(self, x: Tensor) -> Tensor:
        """``h<1..T>`` from ``h<0> = 0`` in the paper's log space:
        ``d = softplus(−k_f) − softplus(−k_i)``, ``log f' = −softplus(d)``, ``log i' = −softplus(−d)``."""
        d = F.softplus(-F.linear(x, self.W_f, self.b_f)) - F.softplus(-F.linear(x, self.W_i, self.b_i))
        return log_space_scan(-F.softplus(d), -F.softplus(-d) + log_g(F.linear(x, self.W_h, self.b_h)))
