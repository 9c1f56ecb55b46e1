"""Cells run over time, and the topologies built from them: uni, bi, deep, deep bidirectional.

Pure torch. Sequences are batch-first at this boundary, ``(B, T, n_x)``; inside, time comes
first so that the time loop walks the leading dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from seqexp.cells import RecurrentCell

CellFactory = Callable[[int, int], RecurrentCell]
"""Builds a cell from ``(input_size, hidden_size)``."""
Impl = Literal["auto", "native", "custom"]
IMPLS = ("auto", "native", "custom")


class RecurrentStack(nn.Module):
    """``num_layers`` recurrent layers, each one direction or two, with dropout between layers.

    ``a[l]<t> = cell_l(a[l]<t-1>, a[l-1]<t>)`` with ``a[0]<t> = x<t>``; a bidirectional layer
    runs a second cell right to left and concatenates ``[a→<t>, a←<t>]``.
    """

    def __init__(
        self,
        make_cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_topology(num_layers, dropout)
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, T, n_x) -> every step's top-layer output (B, T, output_size) and a summary
        of the whole sequence (B, output_size): ``[a→<T>, a←<1>]`` of the top layer."""
        h = x.transpose(0, 1)
        for i, directions in enumerate(self.layers):
            if i > 0:
                h = self.dropout(h)
            outputs = [directions[0](h)[0]]
            if self.num_directions == 2:
                outputs.append(directions[1](h.flip(0))[0].flip(0))
            h = torch.cat(outputs, dim=-1)
        h = h.transpose(0, 1)
        return h, summarize(h, self.hidden_size)

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

    def native_weights(self) -> dict[str, Tensor]:
        return {name: p.detach().clone() for name, p in self.rnn.named_parameters()}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Same contract as :meth:`RecurrentStack.forward`."""
        h = self.rnn(x)[0]
        return h, summarize(h, self.hidden_size)


def summarize(outputs: Tensor, hidden_size: int) -> Tensor:
    """The whole sequence in one vector: ``a→<T>``, and ``a←<1>`` if there is a backward direction."""
    return torch.cat([outputs[:, -1, :hidden_size], outputs[:, 0, hidden_size:]], dim=-1)


def check_topology(num_layers: int, dropout: float) -> None:
    if num_layers < 1:
        raise ValueError(f"topology.num_layers must be >= 1 (got {num_layers})")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"topology.dropout must be in [0, 1) (got {dropout})")


def build_stack(
    make_cell: CellFactory,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    impl: Impl = "auto",
) -> RecurrentStack | NativeStack:
    """A recurrent stack; ``impl`` picks torch's kernel (``native``), seqexp's cells (``custom``)
    or the native one wherever it computes exactly the same function (``auto``)."""
    if impl not in IMPLS:
        raise ValueError(f"cell.impl must be one of {list(IMPLS)} (got {impl!r})")
    stack = RecurrentStack(make_cell, input_size, hidden_size, num_layers, bidirectional, dropout)
    has_native = stack.layers[0][0].native is not None
    if impl == "native" and not has_native:
        raise ValueError(
            f"cell.impl=native: {type(stack.layers[0][0]).__name__} has no torch.nn equivalent; "
            "use impl=custom or impl=auto"
        )
    if impl == "native" or (impl == "auto" and has_native):
        return NativeStack(stack)
    return stack
