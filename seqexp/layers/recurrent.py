"""Cells run over time, and the topologies built from them: uni, bi, deep, deep bidirectional.

Pure torch. Sequences are batch-first at this boundary, ``(B, T, n_x)``; inside, time comes
first so that the time loop walks the leading dimension.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from seqexp import kernels
from seqexp.cells import RecurrentCell, State
from seqexp.checks import at_least

CellFactory = Callable[[int, int], RecurrentCell]
"""Builds a cell from ``(input_size, hidden_size)``."""
Impl = Literal["auto", "native", "custom", "loop"]
IMPLS = ("auto", "native", "custom", "loop")
StackState = tuple[Tensor, ...]
"""A whole stack's state, each of its cells' state tensors stacked over layers and directions: in
torch.nn's layout for the course's cells, ``a`` (and ``c``), each (layers * directions, B, n_a)."""


@dataclass(frozen=True)
class StackRun:
    """What one run of a stack over a sequence gives."""

    outputs: Tensor
    """Every step's top-layer output (B, T, output_size)."""
    summary: Tensor
    """The whole sequence in one vector (B, output_size): ``[a→<T>, a←<1>]`` of the top layer."""
    state: StackState
    """The last state, to carry into the next chunk of the sequence."""
    steps: dict[str, list[Tensor]] | None
    """``a[l]<1..T>`` (each (B, n_a), in input order) per layer and direction (``l0``,
    ``l0_reverse``, ...) as the recurrence used them; ``None`` unless asked for."""
    mask: Tensor | None = None
    """Which steps of ``outputs`` read a real input rather than padding (B, T); ``None``: all.
    Set by whoever knows the padding (an encoder–decoder), for attention to skip the rest."""


def layer_name(layer: int, direction: int) -> str:
    """``l0``, ``l0_reverse``, ...: torch.nn's suffixes for a layer and direction."""
    return f"l{layer}{'_reverse' if direction else ''}"


