"""The residual block topology: any cell inside ``x + cell(norm(x))``, then ``x + MLP(norm(x))``,
stacked, as linear recurrences and state-space models are meant to run (Mamba, LRU, xLSTM, minGRU
all do). Pure torch."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqexp import kernels
from seqexp.checks import at_least
from seqexp.layers.recurrent import CellFactory, Impl, StackRun, StackState, check_topology, layer_name

Norm = Literal["rms", "layer"]
NORMS: dict[str, type[nn.Module]] = {"rms": nn.RMSNorm, "layer": nn.LayerNorm}


class GatedMLP(nn.Module):
    """``W_out (SiLU(W_gate x) ⊙ W_in x)``, the hidden width ``expansion × n`` (SwiGLU)."""

    def __init__(self, size: int, expansion: float) -> None:
        super().__init__()
        hidden = max(1, round(expansion * size))
        self.W_in = nn.Linear(size, 2 * hidden, bias=False)
        self.W_out = nn.Linear(hidden, size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.W_in(x).chunk(2, dim=-1)
        return self.W_out(F.silu(gate) * value)


class ResidualBlock(nn.Module):
    """Pre-norm: ``y = x + drop(cell(norm₁(x)))``, ``out = y + drop(MLP(norm₂(y)))``."""

    def __init__(
        self, make_cell: CellFactory, size: int, norm: Norm, expansion: float, dropout: float
    ) -> None:
        super().__init__()
        self.cell = make_cell(size, size)
        self.norm_cell = NORMS[norm](size)
        self.norm_mlp = NORMS[norm](size)
        self.mlp = GatedMLP(size, expansion)
        self.dropout = nn.Dropout(dropout)


class BlockStack(nn.Module):
    """``num_layers`` residual blocks over a linear projection of the input to the blocks' width
    (``hidden_size``), and a final norm. Runs like :class:`RecurrentStack`: its :meth:`run` gives a
    :class:`StackRun` whose state holds every block's cell state, stacked over blocks."""

    num_directions = 1

    def __init__(
        self,
        make_cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        norm: Norm = "rms",
        mlp_expansion: float = 2.0,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        check_topology(num_layers, dropout, input_dropout, impl)
        if norm not in NORMS:
            raise ValueError(f"topology.block.norm must be one of {list(NORMS)} (got {norm!r})")
        at_least("topology.block.mlp_expansion", mlp_expansion, 0.01)
        if impl == "native":
            raise ValueError(
                "model.impl=native: topology=block runs seqexp's kernels; use impl=auto, custom or loop"
            )
        self.hidden_size = self.output_size = hidden_size
        self.impl: Impl = "custom" if impl == "auto" else impl
        self.project = nn.Linear(input_size, hidden_size)
        self.input_dropout = nn.Dropout(input_dropout)
        self.layers = nn.ModuleList(
            ResidualBlock(make_cell, hidden_size, norm, mlp_expansion, dropout) for _ in range(num_layers)
        )
        self.norm = NORMS[norm](hidden_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        run = self.run(x)
        return run.outputs, run.summary

    def run(self, x: Tensor, state: StackState | None = None, keep_steps: bool = False) -> StackRun:
        """Run over ``x`` (B, T, n_x) from ``state`` (the cells' initial states if ``None``);
        ``keep_steps`` runs the cells step by step and keeps every cell output ``a[l]<t>``."""
        h = self.project(self.input_dropout(x)).transpose(0, 1)
        steps: dict[str, list[Tensor]] = {}
        last = []
        for layer, block in enumerate(self.layers):
            initial = None if state is None else tuple(s[layer] for s in state)
            inputs = block.norm_cell(h)
            if keep_steps or self.impl == "loop":
                a, final = block.cell.steps(inputs, initial)
                steps[layer_name(layer, 0)] = a
                a = torch.stack(a)
            else:
                a, final = kernels.run(block.cell, inputs, initial)
            last.append(final)
            h = h + block.dropout(a)
            h = h + block.dropout(block.mlp(block.norm_mlp(h)))
        outputs = self.norm(h).transpose(0, 1)
        final_state = tuple(torch.stack(s) for s in zip(*last, strict=True))
        return StackRun(outputs, outputs[:, -1], final_state, steps if keep_steps else None)

    def kernel(self, like: Tensor) -> str:
        """What runs the blocks' cells: ``loop`` or one of :mod:`seqexp.kernels`' kernels."""
        return "loop" if self.impl == "loop" else kernels.kernel_for(self.layers[0].cell, like)
