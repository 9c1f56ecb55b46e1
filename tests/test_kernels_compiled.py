"""The compiled scans (seqexp.kernels.compiled): their hand-written backward passes are their
gradients (float64, real and complex, λ per step or shared), and every recurrence linear in its
state in the ``cell`` group trains through them as through the torch scan, to float32 rounding."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from training import trained

from seqexp import kernels
from seqexp.bench.kernels import cell_factory, shipped_cells
from seqexp.cells import LinearRecurrence, MinGRUCell
from seqexp.kernels import compiled
from seqexp.layers import RecurrentStack

T, B, S = 5, 2, 3


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("lam_shape", [(T, B, S), (S,), (B, S), (T, 1, S)], ids=str)
def test_the_scans_backward_is_its_gradient(dtype: torch.dtype, lam_shape: tuple[int, ...]) -> None:
    """λ per step, or constant over time, the batch or both (the LRU's): its gradient is summed
    back to its own shape."""
    torch.manual_seed(0)
    lam = torch.randn(lam_shape, dtype=dtype, requires_grad=True)
    beta = torch.randn(T, B, S, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, S, dtype=dtype, requires_grad=True)

    assert torch.autograd.gradcheck(compiled.linear_scan, (lam, beta, h0))
    h = compiled.linear_scan(lam, beta, h0)
    full = lam.expand(T, B, S)
    torch.testing.assert_close(h[1], full[1] * (full[0] * h0 + beta[0]) + beta[1])


@pytest.mark.parametrize("chunk", [1, 2, T], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("family, blocks", [("mingru", 2), ("minlstm", 3)])
def test_the_gated_scans_backward_is_its_gradient(family: str, blocks: int, chunk: int) -> None:
    """Pre-activations on both sides of ``g``'s kink at 0, and some saturating the gates; the
    steps made a chunk at a time (a state and its gradient carried from chunk to chunk, a last
    chunk shorter than the others) or all at once."""
    torch.manual_seed(0)
    n_x = 4
    x = torch.randn(T, B, n_x, dtype=torch.float64, requires_grad=True)
    W = (1.5 * torch.randn(blocks * S, n_x, dtype=torch.float64)).requires_grad_()
    b = torch.randn(blocks * S, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, S, dtype=torch.float64, requires_grad=True)

    def scan(x: Tensor, W: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        return compiled.Gated.apply(x, W, b, h0, family, chunk)

    assert torch.autograd.gradcheck(scan, (x, W, b, h0))
    k = torch.nn.functional.linear(x, W, b)
    assert (k > 0).any() and (k < 0).any() and k.abs().max() > 5


def test_the_selective_scans_backward_is_its_gradient_and_the_last_states() -> None:
    torch.manual_seed(0)
    D, N = 3, 4
    u, dt = torch.randn(T, B, D, dtype=torch.float64), torch.rand(T, B, D, dtype=torch.float64)
    A = -torch.rand(D, N, dtype=torch.float64) * 2
    Bm, Cm = (torch.randn(T, B, N, dtype=torch.float64) for _ in range(2))
    h0 = torch.randn(B, D, N, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (u, dt, A, Bm, Cm, h0)]

    assert torch.autograd.gradcheck(compiled.Selective.apply, inputs)
    y, hT = compiled.Selective.apply(*inputs)
    h = h0
    for t in range(T):  # S6, written out
        h = torch.exp(dt[t, :, :, None] * A) * h + (dt[t] * u[t])[..., None] * Bm[t, :, None, :]
        torch.testing.assert_close(y[t], (h * Cm[t, :, None, :]).sum(-1))
    torch.testing.assert_close(hT, h)


LINEAR_CELLS = [name for name in shipped_cells() if issubclass(cell_factory(name).func, LinearRecurrence)]
FLOAT32_TRAINING = {"rtol": 0.0, "atol": 1e-6}
"""Five times the largest difference measured here (seed 0): 6e-8 (minGRU, SSM), 1.2e-7 (LRU),
1.9e-7 (minLSTM), a unit or two in the last place of float32."""


def test_every_linear_recurrence_of_the_cell_group_is_found() -> None:
    assert {"mingru", "minlstm", "lru", "ssm"} <= set(LINEAR_CELLS)


@pytest.mark.parametrize("cell", LINEAR_CELLS)
def test_the_compiled_scan_trains_as_the_torch_scan_does(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same float32 weights, batches and Adam, two layers: the same parameters after 20 steps,
    to float32 rounding (the library hidden from seqexp.kernels for the reference)."""
    torch.manual_seed(0)
    make_cell = cell_factory(cell)
    stack = RecurrentStack(make_cell, 3, 4, 2, False, impl="custom")
    reference = RecurrentStack(make_cell, 3, 4, 2, False, impl="custom")
    reference.load_state_dict(stack.state_dict())
    initial = {name: p.detach().clone() for name, p in stack.named_parameters()}
    batches = [(torch.randn(2, 6, 3), torch.randn(2)) for _ in range(20)]
    x: Tensor = batches[0][0]
    assert kernels.kernel_for(stack.layers[0][0], x) == "compiled"

    got = trained(stack, batches)
    with monkeypatch.context() as patch:
        patch.setattr(compiled, "library", lambda: None)
        assert reference.kernel(x) == "scan"
        expected = trained(reference, batches)

    for name, p in got.items():
        assert (p - initial[name]).abs().max() > 1e-3, f"{name} did not train"
        torch.testing.assert_close(p, expected[name], **FLOAT32_TRAINING, msg=name)


def test_a_fused_scan_that_does_not_exist_is_refused_naming_those_that_do() -> None:
    class Misnamed(MinGRUCell):
        def scan_equations(self, x: Tensor) -> tuple[str, dict[str, Tensor]]:
            W, b = self.gates()
            return "min_gru", {"x": x, "W": W, "b": b}

    cell = Misnamed(3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match="Misnamed.scan_equations names the fused scan 'min_gru'.*mingru"):
        compiled.run(cell, x, cell.initial_state(2, x))


@pytest.mark.parametrize("cell, blocks", [("mingru", 2), ("minlstm", 3)])
def test_the_gated_scans_keep_no_pre_activations_for_the_backward_pass(cell: str, blocks: int) -> None:
    """Autograd keeps the layer's input and output (and the weights), never the pre-activations of
    every step: the backward pass makes them again, a chunk at a time."""
    stack = RecurrentStack(cell_factory(cell), 3, 4, 1, False, impl="custom")
    x = torch.randn(2, 7, 3)
    saved: list[tuple[int, ...]] = []

    def keep(tensor: Tensor) -> Tensor:
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        stack(x)
    assert (7, 2, 3) in saved and (7, 2, 4) in saved  # x and h<1..T>, time first
    assert not [shape for shape in saved if shape[-1] == blocks * 4 and len(shape) == 3], saved
