"""The cell protocol: what every recurrence declares, and the two families built on it.

- :class:`Recurrence` — any recurrence: its parameters (any shapes), its step (the readable
  reference), its gradient groups and the initialisation schemes that apply to it;
- :class:`RecurrentCell` — the course's cells, whose parameters are stacked ``W_x``, ``W_a`` and
  ``b`` blocks (vanilla RNN, GRUs, LSTMs);
- :class:`LinearRecurrence` — a recurrence linear in its state, ``h<t> = λ<t> ⊙ h<t-1> + β<t>``,
  which a scan runs over the whole sequence at once (minGRU, minLSTM, LRU, selective SSMs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]
"""A cell's state; its first element is always the output ``a<t>``, of shape (B, n_a)."""

BLOCK_SCHEMES = ("default", "xavier", "he", "orthogonal", "identity")
"""The initialisation schemes that set ``W_x`` and ``W_a`` block by block (seqexp.layers.initialization)."""


class Recurrence(nn.Module, ABC):
    """A recurrence ``state<t> = step(u<t>, state<t-1>)``, ``u<t> = project_input(x)<t>``, whose
    output ``a<t>`` is ``state<t>[0]``.

    What seqexp needs of a cell, and the only things it looks at (kernels, initialisation, budgets,
    diagnostics and the bench find cells through these):

    - its parameters, as ``nn.Parameter`` attributes of any shape;
    - :meth:`project_input` and :meth:`step`, the readable reference, with its paper's equations
      in the class docstring;
    - :attr:`gradient_groups`, the diagnostics' group of each parameter;
    - :attr:`init_schemes`, the ``init.scheme`` values that apply (others are refused, with
      :attr:`init_note` as the reason);
    - optionally a whole-sequence fast path (:meth:`sequence`), or, by deriving from
      :class:`LinearRecurrence`, that a scan runs it.
    """

    gradient_groups: ClassVar[dict[str, str]] = {}
    """Each parameter's group in the gradient diagnostics (``input``, ``recurrent``, ``bias``,
    or a name of the cell's own); a parameter left out is in ``other``."""
    init_schemes: ClassVar[tuple[str, ...]] = ("default",)
    """The ``init.scheme`` values that apply to this cell; ``default`` is its own initialisation."""
    init_note: ClassVar[str] = "it initialises its parameters as its paper does"
    """Why the other schemes do not apply."""
    blocks: tuple[str, ...] = ()
    """Names of stacked weight blocks whose gradients the diagnostics report apart (``u``, ``f``, ...)."""
    native: ClassVar[type[nn.RNNBase] | None] = None
    """The torch.nn module that computes exactly this function, if there is one."""
    fast_path: ClassVar[bool] = False
    """Whether :meth:`sequence` is a whole-sequence fast path of the cell's own."""
    bridgeable: ClassVar[bool] = False
    """Whether every tensor of the state is an activation (B, n_a) that a learned bridge may mix
    (a bidirectional encoder's two last states into a decoder's first): not a normaliser, a
    complex or a per-channel state."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"a cell needs input_size >= 1 and hidden_size >= 1 (got {input_size}, {hidden_size})"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size

    @classmethod
    def hidden_size_multiple(cls, **options: Any) -> int:
        """Hidden sizes a cell of these constructor ``options`` takes are multiples of this."""
        return 1

    def project_input(self, x: Tensor) -> Tensor:
        """What :meth:`step` reads at each step, for all steps at once (T, B, ...): ``x`` itself
        unless the cell computes something of ``x`` alone for every step in one product."""
        return x

    @abstractmethod
    def initial_state(self, batch_size: int, like: Tensor) -> State:
        """The state before the first step, for a batch of ``batch_size`` inputs like ``like``."""

    @abstractmethod
    def step(self, u_t: Tensor, state: State) -> State:
        """One time step, given this step's :meth:`project_input`."""

    def kernel_equations(self) -> tuple[str, dict[str, Tensor]] | None:
        """The equations of seqexp's kernels this cell computes (``rnn_tanh``, ``rnn_relu``,
        ``gru_simple``, ``gru``, ``lstm``, ``slstm``), with the tensors they take; ``None``: no
        kernel computes them."""
        return None

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
        for u_t in self.project_input(x).unbind(0):
            state = self.step(u_t, state)
            outputs.append(state[0])
        return outputs, state

    def sequence(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """``a<1..T>`` (T, B, n_a) and the last state: a cell with a :attr:`fast_path` computes here
        exactly what :meth:`steps` computes, faster."""
        outputs, state = self.steps(x, state)
        return torch.stack(outputs), state


class RecurrentCell(Recurrence):
    """A recurrence ``state<t> = step(W_x x<t> + b, state<t-1>)`` in the course notation.

    ``W [a, x]`` is split into ``W_x x + W_a a``: ``W_x x + b`` is computed for every time
    step in one matrix product (:meth:`project_input`), and :meth:`step` only adds the
    recurrent part and does the element-wise gate math. Rows of ``W_x``, ``W_a`` and ``b``
    hold the blocks named in :attr:`blocks`, in that order.
    """

    blocks: tuple[str, ...]
    state_size: int = 1
    """How many tensors of size ``n_a`` the state holds (``a`` alone, or ``a`` and ``c``)."""
    gradient_groups: ClassVar[dict[str, str]] = {
        "W_x": "input",
        "W_a": "recurrent",
        "p_u": "recurrent",
        "p_f": "recurrent",
        "p_o": "recurrent",
        "b": "bias",
        "b_cc": "bias",
    }
    init_schemes = BLOCK_SCHEMES
    bridgeable = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
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

    def after_scheme(self) -> None:
        """What an initialisation scheme leaves to the cell, once it has set ``W_x``, ``W_a`` and
        ``b``: every other parameter (a GRU's ``b_cc``, an LSTM's peepholes) starts at zero."""
        for name, p in self.named_parameters():
            if name not in ("W_x", "W_a", "b"):
                nn.init.zeros_(p)

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


class LinearRecurrence(Recurrence):
    """A recurrence linear in its state: ``h<t> = λ<t> ⊙ h<t-1> + β<t>``, ``a<t> = out(h<t>, x<t>)``,
    where ``λ<t>`` and ``β<t>`` depend on the inputs alone (never on ``h``). Its state is
    ``(a, h)``; ``h`` may have any shape per example, and be complex.

    :meth:`coefficients` and :meth:`readout` are all a parallel scan needs
    (:func:`seqexp.kernels.scan`); :meth:`step` is derived from them, so the two cannot disagree,
    and each cell also keeps its paper's own form of the recurrence to be tested against.
    """

    @abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """The shape of ``h`` for one example."""

    state_dtype_complex: ClassVar[bool] = False
    """Whether ``h`` is complex (the LRU's)."""

    @abstractmethod
    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``λ<t>`` and ``β<t>`` for every step of ``x`` (T, B, n_x): ``β`` (T, B, *state_shape),
        ``λ`` the same or broadcastable to it (the LRU's is constant, (*state_shape,))."""

    @abstractmethod
    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        """``a<t>`` from ``h<t>`` and ``x<t>``, for any leading dimensions: (..., *state_shape) and
        (..., n_x) -> (..., n_a)."""

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        """``a<0> = 0``, ``h<0> = 0``."""
        dtype = torch.promote_types(like.dtype, torch.complex64) if self.state_dtype_complex else like.dtype
        h = torch.zeros(batch_size, *self.state_shape(), dtype=dtype, device=like.device)
        return like.new_zeros(batch_size, self.hidden_size), h

    def project_input(self, x: Tensor) -> Tensor:
        """The step reads ``x<t>`` itself (its coefficients are computed per step by :meth:`step`)."""
        return x

    def scan_equations(self, x: Tensor) -> tuple[str, dict[str, Tensor]] | None:
        """The fused scan whose equations this recurrence's are, and its inputs for ``x``, computed
        in torch (:mod:`seqexp.kernels.compiled` names the families and what each takes); ``None``
        for the plain scan of :meth:`coefficients`."""
        return None

    def step(self, u_t: Tensor, state: State) -> State:
        """``h<t> = λ<t> ⊙ h<t-1> + β<t>``, ``a<t> = readout(h<t>, x<t>)``."""
        lam, beta = self.coefficients(u_t[None])
        h = (lam * state[1] + beta)[0]
        return self.readout(h, u_t), h
