"""The cells compute exactly seqexp/cells/NOTATION.md's functions, and equal torch's where torch has them."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import Tensor
from torch.func import functional_call
from training import trained

from seqexp.cells import GRUCell, LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell, SimpleGRUCell
from seqexp.layers.recurrent import RecurrentStack

N_X, N_A, B, T = 3, 4, 2, 6
TOPOLOGIES = {"uni": (1, False), "deep": (3, False), "bi": (1, True), "deep_bi": (2, True)}
NATIVE_CELLS = {
    "rnn_tanh": partial(RNNCell, nonlinearity="tanh"),
    "rnn_relu": partial(RNNCell, nonlinearity="relu"),
    "gru_reset_after": partial(GRUCell, reset_after=True),
    "lstm": LSTMCell,
}
CUSTOM_CELLS = {
    **NATIVE_CELLS,
    "gru_reset_before": partial(GRUCell, reset_after=False),
    "gru_simple": SimpleGRUCell,
    "peephole": PeepholeLSTMCell,
}


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def randomize(module: torch.nn.Module) -> None:
    """Every parameter non-zero and away from its init, so that no term can hide."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.8, 0.8)


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", NATIVE_CELLS)
def test_custom_equals_native_outputs_and_gradients(cell: str, topology: str) -> None:
    num_layers, bidirectional = TOPOLOGIES[topology]
    stack = RecurrentStack(NATIVE_CELLS[cell], N_X, N_A, num_layers, bidirectional, impl="custom").double()
    randomize(stack)
    native = RecurrentStack(NATIVE_CELLS[cell], N_X, N_A, num_layers, bidirectional, impl="native").double()
    native.load_state_dict(stack.state_dict())
    x = torch.randn(B, T, N_X, dtype=torch.float64)
    weights = torch.randn(B, T, stack.output_size, dtype=torch.float64)

    custom_out = stack(x)[0]
    custom_grads = torch.autograd.grad((custom_out * weights).sum(), list(stack.parameters()))
    native_out = native(x)[0]
    native_grads = torch.autograd.grad((native_out * weights).sum(), list(native.parameters()))

    torch.testing.assert_close(custom_out, native_out, rtol=0, atol=1e-10)
    names = [name for name, _ in stack.named_parameters()]
    for name, g_custom, g_native in zip(names, custom_grads, native_grads, strict=True):
        torch.testing.assert_close(g_custom, g_native, rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("cell", NATIVE_CELLS)
def test_weights_convert_back_from_native(cell: str) -> None:
    stack = RecurrentStack(NATIVE_CELLS[cell], N_X, N_A, num_layers=2, bidirectional=True).double()
    randomize(stack)
    cell_0 = stack.layers[0][0]
    native = cell_0.native(N_X, N_A, 2, bidirectional=True, batch_first=True, **cell_0.native_options())
    native = native.double()
    native.load_state_dict({name: w.detach() for name, w in stack.native_weights().items()})
    with torch.no_grad():
        for p in native.parameters():
            p.add_(0.1 * torch.randn_like(p))  # native weights that no custom stack produced
    back = RecurrentStack(NATIVE_CELLS[cell], N_X, N_A, num_layers=2, bidirectional=True).double()
    back.load_native_weights(dict(native.named_parameters()))
    x = torch.randn(B, T, N_X, dtype=torch.float64)
    torch.testing.assert_close(back(x)[0], native(x)[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("make_cell", "impl", "expected"),
    [
        (LSTMCell, "auto", "native"),
        (LSTMCell, "custom", "custom"),
        (partial(GRUCell, reset_after=True), "auto", "native"),
        (partial(GRUCell, reset_after=False), "auto", "custom"),
        (PeepholeLSTMCell, "auto", "custom"),
        (SimpleGRUCell, "auto", "custom"),
    ],
)
def test_impl_auto_takes_native_only_where_it_is_the_same_function(make_cell, impl, expected) -> None:
    assert RecurrentStack(make_cell, N_X, N_A, impl=impl).impl == expected


TRAINING_CELLS = {"lstm": LSTMCell, "rnn": RNNCell, "gru": partial(GRUCell, reset_after=True)}


@pytest.mark.parametrize("topology", ["uni", "deep_bi"])
@pytest.mark.parametrize("cell", TRAINING_CELLS)
def test_native_and_custom_stacks_train_identically(cell: str, topology: str) -> None:
    """The same weights, batches and Adam with weight decay, 20 steps in float64: the same
    parameters at the end, and the same number of them (torch.nn's second bias does not train)."""
    num_layers, bidirectional = TOPOLOGIES[topology]
    stacks = {
        impl: RecurrentStack(TRAINING_CELLS[cell], N_X, N_A, num_layers, bidirectional, impl=impl).double()
        for impl in ("native", "custom")
    }
    stacks["native"].load_state_dict(stacks["custom"].state_dict())
    batches = [
        (torch.randn(B, T, N_X, dtype=torch.float64), torch.randn(B, dtype=torch.float64)) for _ in range(20)
    ]
    native, custom = (trained(stacks[impl], batches) for impl in ("native", "custom"))
    assert native.keys() == custom.keys()
    assert sum(p.numel() for p in native.values()) == sum(p.numel() for p in custom.values())
    for name, p in custom.items():
        torch.testing.assert_close(native[name], p, rtol=0, atol=1e-9, msg=name)
    assert stacks["native"].kernel(torch.zeros(1)) == "native"


@pytest.mark.parametrize("make_cell", [PeepholeLSTMCell, SimpleGRUCell, partial(GRUCell, reset_after=False)])
def test_impl_native_is_refused_where_torch_has_no_such_cell(make_cell) -> None:
    with pytest.raises(ValueError, match="has no torch.nn equivalent"):
        RecurrentStack(make_cell, N_X, N_A, impl="native")


def test_peephole_with_zero_peepholes_is_the_lstm() -> None:
    lstm = LSTMCell(N_X, N_A).double()
    peephole = PeepholeLSTMCell(N_X, N_A).double()
    randomize(lstm)
    peephole.load_state_dict(lstm.state_dict(), strict=False)
    for p in (peephole.p_u, peephole.p_f, peephole.p_o):
        torch.nn.init.zeros_(p)
    x = torch.randn(T, B, N_X, dtype=torch.float64)
    torch.testing.assert_close(peephole(x), lstm(x), rtol=0, atol=0)


def test_forget_bias_sets_the_initial_forget_gate_bias() -> None:
    cell = LSTMCell(N_X, N_A, forget_bias=2.5)
    assert torch.equal(cell.block(cell.b, "f"), torch.full((N_A,), 2.5))
    assert not torch.equal(cell.block(cell.b, "u"), torch.full((N_A,), 2.5))


# --- seqexp/cells/NOTATION.md, transcribed: one function per cell, one line per equation,
# W [a, x] as written.


def sigma(z: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-z))


def W(cell: RecurrentCell, block: str) -> Tensor:
    """The course's ``W_block`` of shape (n_a, n_a + n_x), acting on ``[a<t-1>, x<t>]``."""
    return torch.cat([cell.block(cell.W_a, block), cell.block(cell.W_x, block)], dim=1)


def b(cell: RecurrentCell, block: str) -> Tensor:
    return cell.block(cell.b, block)


def stacked(p: Tensor, q: Tensor) -> Tensor:
    """``[p, q]`` for one example."""
    return torch.cat([p, q])


def peephole_step(cell: PeepholeLSTMCell, x: Tensor, a_prev: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
    c_tilde = torch.tanh(W(cell, "c") @ stacked(a_prev, x) + b(cell, "c"))
    gamma_u = sigma(W(cell, "u") @ stacked(a_prev, x) + cell.p_u * c_prev + b(cell, "u"))
    gamma_f = sigma(W(cell, "f") @ stacked(a_prev, x) + cell.p_f * c_prev + b(cell, "f"))
    c = gamma_u * c_tilde + gamma_f * c_prev
    gamma_o = sigma(W(cell, "o") @ stacked(a_prev, x) + cell.p_o * c + b(cell, "o"))
    a = gamma_o * torch.tanh(c)
    return a, c


def gru_simple_step(cell: SimpleGRUCell, x: Tensor, c_prev: Tensor) -> Tensor:
    c_tilde = torch.tanh(W(cell, "c") @ stacked(c_prev, x) + b(cell, "c"))
    gamma_u = sigma(W(cell, "u") @ stacked(c_prev, x) + b(cell, "u"))
    return gamma_u * c_tilde + (1 - gamma_u) * c_prev


def gru_step(cell: GRUCell, x: Tensor, c_prev: Tensor) -> Tensor:
    gamma_u = sigma(W(cell, "u") @ stacked(c_prev, x) + b(cell, "u"))
    gamma_r = sigma(W(cell, "r") @ stacked(c_prev, x) + b(cell, "r"))
    c_tilde = torch.tanh(W(cell, "c") @ stacked(gamma_r * c_prev, x) + b(cell, "c"))
    return gamma_u * c_tilde + (1 - gamma_u) * c_prev


def transcribed(cell: RecurrentCell, xs: Tensor) -> Tensor:
    """``a<1..T>`` for one example ``xs`` (T, n_x), step by step, from ``a<0> = c<0> = 0``."""
    a = c = torch.zeros(cell.hidden_size, dtype=xs.dtype)
    outputs = []
    for x in xs:
        if isinstance(cell, PeepholeLSTMCell):
            a, c = peephole_step(cell, x, a, c)
        elif isinstance(cell, SimpleGRUCell):
            a = gru_simple_step(cell, x, a)
        else:
            a = gru_step(cell, x, a)
        outputs.append(a)
    return torch.stack(outputs)


@pytest.mark.parametrize(
    "make_cell", [PeepholeLSTMCell, SimpleGRUCell, partial(GRUCell, reset_after=False)], ids=str
)
def test_custom_only_cells_compute_the_course_equations(make_cell) -> None:
    cell = make_cell(N_X, N_A).double()
    randomize(cell)
    x = torch.randn(T, B, N_X, dtype=torch.float64)
    outputs, _ = cell(x)
    for i in range(B):
        torch.testing.assert_close(outputs[:, i], transcribed(cell, x[:, i]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CUSTOM_CELLS)
def test_gradcheck(cell: str) -> None:
    module = CUSTOM_CELLS[cell](2, 3).double()
    randomize(module)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    params = dict(module.named_parameters())

    def outputs(x: Tensor, *values: Tensor) -> Tensor:
        return functional_call(module, dict(zip(params, values, strict=True)), (x,))[0]

    assert torch.autograd.gradcheck(outputs, (x, *params.values()))
