"""The onednn kernel's boundary with Python: it leaves the process's floating point alone, refuses
bad inputs with a Python error, handles a sequence of no steps, and may be called from several
threads at once; and it trains as torch.nn.LSTM and the manual kernel do, to float32 rounding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from torch import Tensor
from training import trained

from seqexp import kernels
from seqexp.cells import LSTMCell, PeepholeLSTMCell, SLSTMCell
from seqexp.kernels import compiler, onednn
from seqexp.layers.recurrent import RecurrentStack

SUBNORMAL = 1e-39  # below float32's smallest normal, 1.2e-38


def run_python(code: str, **environment: str) -> str:
    """``code`` run in a fresh Python, whose floating-point state the test cannot contaminate;
    its output (fails the test with its errors if it fails)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **environment},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_subnormals_survive_after_the_kernel_loaded_and_ran() -> None:
    """In the main thread (torch and numpy) and in a torch parallel region whose threads the
    kernel's own OpenMP region started, after it ran forward and backward."""
    run_python(f"""
        import numpy as np
        import torch
        from seqexp.cells import PeepholeLSTMCell
        from seqexp import kernels

        torch.set_num_threads(2)
        cell = PeepholeLSTMCell(3, 37)
        x = torch.randn(9, 4, 3, requires_grad=True)
        assert kernels.kernel_for(cell, x) == "onednn"
        outputs, (_, c) = kernels.run(cell, x)
        (outputs.sum() + c.sum()).backward()
        assert x.grad.abs().sum() > 0

        assert np.float32({SUBNORMAL}) * np.float32(1.5) != 0, "numpy flushes subnormals"
        assert (torch.tensor({SUBNORMAL}) * 1.5).item() != 0, "torch flushes subnormals"
        many = torch.full((1 << 22,), {SUBNORMAL})  # large enough for both threads to take part
        assert torch.get_num_threads() == 2
        assert (many * 1.5 != 0).all(), "a parallel product flushes subnormals"
        assert (torch.nn.functional.relu(many) != 0).all(), "a parallel relu flushes subnormals"
        assert (many.sum() != 0) and (many.add(many) != 0).all()
    """)


def test_a_library_that_sets_flush_to_zero_is_refused_and_the_setting_undone(tmp_path: Path) -> None:
    """Linked with -ffast-math, as the kernel once was, GCC adds crtfastmath.o: loading is refused
    and subnormals survive."""
    source = tmp_path / "empty.cpp"
    source.write_text('extern "C" int nothing() { return 0; }\n')
    output = run_python(
        f"""
        import pathlib
        from seqexp.kernels import compiler

        library = compiler.build(pathlib.Path({str(source)!r}), link_flags=["-ffast-math"])
        assert compiler.subnormals_survive()
        try:
            compiler.load(library)
        except OSError as error:
            print(error)
        assert compiler.subnormals_survive()
        """,
        SEQEXP_CACHE=str(tmp_path / "cache"),
    )
    assert "set flush-to-zero for this process" in output
    assert "library left unused" in output


def test_the_kernel_is_compiled_with_fast_math_but_linked_without_it() -> None:
    assert "-ffast-math" in compiler.COMPILE_FLAGS
    assert not {"-ffast-math", "-Ofast", "-funsafe-math-optimizations"} & set(compiler.LINK_FLAGS)


def lstm_problem(
    seed: int, T: int = 20, B: int = 6, n_x: int = 5, n: int = 37, peepholes: bool = True
) -> list[Tensor | None]:
    """Inputs of :func:`onednn.lstm`, each needing its gradient."""
    generator = torch.Generator().manual_seed(seed)

    def random(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).requires_grad_()

    p = random(3, n) if peepholes else None
    return [
        random(T, B, n_x),
        random(4 * n, n_x),
        random(4 * n),
        random(4 * n, n),
        random(B, n),
        random(B, n),
        p,
    ]


