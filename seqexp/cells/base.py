"""What every recurrent cell shares: the input projection, the state, the time loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]
"""A cell's state; its first element is always the activation ``a<t>``."""


class RecurrentCell(nn.Module, ABC):
    """A recurrence ``state<t> = step(W_x x<t> + b, state<t-1>)`` in the course notation.

    ``W [a, x]`` is split into ``W_x x + W_a a``: ``W_x x + b`` is computed for every time
    step in one matrix product (:meth:`project_input`), and :meth:`step` only adds the
    recurrent part and does the element-wise gate math. Rows of ``W_x``, ``W_a`` and ``b``
    hold the blocks named in :attr:`blocks`, in that order.
    """

    blocks: tuple[str, ...]
    """Names of the stacked weight blocks, e.g. ``("u", "f", "c", "o")``."""
    state_size: int = 1
    """How many tensors of size ``n_a`` the state holds (``a`` alone, or ``a`` and ``c``)."""
    native: ClassVar[type[nn.RNNBase] | None] = None
    """The torch.nn module that computes exactly this function, if there is one."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"a cell needs input_size >= 1 and hidden_size >= 1 (got {input_size}, {hidden_size})"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        n = len(self.blocks) * hidden_size
        self.W_x = nn.Parameter(torch.empty(n, input_size))
        self.W_a = nn.Parameter(torch.empty(n, hidden_size))
        self.b = nn.Parameter(torch.empty(n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's default: every weight uniform in ±1/sqrt(n_a)."""
        bound = self.hidden_size**-0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def block(self, tensor: Tensor, name: str) -> Tensor:
        """The rows of a stacked weight or bias that belong to block ``name``."""
        i = self.blocks.index(name) * self.hidden_size
        return tensor[i : i + self.hidden_size]

    def project_input(self, x: Tensor) -> Tensor:
        """``W_x x<t> + b`` for all time steps at once: (..., n_x) -> (..., blocks * n_a)."""
        return torch.nn.functional.linear(x, self.W_x, self.b)

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        """``a<0> = 0`` (and ``c<0> = 0``)."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return (zeros,) * self.state_size

    @abstractmethod
    def step(self, wx_t: Tensor, state: State) -> State:
        """One time step, given this step's input projection ``W_x x<t> + b``."""

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run over a time-major sequence ``x`` (T, B, n_x): returns ``a<1..T>`` and the last state."""
        outputs, state = self.steps(x, state)
        return torch.stack(outputs), state

    def steps(self, x: Tensor, state: State | None = None) -> tuple[list[Tensor], State]:
        """Like :meth:`forward`, but ``a<1..T>`` as the list of the tensors the recurrence itself
        used: the gradient of a loss with respect to ``a<t>`` in that list is the whole ``∂L/∂a<t>``,
        through every later step."""
        if state is None:
            state = self.initial_state(x.shape[1], x)
        outputs = []
        for wx_t in self.project_input(x).unbind(0):
            state = self.step(wx_t, state)
            outputs.append(state[0])
        return outputs, state

    def native_options(self) -> dict[str, Any]:
        """Constructor options of :attr:`native` beyond the sizes (e.g. the nonlinearity)."""
        return {}

    def native_weights(self) -> dict[str, Tensor]:
        """This cell's weights in :attr:`native`'s layout (``weight_ih``, ``weight_hh``, ``bias_ih``,
        ``bias_hh``), as differentiable functions of its parameters."""
        return {
            "weight_ih": self.W_x,
            "weight_hh": self.W_a,
            "bias_ih": self.b,
            "bias_hh": torch.zeros_like(self.b),
        }

    @torch.no_grad()
    def load_native_weights(self, weights: dict[str, Tensor]) -> None:
        """Take weights in :attr:`native`'s layout; its two biases add up to ``b``."""
        self.W_x.copy_(weights["weight_ih"])
        self.W_a.copy_(weights["weight_hh"])
        self.b.copy_(weights["bias_ih"] + weights["bias_hh"])
