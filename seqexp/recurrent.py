"""Cells run over time, and the topologies built from them: uni, bi, deep, deep bidirectional.

Pure torch. Sequences are batch-first at this boundary, ``(B, T, n_x)``; inside, time comes
first so that the time loop walks the leading dimension.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from seqexp import kernels
from seqexp.cells import RecurrentCell, State
from seqexp.checks import at_least

CellFactory = Callable[[int, int], RecurrentCell]
"""Builds a cell from ``(input_size, hidden_size)``."""
Impl = Literal["auto", "native", "custom", "loop"]
IMPLS = ("auto", "native", "custom", "loop")
StackState = tuple[Tensor, ...]
"""A whole stack's state in torch.nn's layout: ``a`` (and ``c``), each (layers * directions, B, n_a)."""


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


def layer_name(layer: int, direction: int) -> str:
    """``l0``, ``l0_reverse``, ...: torch.nn's suffixes for a layer and direction."""
    return f"l{layer}{'_reverse' if direction else ''}"


class RecurrentStack(nn.Module):
    """``num_layers`` recurrent layers, each one direction or two, with dropout between layers
    (``dropout``) and on the input of the first (``input_dropout``).

    ``a[l]<t> = cell_l(a[l]<t-1>, a[l-1]<t>)`` with ``a[0]<t> = x<t>``; a bidirectional layer
    runs a second cell right to left and concatenates ``[a→<t>, a←<t>]``. Each layer runs
    through :mod:`seqexp.kernels` (``use_kernels``) or the cells' own step-by-step loop.
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
        use_kernels: bool = True,
    ) -> None:
        super().__init__()
        check_topology(num_layers, dropout, input_dropout)
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
        self.blocks = self.layers[0][0].blocks
        self.use_kernels = use_kernels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, T, n_x) -> every step's top-layer output (B, T, output_size) and a summary
        of the whole sequence (B, output_size): ``[a→<T>, a←<1>]`` of the top layer."""
        run = self.run(x)
        return run.outputs, run.summary

    def run(self, x: Tensor, state: StackState | None = None, keep_steps: bool = False) -> StackRun:
        """Run over ``x`` (B, T, n_x) from ``state`` (zeros if ``None``); ``keep_steps`` runs
        the step-by-step loop and keeps every ``a[l]<t>`` it used, for per-step gradients."""
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
                if keep_steps or not self.use_kernels:
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

    def kernel(self, like: Tensor) -> str:
        """What runs this stack on inputs like ``like``: ``loop`` (step by step) or one of
        :mod:`seqexp.kernels`' kernels."""
        return kernels.kernel_for(self.layers[0][0], like) if self.use_kernels else "loop"

    def native_weights(self) -> dict[str, Tensor]:
        """All weights, named as a torch.nn.RNN/GRU/LSTM of the same shape names them."""
        return {
            f"{name}_l{layer}{'_reverse' if direction else ''}": tensor
            for layer, directions in enumerate(self.layers)
            for direction, cell in enumerate(directions)
            for name, tensor in cell.native_weights().items()
        }

    def load_native_weights(self, weights: dict[str, Tensor]) -> None:
        for layer, directions in enumerate(self.layers):
            for direction, cell in enumerate(directions):
                suffix = f"_l{layer}{'_reverse' if direction else ''}"
                cell.load_native_weights(
                    {
                        name: weights[name + suffix]
                        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    }
                )


class NativeStack(nn.Module):
    """The same topology on torch.nn.RNN/GRU/LSTM (cuDNN on GPU, oneDNN on CPU)."""

    def __init__(self, custom: RecurrentStack) -> None:
        super().__init__()
        cell = custom.layers[0][0]
        if cell.native is None:
            raise ValueError(f"{type(cell).__name__} has no native torch.nn equivalent")
        self.hidden_size = custom.hidden_size
        self.num_directions = custom.num_directions
        self.output_size = custom.output_size
        self.blocks = custom.blocks
        self.input_dropout = nn.Dropout(custom.input_dropout.p)
        self.make_custom = partial(copy.deepcopy, custom)
        """A fresh copy of the custom stack this one was built from (not a submodule)."""
        self.rnn = cell.native(
            cell.input_size,
            cell.hidden_size,
            num_layers=len(custom.layers),
            bidirectional=custom.num_directions == 2,
            dropout=custom.dropout.p,
            batch_first=True,
            **cell.native_options(),
        )
        self.load_custom_weights(custom)

    @torch.no_grad()
    def load_custom_weights(self, custom: RecurrentStack) -> None:
        for name, tensor in custom.native_weights().items():
            getattr(self.rnn, name).copy_(tensor)

    def kernel(self, like: Tensor) -> str:
        """``native``: torch.nn's own kernel (cuDNN on GPU, oneDNN on CPU)."""
        return "native"

    def native_weights(self) -> dict[str, Tensor]:
        return {name: p.detach().clone() for name, p in self.rnn.named_parameters()}

    def as_custom(self) -> RecurrentStack:
        """seqexp's own stack with this one's current weights: the same function, step by step."""
        custom = self.make_custom().to(self.rnn.weight_ih_l0).train(self.training)
        custom.load_native_weights(self.native_weights())
        return custom

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Same contract as :meth:`RecurrentStack.forward`."""
        run = self.run(x)
        return run.outputs, run.summary

    def run(self, x: Tensor, state: StackState | None = None) -> StackRun:
        """Same contract as :meth:`RecurrentStack.run`, without the per-step activations."""
        lstm = isinstance(self.rnn, nn.LSTM)
        hx = state if state is None or lstm else state[0]
        h, final = self.rnn(self.input_dropout(x), hx)
        return StackRun(h, summarize(h, self.hidden_size), final if lstm else (final,), None)


def summarize(outputs: Tensor, hidden_size: int) -> Tensor:
    """The whole sequence in one vector: ``a→<T>``, and ``a←<1>`` if there is a backward direction."""
    return torch.cat([outputs[:, -1, :hidden_size], outputs[:, 0, hidden_size:]], dim=-1)


def check_topology(num_layers: int, dropout: float, input_dropout: float = 0.0) -> None:
    at_least("topology.num_layers", num_layers, 1)
    for key, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"topology.{key} must be in [0, 1) (got {p})")


def build_stack(
    make_cell: CellFactory,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    impl: Impl = "auto",
    input_dropout: float = 0.0,
) -> RecurrentStack | NativeStack:
    """A recurrent stack; ``impl`` picks torch's kernel (``native``), seqexp's cells through
    :mod:`seqexp.kernels` (``custom``) or step by step through autograd (``loop``), or the native
    kernel wherever it computes exactly the same function and seqexp's kernels elsewhere (``auto``)."""
    if impl not in IMPLS:
        raise ValueError(f"cell.impl must be one of {list(IMPLS)} (got {impl!r})")
    stack = RecurrentStack(
        make_cell,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        dropout,
        input_dropout,
        use_kernels=impl != "loop",
    )
    has_native = stack.layers[0][0].native is not None
    if impl == "native" and not has_native:
        raise ValueError(
            f"cell.impl=native: {type(stack.layers[0][0]).__name__} has no torch.nn equivalent; "
            "use impl=custom or impl=auto"
        )
    if impl == "native" or (impl == "auto" and has_native):
        return NativeStack(stack)
    return stack
