"""The 1997 LSTM: its step against an independent, unit-by-unit transcription of the paper's
equations (float64), its constant error carousel, its blocks' shared gates, and bad options."""

from __future__ import annotations

import math

import pytest
import torch

from seqexp.cells.lstm1997 import LSTM1997Cell


def logistic(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def transcription(cell: LSTM1997Cell, xs: torch.Tensor) -> list[list[float]]:
    """H&S 1997, unit by unit, for one sequence: for cell v of block j, net inputs from the input
    units and the cells' previous outputs; y_in_j = f(net_in_j), y_out_j = f(net_out_j),
    s_v(t) = s_v(t-1) + y_in_j(t) g(net_v(t)), y_v(t) = y_out_j(t) h(s_v(t)), with f the logistic,
    g = 4f − 2, h = 2f − 1. Rows of W: cells first, then input gates, then output gates."""
    n, size = cell.hidden_size, cell.block_size
    W_x, W_a, b = (p.detach().tolist() for p in (cell.W_x, cell.W_a, cell.b))
    y, s, outputs = [0.0] * n, [0.0] * n, []

    def net(row: int, x: list[float]) -> float:
        return (
            b[row]
            + sum(w * xi for w, xi in zip(W_x[row], x, strict=True))
            + sum(w * yi for w, yi in zip(W_a[row], y, strict=True))
        )

    for x in xs.tolist():
        y_in = [logistic(net(n + j, x)) for j in range(n // size)]
        y_out = [logistic(net(n + n // size + j, x)) for j in range(n // size)]
        net_c = [net(v, x) for v in range(n)]
        s = [s[v] + y_in[v // size] * (4 * logistic(net_c[v]) - 2) for v in range(n)]
        y = [y_out[v // size] * (2 * logistic(s[v]) - 1) for v in range(n)]
        outputs.append(y)
    return outputs


@pytest.mark.parametrize(("hidden_size", "block_size"), [(4, 2), (3, 1), (6, 3)])
def test_the_step_computes_the_papers_equations_unit_by_unit(hidden_size: int, block_size: int) -> None:
    torch.manual_seed(0)
    cell = LSTM1997Cell(3, hidden_size, block_size=block_size, init_range=1.0).double()
    x = torch.randn(9, 2, 3, dtype=torch.float64)

    outputs, (a, c) = cell(x)

    for example in range(2):
        expected = torch.tensor(transcription(cell, x[:, example]), dtype=torch.float64)
        torch.testing.assert_close(outputs[:, example], expected, rtol=0, atol=1e-12)
    assert outputs.shape == (9, 2, hidden_size) and torch.equal(a, outputs[-1])
    assert c.abs().max() > 1, "the cell state is not squashed: it may leave [-1, 1]"


def test_a_closed_input_gate_keeps_the_cell_state_exactly_there_is_no_forget_gate() -> None:
    cell = LSTM1997Cell(2, 4, block_size=2).double()
    with torch.no_grad():
        cell.b[4:6] = -1e4  # both blocks' input gates shut: σ = 0 exactly in float64
    c0 = torch.tensor([[0.3, -1.2, 2.0, 0.5]], dtype=torch.float64)
    a0 = torch.zeros(1, 4, dtype=torch.float64)

    _, (a, c) = cell(torch.randn(50, 1, 2, dtype=torch.float64), (a0, c0))

    assert torch.equal(c, c0)
    assert torch.all(a.abs() < 1) and a.abs().sum() > 0, "the output gate reads the held state"


def test_the_cells_of_a_block_share_its_gates() -> None:
    """Two cells of one block, given the same net input, move identically; in blocks of one they
    do not (their gates differ)."""
    torch.manual_seed(1)
    shared = LSTM1997Cell(2, 2, block_size=2).double()
    with torch.no_grad():
        shared.W_x[1], shared.W_a[1], shared.b[1] = shared.W_x[0], shared.W_a[0], shared.b[0]
        shared.W_a[:, 1] = shared.W_a[:, 0]  # and read the two cells alike
    x = torch.randn(20, 1, 2, dtype=torch.float64)

    a, _ = shared(x)

    torch.testing.assert_close(a[..., 0], a[..., 1], rtol=0, atol=0)
    assert (shared.b.shape, shared.W_x.shape) == ((2 + 1 + 1,), (4, 2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block_size": 3}, "cell.block_size must be a positive divisor of the hidden size 4"),
        ({"block_size": 0}, "cell.block_size must be a positive divisor"),
        ({"init_range": 0.0}, "cell.init_range must be > 0"),
    ],
)
def test_bad_options_are_refused_naming_their_key(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LSTM1997Cell(2, 4, **options)


def test_hidden_sizes_are_multiples_of_the_block_and_every_parameter_starts_in_its_range() -> None:
    assert LSTM1997Cell.hidden_size_multiple(block_size=2) == 2
    cell = LSTM1997Cell(8, 4, block_size=2, init_range=0.1)
    assert all(p.abs().max() <= 0.1 for p in cell.parameters())
    assert sum(p.numel() for p in cell.parameters()) == (4 + 2 + 2) * (8 + 4 + 1)


def test_gate_bias_starts_every_input_and_output_gate_there_and_leaves_the_rest_uniform() -> None:
    cell = LSTM1997Cell(3, 4, block_size=2, init_range=0.1, gate_bias=-2.0)
    assert torch.equal(cell.b[4:], torch.full((4,), -2.0))
    assert cell.b[:4].abs().max() <= 0.1 and cell.W_x.abs().max() <= 0.1
