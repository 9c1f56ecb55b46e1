"""seqexp's fast kernels compute what the step-by-step cells compute: outputs, last state, and
the gradients of the input, the initial state and every parameter."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import Tensor

from seqexp import kernels
from seqexp.cells import GRUCell, LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell, SimpleGRUCell
from seqexp.kernels import fused, manual, onednn, scan
from seqexp.layers.recurrent import CellFactory, RecurrentStack

CELLS: dict[str, CellFactory] = {
    "rnn": RNNCell,
    "rnn_relu": partial(RNNCell, nonlinearity="relu"),
    "gru_simple": SimpleGRUCell,
    "gru": GRUCell,
    "lstm": LSTMCell,
    "peephole": PeepholeLSTMCell,
}
TOPOLOGIES = {"uni": (1, False), "bi": (1, True), "deep": (3, False), "deep_bi": (2, True)}
LAUNCHES = {
    "8x8 tiles": fused.Launch(8, 8, 128),
    "16x16 tl.dot": fused.Launch(16, 16, 16),
}


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def stacks(cell: str, topology: str, n_x: int, n_a: int, dtype: torch.dtype) -> tuple[RecurrentStack, ...]:
    """The same stack twice, with random non-zero weights: through seqexp's kernels (``custom``,
    never torch.nn's), and step by step."""
    num_layers, bidirectional = TOPOLOGIES[topology]
    fast = RecurrentStack(CELLS[cell], n_x, n_a, num_layers, bidirectional, impl="custom").to(dtype)
    with torch.no_grad():
        for p in fast.parameters():
            p.uniform_(-0.8, 0.8)
    step_by_step = copy.deepcopy(fast)
    step_by_step.impl = "loop"
    return fast, step_by_step


def everything(stack: RecurrentStack, x: Tensor, state: tuple[Tensor, ...]) -> list[Tensor]:
    """Outputs, last state, and the gradients of a loss on both (with random weights) with respect
    to the input, the initial state and every parameter."""
    x = x.detach().requires_grad_()
    state = tuple(s.detach().requires_grad_() for s in state)
    run = stack.run(x, state)
    generator = torch.Generator().manual_seed(1)
    results = [run.outputs, *run.state]
    loss = sum((r * torch.randn(r.shape, generator=generator, dtype=r.dtype)).sum() for r in results)
    return results + list(torch.autograd.grad(loss, [x, *state, *stack.parameters()]))


