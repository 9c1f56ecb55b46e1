"""Initialisation schemes for recurrent cells: the remedies for vanishing and exploding gradients
that act before the first step.

Each scheme sets every block (gate or candidate) of ``W_x`` and ``W_a`` on its own, as if it were
a layer of its own, and leaves the rest to the cell (:meth:`RecurrentCell.after_scheme`: an LSTM
keeps its ``forget_bias``). A cell names the schemes that apply to it
(:attr:`Recurrence.init_schemes`); the others are refused. Pure torch.
"""

from __future__ import annotations

import torch
from torch import nn

from seqexp.cells import Recurrence, RecurrentCell
from seqexp.checks import ConfigError
from seqexp.layers.recurrent import CellFactory

IRNN_INPUT_STD = 0.001
"""Le et al. (2015) draw the input weights of an IRNN from N(0, 0.001²)."""


def xavier(cell: RecurrentCell) -> None:
    """Glorot-uniform blocks of ``W_x`` and ``W_a``; ``b = 0``."""
    for name in cell.blocks:
        nn.init.xavier_uniform_(cell.block(cell.W_x, name))
        nn.init.xavier_uniform_(cell.block(cell.W_a, name))
    nn.init.zeros_(cell.b)


def he(cell: RecurrentCell) -> None:
    """He-normal blocks (std ``sqrt(2 / fan_in)``, for ReLU) of ``W_x`` and ``W_a``; ``b = 0``."""
    for name in cell.blocks:
        nn.init.kaiming_normal_(cell.block(cell.W_x, name), nonlinearity="relu")
        nn.init.kaiming_normal_(cell.block(cell.W_a, name), nonlinearity="relu")
    nn.init.zeros_(cell.b)


def orthogonal(cell: RecurrentCell) -> None:
    """Random orthogonal blocks of ``W_a`` (every singular value 1); Glorot-uniform ``W_x``; ``b = 0``."""
    xavier(cell)
    for name in cell.blocks:
        nn.init.orthogonal_(cell.block(cell.W_a, name))


def identity(cell: RecurrentCell) -> None:
    """Identity blocks of ``W_a``, ``W_x`` from N(0, 0.001²), ``b = 0``: with a ReLU RNN this is the
    IRNN of Le et al. (2015), whose ``a<t>`` starts out as ``a<t-1>`` plus the new input."""
    for name in cell.blocks:
        nn.init.eye_(cell.block(cell.W_a, name))
    nn.init.normal_(cell.W_x, std=IRNN_INPUT_STD)
    nn.init.zeros_(cell.b)


SCHEMES = {"xavier": xavier, "he": he, "orthogonal": orthogonal, "identity": identity}
"""The schemes besides ``default``, the cell's own (torch.nn's: uniform in ±1/sqrt(n_a))."""


@torch.no_grad()
def initialize(cell: Recurrence, scheme: str) -> Recurrence:
    """Re-initialise ``cell`` in place by ``scheme``, then let it set what the scheme does not."""
    check_scheme(scheme, cell)
    if scheme == "default":
        return cell
    assert isinstance(cell, RecurrentCell)  # the block schemes apply to block cells alone
    SCHEMES[scheme](cell)
    cell.after_scheme()
    return cell


def initialized(make_cell: CellFactory, scheme: str) -> CellFactory:
    """``make_cell`` whose cells come out initialised by ``scheme``."""
    check_scheme(scheme)

    def make(input_size: int, hidden_size: int) -> Recurrence:
        return initialize(make_cell(input_size, hidden_size), scheme)

    return make


def check_scheme(scheme: str, cell: Recurrence | None = None) -> None:
    """A :class:`ConfigError` unless ``scheme`` is a scheme, and one that applies to ``cell``."""
    if scheme != "default" and scheme not in SCHEMES:
        raise ConfigError(f"init.scheme must be one of {['default', *SCHEMES]} (got {scheme!r})")
    if cell is not None and scheme not in cell.init_schemes:
        raise ConfigError(
            f"init.scheme={scheme} does not apply to {type(cell).__name__}: {cell.init_note}. "
            f"Its schemes: {list(cell.init_schemes)}"
        )