def outputs_and_gradients(inputs: list[Tensor | None]) -> list[Tensor]:
    """The kernel's outputs, and the gradients of a fixed loss on them for every input."""
    outputs, c = onednn.lstm(*inputs)
    loss = (outputs * torch.linspace(-1, 1, outputs.shape[-1])).sum() + (c * c).sum()
    given = [t for t in inputs if t is not None]
    return [outputs, c, *torch.autograd.grad(loss, given)]


def test_two_threads_at_once_compute_what_one_computes_alone() -> None:
    problems = [lstm_problem(seed, peepholes=seed == 0) for seed in range(2)]
    alone = [outputs_and_gradients(problem) for problem in problems]
    together: list[list[list[Tensor]]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(index: int) -> None:
        try:
            start.wait()
            for _ in range(5):
                together[index].append(outputs_and_gradients(problems[index]))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for expected, runs in zip(alone, together, strict=True):
        assert len(runs) == 5
        for got in runs:
            for g, e in zip(got, expected, strict=True):
                torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("peepholes", [False, True])
def test_a_sequence_of_no_steps_passes_the_gradient_of_c_to_c0(peepholes: bool) -> None:
    """T = 0: no output, c<T> = c<0>, so ∂L/∂c<0> = ∂L/∂c<T>; every other gradient is 0."""
    x, W_x, b, W_a, a0, c0, p = lstm_problem(0, T=0, peepholes=peepholes)
    outputs, c = onednn.lstm(x, W_x, b, W_a, a0, c0, p)
    assert outputs.shape == (0, 6, 37)
    assert torch.equal(c, c0)

    dc = torch.randn_like(c)
    given = [t for t in (x, W_x, b, W_a, a0, c0, p) if t is not None]
    dx, dW_x, db, dW_a, da0, dc0, *dp = torch.autograd.grad([outputs.sum(), c], given, [None, dc])
    assert torch.equal(dc0, dc)
    assert dx.shape == x.shape
    for gradient in (dW_x, db, dW_a, da0, *dp):
        assert torch.equal(gradient, torch.zeros_like(gradient))


def test_a_batch_of_no_rows_is_empty() -> None:
    inputs = lstm_problem(0, B=0)
    outputs, c, dx, *gradients = outputs_and_gradients(inputs)
    assert outputs.shape == (20, 0, 37) and c.shape == (0, 37) and dx.shape == (20, 0, 5)
    assert all(not g.any() for g in gradients)


def replaced(index: int, tensor: Tensor) -> list[Tensor | None]:
    inputs = lstm_problem(0)
    inputs[index] = tensor
    return inputs


BAD_INPUTS = {
    "W_x in float64": (
        replaced(1, torch.randn(148, 5, dtype=torch.float64)),
        TypeError,
        "W_x is torch.float64",
    ),
    "c0 in bfloat16": (
        replaced(5, torch.randn(6, 37, dtype=torch.bfloat16)),
        TypeError,
        "c0 is torch.bfloat16",
    ),
    "W_a not square per gate": (replaced(3, torch.randn(148, 36)), ValueError, "W_a must be \\(144, 36\\)"),
    "W_x for another input size": (replaced(1, torch.randn(148, 4)), ValueError, "W_x must be \\(148, 5\\)"),
    "b too short": (replaced(2, torch.randn(147)), ValueError, "b must be \\(148,\\)"),
    "a0 for another batch": (replaced(4, torch.randn(7, 37)), ValueError, "a0 must be \\(6, 37\\)"),
    "peepholes for 2 gates": (replaced(6, torch.randn(2, 37)), ValueError, "peepholes must be \\(3, 37\\)"),
    "x without a batch": (replaced(0, torch.randn(20, 5)), ValueError, "x must be \\(T, B, n_x\\)"),
    "W_a on the meta device": (
        replaced(3, torch.empty(148, 37, device="meta")),
        ValueError,
        "W_a is on meta",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_a_bad_input_is_a_python_error_naming_it(case: str) -> None:
    inputs, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        onednn.lstm(*inputs)


def test_an_address_of_a_non_contiguous_tensor_is_never_passed() -> None:
    transposed = torch.zeros(4, 4).t()
    with pytest.raises(ValueError, match="argument 5 of lstm_forward is not contiguous"):
        onednn.call("lstm_forward", 1, 1, 1, 1, None, transposed, *[torch.zeros(16)] * 6)


def test_an_error_in_cpp_is_a_python_error() -> None:
    """A size oneDNN refuses (B = -1) comes back as a RuntimeError with oneDNN's message."""
    tensors = [torch.zeros(64)] * 13
    with pytest.raises(RuntimeError, match="oneDNN refused the LSTM: could not construct a memory"):
        onednn.call("lstm_backward", 1, -1, 1, 1, None, *tensors)


# --- Training in float32: the oneDNN kernel against torch.nn.LSTM (the LSTM) and against the manual
# kernel (the peephole LSTM, which torch.nn lacks), as tests/test_cells.py's float64 training test.

TRAINING_TOPOLOGIES = {"uni": (1, False), "deep_bi": (2, True)}
TRAINING_CELLS = {"lstm": LSTMCell, "peephole": PeepholeLSTMCell}
FLOAT32_TRAINING = {"rtol": 0.0, "atol": 1e-6}
"""Four times the largest difference measured. Here (seed 0) at most 6e-8 (uni) and 1.2e-7
(deep_bi) for the LSTM, 6e-8 and 2.5e-7 for the peephole LSTM: one or two units in the last place
of parameters near 1. Over 100 seeds the LSTM stays within 2.5e-7; the peephole LSTM does but for a
rare parameter whose first Adam step, on a gradient that weight decay brings near zero, amplifies
float32 rounding (up to 8e-6, each float32 kernel then as far from float64 as the other)."""


@pytest.mark.parametrize("topology", TRAINING_TOPOLOGIES)
@pytest.mark.parametrize("cell", TRAINING_CELLS)
def test_onednn_trains_as_torch_and_the_manual_kernel_do(
    cell: str, topology: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same float32 weights, batches and Adam: the same parameters after 20 steps, to float32
    rounding. The reference is torch.nn.LSTM for the LSTM, the manual kernel for the peephole LSTM
    (the oneDNN library hidden from :func:`seqexp.kernels.backend`)."""
    torch.manual_seed(0)
    num_layers, bidirectional = TRAINING_TOPOLOGIES[topology]
    make_cell = TRAINING_CELLS[cell]
    reference_impl = "native" if cell == "lstm" else "custom"
    stack = RecurrentStack(make_cell, 3, 4, num_layers, bidirectional, impl="custom")
    with torch.no_grad():  # peepholes start at zero: away from it, so that they take part
        for name, p in stack.named_parameters():
            if name.split(".")[-1] in ("p_u", "p_f", "p_o"):
                p.uniform_(-0.5, 0.5)
    reference = RecurrentStack(make_cell, 3, 4, num_layers, bidirectional, impl=reference_impl)
    reference.load_state_dict(stack.state_dict())
    initial = {name: p.detach().clone() for name, p in stack.named_parameters()}
    batches = [(torch.randn(2, 6, 3), torch.randn(2)) for _ in range(20)]
    x = batches[0][0]
    assert kernels.kernel_for(stack.layers[0][0], x) == "onednn"

    got = trained(stack, batches)
    with monkeypatch.context() as patch:
        patch.setattr(onednn, "library", lambda: None)
        assert reference.kernel(x) == ("native" if cell == "lstm" else "manual")
        expected = trained(reference, batches)

    assert got.keys() == expected.keys()
    for name, p in got.items():
        assert (p - initial[name]).abs().max() > 1e-2, f"{name} did not train"
        torch.testing.assert_close(p, expected[name], **FLOAT32_TRAINING, msg=name)


# --- The sLSTM: the same C++ loop with its own gate math, against its step through autograd.


def slstm_with_states(num_heads: int) -> tuple[SLSTMCell, Tensor, tuple[Tensor, ...]]:
    """An sLSTM whose gates and states are far from their starting values, so that the stabiliser
    takes both branches; x (12, 3, 5) and states needing their gradients."""
    cell = SLSTMCell(5, 8, num_heads=num_heads)
    with torch.no_grad():
        cell.R.mul_(3)
        cell.b.uniform_(-2, 2)
    x = torch.randn(12, 3, 5, requires_grad=True)
    states = tuple((s + 0.5 * torch.rand_like(s)).requires_grad_() for s in cell.initial_state(3, x))
    return cell, x, states


@pytest.mark.parametrize("num_heads", [1, 2])
def test_the_slstm_kernel_computes_its_step_and_gradients(num_heads: int) -> None:
    """Outputs, last states and the gradients of the input, the states and every parameter, from
    a random weighting of all of them, in float32."""
    torch.manual_seed(0)
    cell, x, states = slstm_with_states(num_heads)
    assert kernels.kernel_for(cell, x) == "onednn"
    outputs, last = kernels.run(cell, x, states)
    steps, step_last = cell.steps(x, states)
    weights = [torch.randn_like(t) for t in (outputs, *last)]

    def gradients(results: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        loss = sum((r * w).sum() for r, w in zip(results, weights, strict=True))
        return torch.autograd.grad(loss, [x, *states, *cell.parameters()])

    torch.testing.assert_close(outputs, torch.stack(steps), rtol=0, atol=1e-6)
    for got, expected in zip(
        gradients((outputs, *last)), gradients((torch.stack(steps), *step_last)), strict=True
    ):
        assert expected.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)


def test_the_slstm_kernel_trains_as_its_step_does() -> None:
    """Two layers, 20 Adam steps in float32 through the kernel and through the step: the same
    parameters, to float32 rounding (here at most 6e-8), but for the input gate's bias. From a
    zero state the sLSTM does not depend on it (a shift of every ĩ shifts every m<t> alike, and
    i<t>, f<t> are unchanged): its gradient is rounding alone (1e-13 here), whose sign Adam turns
    into whole steps, differently for each order of summation."""
    torch.manual_seed(0)
    stack = RecurrentStack(SLSTMCell, 3, 4, 2, False, impl="custom")
    loop = RecurrentStack(SLSTMCell, 3, 4, 2, False, impl="loop")
    loop.load_state_dict(stack.state_dict())
    batches = [(torch.randn(2, 6, 3), torch.randn(2)) for _ in range(20)]
    assert stack.kernel(batches[0][0]) == "onednn"
    other_gates = torch.arange(16) // 4 != 1  # b = [b_z, b_i, b_f, b_o], 4 units each
    for layer in (stack, loop):
        bias = layer.layers[0][0].b
        (gradient,) = torch.autograd.grad(layer(batches[0][0])[1].square().sum(), [bias])
        assert gradient[~other_gates].abs().max() < 1e-9 < gradient.abs().max()

    got, expected = trained(stack, batches), trained(loop, batches)
    for name, p in got.items():
        kept = other_gates if name.endswith(".b") else slice(None)
        torch.testing.assert_close(p[kept], expected[name][kept], **FLOAT32_TRAINING, msg=name)


def test_a_bad_slstm_input_is_a_python_error_naming_it() -> None:
    cell, x, states = slstm_with_states(1)
    w = cell.kernel_equations()[1]
    with pytest.raises(ValueError, match="R must be \\(32, 8\\)"):
        onednn.slstm(x, w["W"], w["b"], w["R"][:-1], *states)
    with pytest.raises(TypeError, match="x is torch.float64"):
        onednn.slstm(x.double(), w["W"], w["b"], w["R"], *states)