def initial_state(stack: RecurrentStack, batch: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
    layers = len(stack.layers) * stack.num_directions
    cell = stack.layers[0][0]
    return tuple(torch.randn(layers, batch, stack.hidden_size, dtype=dtype) for _ in range(cell.state_size))


@pytest.mark.parametrize("T", [1, 9])
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_manual_kernels_equal_the_cells(cell: str, topology: str, T: int, monkeypatch) -> None:
    monkeypatch.setattr(kernels, "backend", lambda cell, like: manual)
    fast, step_by_step = stacks(cell, topology, 3, 5, torch.float64)
    x = torch.randn(4, T, 3, dtype=torch.float64)
    state = initial_state(fast, 4, torch.float64)

    for got, expected in zip(everything(fast, x, state), everything(step_by_step, x, state), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("T", [1, 9])
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", ["lstm", "peephole"])
def test_the_onednn_kernel_equals_the_lstm_cells(cell: str, topology: str, T: int) -> None:
    """With 37 hidden units: vectorised blocks of the compiled loop and a remainder."""
    fast, step_by_step = stacks(cell, topology, 3, 37, torch.float32)
    assert kernels.kernel_for(fast.layers[0][0], torch.zeros(1)) == "onednn"
    x = torch.randn(4, T, 3)
    state = initial_state(fast, 4, torch.float32)

    for got, expected in zip(everything(fast, x, state), everything(step_by_step, x, state), strict=True):
        torch.testing.assert_close(got, expected, rtol=5e-5, atol=5e-5)


def test_float64_lstms_run_on_the_manual_kernel() -> None:
    """oneDNN takes float32 only."""
    assert kernels.kernel_for(PeepholeLSTMCell(3, 4), torch.zeros(1, dtype=torch.float64)) == "manual"


@pytest.mark.parametrize("topology", ["uni", "deep"])
@pytest.mark.parametrize("cell", ["lstm", "peephole"])
def test_the_onednn_kernel_on_sequences_of_different_lengths(cell: str, topology: str) -> None:
    """Lengths 9, 4, 1 and 6 in one batch, as seqexp's tasks batch them: padded on the right, the
    padding out of the loss. Read left to right, what fills the padding changes neither a
    sequence's outputs nor any gradient, and both equal the cells'."""
    fast, step_by_step = stacks(cell, topology, 3, 37, torch.float32)
    real = (torch.arange(9)[None, :] < torch.tensor([9, 4, 1, 6])[:, None])[..., None]  # (B, T, 1)
    x = torch.randn(4, 9, 3)
    weights = torch.randn(4, 9, 37)

    def masked(stack: RecurrentStack, x: Tensor) -> list[Tensor]:
        x = x.clone().requires_grad_()
        outputs = stack.run(x).outputs
        dx, *d_weights = torch.autograd.grad((outputs * weights * real).sum(), [x, *stack.parameters()])
        return [outputs * real, dx, *d_weights]

    got = masked(fast, x)
    refilled = masked(fast, torch.where(real, x, 100 * torch.randn_like(x)))
    for a, b, expected in zip(got, refilled, masked(step_by_step, x), strict=True):
        torch.testing.assert_close(a, b, rtol=5e-5, atol=5e-5)
        torch.testing.assert_close(a, expected, rtol=5e-5, atol=5e-5)
    assert not (got[1] * ~real).any(), "no gradient reaches the padding"


def test_the_onednn_kernel_saturates_like_the_cell() -> None:
    """Pre-activations far beyond σ's and tanh's range: gates of exactly 0 or 1, no NaN."""
    fast, step_by_step = stacks("peephole", "uni", 3, 37, torch.float32)
    x = 100 * torch.randn(4, 9, 3)
    state = initial_state(fast, 4, torch.float32)

    got, expected = everything(fast, x, state), everything(step_by_step, x, state)
    assert all(g.isfinite().all() for g in got)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)  # inputs of 100: gradients of W_x too


@pytest.fixture
def fresh_library(tmp_path, monkeypatch):
    """:func:`onednn.library` built anew, into an empty cache."""
    monkeypatch.setenv("SEQEXP_CACHE", str(tmp_path))
    onednn.library.cache_clear()
    yield tmp_path
    onednn.library.cache_clear()


def test_the_onednn_kernel_is_built_once_into_the_cache(fresh_library) -> None:
    assert onednn.library() is not None
    (built,) = fresh_library.glob("onednn_lstm-*.so")
    onednn.library.cache_clear()
    onednn.library()
    assert list(fresh_library.iterdir()) == [built]


def test_without_a_compiler_the_lstm_runs_on_the_manual_kernel(fresh_library, monkeypatch) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler")
    cell = LSTMCell(3, 4)
    with pytest.warns(
        UserWarning, match="no C\\+\\+ compiler 'no-such-compiler': set CXX or install g\\+\\+"
    ):
        assert kernels.kernel_for(cell, torch.zeros(1)) == "manual"
    outputs, _ = kernels.run(cell, torch.randn(5, 2, 3))
    assert outputs.shape == (5, 2, 4)


def test_without_onednn_the_lstm_runs_on_the_manual_kernel(fresh_library, monkeypatch) -> None:
    monkeypatch.setitem(onednn.WHEELS, "onednn-devel-cpu-gomp", "no/such/header.hpp")
    cell = PeepholeLSTMCell(3, 4)
    missing = "oneDNN is not installed .*: pip install onednn-cpu-gomp onednn-devel-cpu-gomp"
    with pytest.warns(UserWarning, match=missing):
        assert kernels.kernel_for(cell, torch.zeros(1)) == "manual"
    outputs, _ = kernels.run(cell, torch.randn(5, 2, 3))
    assert outputs.shape == (5, 2, 4)


def test_the_onednn_kernel_without_gradients_computes_the_same_sequence() -> None:
    """Nothing needs a gradient, as in evaluation and sampling."""
    cell = PeepholeLSTMCell(3, 37)
    x, state = torch.randn(9, 4, 3), (torch.randn(4, 37), torch.randn(4, 37))
    with torch.no_grad():
        outputs, (a, c) = kernels.run(cell, x, state)
        steps, (_, expected_c) = cell.steps(x, state)
    torch.testing.assert_close(outputs, torch.stack(steps), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, expected_c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("T", [1, 6])
@pytest.mark.parametrize("topology", ["uni", "deep_bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_triton_kernels_equal_the_cells(cell: str, topology: str, T: int, launch: str, monkeypatch) -> None:
    """On CPU in Triton's interpreter (see conftest.py), with batch and hidden sizes that leave
    tiles part empty."""
    monkeypatch.setattr(kernels, "backend", lambda cell, like: fused)
    monkeypatch.setattr(fused, "choose_launch", lambda *args: LAUNCHES[launch])
    fast, step_by_step = stacks(cell, topology, 3, 10, torch.float32)
    assert fast.kernel(torch.zeros(1)) == "triton"
    x = torch.randn(5, T, 3)
    state = initial_state(fast, 5, torch.float32)

    for got, expected in zip(everything(fast, x, state), everything(step_by_step, x, state), strict=True):
        assert_close_in_float32(got, expected)


def assert_close_in_float32(got: Tensor, expected: Tensor) -> None:
    """Equal but for float32 rounding. Both sides sum the same terms in another order, so an entry
    differs by the rounding of the largest terms, which cancellation can leave far larger than the
    entry: the absolute tolerance scales with the tensor's largest entry (tens in a ReLU RNN, whose
    gradients of W_a then differ by 1e-5 where they are 0.01). tl.dot is not the cause: the
    interpreter's is float32 np.matmul, and the kernels are nearer float64 than the cells are."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)


def test_a_cell_without_a_kernel_runs_its_own_loop() -> None:
    stack = RecurrentStack(partial(GRUCell, reset_after=True), 3, 4, impl="custom")
    assert kernels.kernel_for(stack.layers[0][0], torch.zeros(1)) == "loop"


def test_impl_loop_runs_the_cells_step_by_step() -> None:
    stack = RecurrentStack(LSTMCell, 3, 4, impl="loop")
    assert stack.kernel(torch.zeros(1)) == "loop"
    assert stack.run(torch.randn(2, 5, 3)).steps is None
    assert len(stack.run(torch.randn(2, 5, 3), keep_steps=True).steps["l0"]) == 5


def test_launches_keep_every_program_of_a_batch_block_running_at_once(monkeypatch) -> None:
    """The programs that share out the hidden units wait for each other: there may be no more
    of them than multiprocessors, or the barrier would never open."""
    for batch, hidden in [(64, 128), (64, 512), (256, 256), (3, 10), (1024, 1024)]:
        for dtype in (torch.float32, torch.bfloat16):
            launch = fused.choose_launch(batch, hidden, dtype, torch.device("cpu"))
            assert launch.splits == 1  # the interpreter runs one program at a time
    monkeypatch.setattr(fused, "processors", lambda device: 132)
    for batch, hidden in [(64, 128), (64, 512), (256, 256), (3, 10), (4096, 64)]:
        for dtype in (torch.float32, torch.bfloat16):
            launch = fused.choose_launch(batch, hidden, dtype, torch.device("cuda"))
            blocks = -(-batch // launch.batch)
            assert launch.splits == 1 or blocks * launch.splits <= 132
    assert fused.choose_launch(64, 512, torch.float32, torch.device("cuda")).splits > 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_the_linear_scans_hand_written_backward_is_its_gradient(dtype: torch.dtype) -> None:
    """``h<t> = λ<t> ⊙ h<t-1> + β<t>``, real or complex (the LRU's), with λ per step or shared
    (a view expanded over time and batch, as a time-invariant cell gives it)."""
    T, B, S = 6, 2, 3
    lam, beta = (torch.randn(T, B, S, dtype=dtype, requires_grad=True) for _ in range(2))
    shared = torch.randn(S, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, S, dtype=dtype, requires_grad=True)

    assert torch.autograd.gradcheck(scan.linear_scan, (lam, beta, h0))
    expanded = lambda s, b, h: scan.linear_scan(s.expand(T, B, S), b, h)  # noqa: E731
    assert torch.autograd.gradcheck(expanded, (shared, beta, h0))
    h = scan.linear_scan(lam, beta, h0)
    torch.testing.assert_close(h[1], lam[1] * (lam[0] * h0 + beta[0]) + beta[1])


def test_a_cell_with_a_fast_path_of_its_own_runs_on_it() -> None:
    class OwnPath(RNNCell):
        """An RNN whose whole-sequence path is its own (here: the loop, counted)."""

        fast_path = True
        kernel_equations = RecurrentCell.kernel_equations  # not the kernels' RNN: its own path
        calls = 0

        def sequence(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple:
            OwnPath.calls += 1
            return super().sequence(x, state)

    cell = OwnPath(3, 4)
    x = torch.randn(5, 2, 3)

    assert kernels.kernel_for(cell, x) == "cell" and kernels.has_kernel(cell)
    outputs, _ = kernels.run(cell, x)
    assert OwnPath.calls == 1
    torch.testing.assert_close(outputs, cell(x)[0])