class RecurrentStack(nn.Module):
    """``num_layers`` recurrent layers, each one direction or two, with dropout between layers
    (``dropout``) and on the input of the first (``input_dropout``).

    ``a[l]<t> = cell_l(a[l]<t-1>, a[l-1]<t>)`` with ``a[0]<t> = x<t>``; a bidirectional layer
    runs a second cell right to left and concatenates ``[a→<t>, a←<t>]``.

    The parameters are always the cells' own; ``impl`` only chooses what runs them: torch.nn's
    kernel (``native``: cuDNN on GPU, oneDNN on CPU, fed the cells' parameters in its layout, its
    redundant second bias a constant zero), :mod:`seqexp.kernels` (``custom``), or the cells'
    step-by-step loop through autograd (``loop``). ``auto`` is ``native`` wherever torch.nn computes
    exactly the cell's function and ``custom`` elsewhere. Every choice trains the same parameters
    the same way, and a checkpoint of one loads into another.
    """

    def __init__(
        self,
        make_cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        check_topology(num_layers, dropout, input_dropout, impl)
        self.hidden_size = hidden_size
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        self.layers = nn.ModuleList(
            nn.ModuleList(
                make_cell(input_size if layer == 0 else self.output_size, hidden_size)
                for _ in range(self.num_directions)
            )
            for layer in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.input_dropout = nn.Dropout(input_dropout)
        cell = self.layers[0][0]
        if impl == "native" and cell.native is None:
            raise ValueError(
                f"model.impl=native: {type(cell).__name__} has no torch.nn equivalent; "
                "use impl=custom or impl=auto"
            )
        self.impl: Impl = ("native" if cell.native is not None else "custom") if impl == "auto" else impl
        # torch.nn's module, on the meta device: it holds no tensors, only the code that the
        # cells' parameters are handed to (not a submodule, so it adds no parameters of its own).
        torch_rnn = None
        if cell.native is not None:
            torch_rnn = cell.native(
                input_size,
                hidden_size,
                num_layers=num_layers,
                bidirectional=bidirectional,
                dropout=dropout,
                batch_first=True,
                device="meta",
                **cell.native_options(),
            )
        object.__setattr__(self, "torch_rnn", torch_rnn)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, T, n_x) -> every step's top-layer output (B, T, output_size) and a summary
        of the whole sequence (B, output_size): ``[a→<T>, a←<1>]`` of the top layer."""
        run = self.run(x)
        return run.outputs, run.summary

    def run(self, x: Tensor, state: StackState | None = None, keep_steps: bool = False) -> StackRun:
        """Run over ``x`` (B, T, n_x) from ``state`` (zeros if ``None``); ``keep_steps`` runs
        the step-by-step loop and keeps every ``a[l]<t>`` it used, for per-step gradients."""
        if self.impl == "native" and not keep_steps:
            return self.run_native(x, state)
        h = self.input_dropout(x).transpose(0, 1)
        steps: dict[str, list[Tensor]] = {}
        last: list[State] = []
        for layer, directions in enumerate(self.layers):
            if layer > 0:
                h = self.dropout(h)
            outputs = []
            for direction, cell in enumerate(directions):
                i = layer * self.num_directions + direction
                initial = None if state is None else tuple(s[i] for s in state)
                sequence = h.flip(0) if direction else h
                if keep_steps or self.impl == "loop":
                    a, final = cell.steps(sequence, initial)
                    steps[layer_name(layer, direction)] = a[::-1] if direction else a
                    a = torch.stack(a)
                else:
                    a, final = kernels.run(cell, sequence, initial)
                last.append(final)
                outputs.append(a.flip(0) if direction else a)
            h = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
        h = h.transpose(0, 1)
        final_state = tuple(torch.stack(s) for s in zip(*last, strict=True))
        return StackRun(h, summarize(h, self.hidden_size), final_state, steps if keep_steps else None)

    def run_native(self, x: Tensor, state: StackState | None) -> StackRun:
        """:meth:`run` on torch.nn's kernel, with the cells' parameters in its layout."""
        rnn = self.torch_rnn.train(self.training)
        lstm = isinstance(rnn, nn.LSTM)
        hx = state if state is None or lstm else state[0]
        with warnings.catch_warnings():  # cuDNN copies weights that are not one block; so be it
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            h, final = functional_call(rnn, self.native_weights(), (self.input_dropout(x), hx))
        return StackRun(h, summarize(h, self.hidden_size), final if lstm else (final,), None)

    def kernel(self, like: Tensor) -> str:
        """What runs this stack on inputs like ``like``: ``native`` (torch.nn's kernel), ``loop``
        (step by step) or one of :mod:`seqexp.kernels`' kernels."""
        if self.impl == "custom":
            return kernels.kernel_for(self.layers[0][0], like)
        return self.impl

    def native_weights(self) -> dict[str, Tensor]:
        """All weights, named as a torch.nn.RNN/GRU/LSTM of the same shape names them, as
        differentiable functions of the cells' parameters."""
        return {
            f"{name}_{layer_name(layer, direction)}": tensor
            for layer, directions in enumerate(self.layers)
            for direction, cell in enumerate(directions)
            for name, tensor in cell.native_weights().items()
        }

    def load_native_weights(self, weights: dict[str, Tensor]) -> None:
        """Take the weights of a torch.nn.RNN/GRU/LSTM of the same shape."""
        for layer, directions in enumerate(self.layers):
            for direction, cell in enumerate(directions):
                suffix = f"_{layer_name(layer, direction)}"
                cell.load_native_weights(
                    {
                        name: weights[name + suffix]
                        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    }
                )


def summarize(outputs: Tensor, hidden_size: int) -> Tensor:
    """The whole sequence in one vector: ``a→<T>``, and ``a←<1>`` if there is a backward direction."""
    return torch.cat([outputs[:, -1, :hidden_size], outputs[:, 0, hidden_size:]], dim=-1)


def check_topology(num_layers: int, dropout: float, input_dropout: float = 0.0, impl: str = "auto") -> None:
    at_least("topology.num_layers", num_layers, 1)
    if impl not in IMPLS:
        raise ValueError(f"model.impl must be one of {list(IMPLS)} (got {impl!r})")
    for key, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"topology.{key} must be in [0, 1) (got {p})")
