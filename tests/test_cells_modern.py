"""The modern cells compute their papers' equations, transcribed here from the papers in float64, one
line per equation; their step loop, their fast paths (the compiled scan seqexp.kernels.run chooses on
CPU and the torch scan) and, for minGRU and minLSTM, the paper's log-space scan all equal the
transcription, and the fast paths' gradients the loop's.

- minGRU, minLSTM: Feng et al. 2024, "Were RNNs All We Needed?";
- LRU: Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences";
- sLSTM: Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory" (the stabiliser as its code);
- S6: Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from seqexp import kernels
from seqexp.cells import (
    LinearRecurrence,
    LRUCell,
    MinGRUCell,
    MinLSTMCell,
    Recurrence,
    SelectiveSSMCell,
    SLSTMCell,
)
from seqexp.kernels import scan

T, B, N_X, N_A = 7, 3, 5, 8
STATE_SIZE = 3
EXACT = {"rtol": 0.0, "atol": 1e-10}


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def randomized(
    cell: Recurrence, low: float = -1.0, high: float = 1.0, keep: tuple[str, ...] = ()
) -> Recurrence:
    """``cell`` in float64, every parameter but those in ``keep`` uniform in ``[low, high]``."""
    cell = cell.double()
    with torch.no_grad():
        for name, p in cell.named_parameters():
            if name not in keep:
                p.uniform_(low, high)
    return cell


def inputs(scale: float = 1.0) -> Tensor:
    return scale * torch.randn(T, B, N_X, dtype=torch.float64)


# --- The papers' equations, transcribed: one step per loop iteration, from h<0> = 0.


def sigma(z: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-z))


def softplus(z: Tensor) -> Tensor:
    return torch.log1p(torch.exp(z))


def g(z: Tensor) -> Tensor:
    """minGRU's candidate activation: ``z + 0.5`` for ``z >= 0``, ``σ(z)`` below."""
    return torch.where(z >= 0, z + 0.5, sigma(z))


def min_gru(cell: MinGRUCell, xs: Tensor) -> Tensor:
    h = torch.zeros(B, N_A, dtype=xs.dtype)
    outputs = []
    for x in xs:
        z = sigma(x @ cell.W_z.T + cell.b_z)
        h_tilde = g(x @ cell.W_h.T + cell.b_h)
        h = (1 - z) * h + z * h_tilde
        outputs.append(h)
    return torch.stack(outputs)


def min_lstm(cell: MinLSTMCell, xs: Tensor) -> Tensor:
    h = torch.zeros(B, N_A, dtype=xs.dtype)
    outputs = []
    for x in xs:
        f = sigma(x @ cell.W_f.T + cell.b_f)
        i = sigma(x @ cell.W_i.T + cell.b_i)
        f_prime, i_prime = f / (f + i), i / (f + i)
        h_tilde = g(x @ cell.W_h.T + cell.b_h)
        h = f_prime * h + i_prime * h_tilde
        outputs.append(h)
    return torch.stack(outputs)


def lru(cell: LRUCell, xs: Tensor) -> Tensor:
    """Λ in polar form: modulus ``exp(−exp(ν))``, phase ``exp(θ)``."""
    modulus, phase = torch.exp(-torch.exp(cell.nu_log)), torch.exp(cell.theta_log)
    Lambda = modulus * (torch.cos(phase) + 1j * torch.sin(phase))
    gamma = torch.exp(cell.gamma_log)
    B_complex = cell.B_re + 1j * cell.B_im
    C_complex = cell.C_re + 1j * cell.C_im
    h = torch.zeros(B, cell.N, dtype=torch.complex128)
    outputs = []
    for x in xs:
        h = Lambda * h + gamma * (x.to(torch.complex128) @ B_complex.T)
        Dx = cell.D * x if cell.D.dim() == 1 else x @ cell.D.T
        outputs.append((h @ C_complex.T).real + Dx)
    return torch.stack(outputs)


def slstm_gate_weights(cell: SLSTMCell) -> list[tuple[Tensor, Tensor, Tensor]]:
    """``(W_g, R_g, b_g)`` for g = z, i, f, o, each ``R_g`` the full block-diagonal (n_a, n_a) matrix
    of the heads' (head, head) blocks ``R[g, head]`` (rows: outputs, columns: inputs)."""
    W, b = cell.W.chunk(4), cell.b.chunk(4)
    return [(W[k], torch.block_diag(*cell.R[k].unbind(0)), b[k]) for k in range(4)]


def slstm(cell: SLSTMCell, xs: Tensor, branches: list[str] | None = None) -> Tensor:
    """The stabilised sLSTM; ``branches`` collects which term of the stabiliser's max each unit took
    after the first step."""
    weights = slstm_gate_weights(cell)
    h = c = n = m = torch.zeros(B, N_A, dtype=xs.dtype)
    outputs = []
    for x in xs:
        z_, i_, f_, o_ = (x @ W.T + h @ R.T + b for W, R, b in weights)
        log_f = torch.log(sigma(f_))
        if bool((n == 0).all()):  # the xLSTM code's rule for the first step
            m_new = i_
        else:
            m_new = torch.maximum(log_f + m, i_)
            if branches is not None:
                branches.extend("i" if took else "f" for took in (i_ > log_f + m).flatten().tolist())
        i = torch.exp(i_ - m_new)
        f = torch.exp(log_f + m - m_new)
        c = f * c + i * torch.tanh(z_)
        n = f * n + i
        h = sigma(o_) * c / n
        m = m_new
        outputs.append(h)
    return torch.stack(outputs)


def slstm_unstabilised(cell: SLSTMCell, xs: Tensor) -> Tensor:
    """The sLSTM without its stabiliser: ``i = exp(ĩ)``, ``f = σ(f̃)``."""
    weights = slstm_gate_weights(cell)
    h = c = n = torch.zeros(B, N_A, dtype=xs.dtype)
    outputs = []
    for x in xs:
        z_, i_, f_, o_ = (x @ W.T + h @ R.T + b for W, R, b in weights)
        i, f = torch.exp(i_), sigma(f_)
        c = f * c + i * torch.tanh(z_)
        n = f * n + i
        h = sigma(o_) * c / n
        outputs.append(h)
    return torch.stack(outputs)


def selective_ssm(cell: SelectiveSSMCell, xs: Tensor) -> Tensor:
    A = -torch.exp(cell.A_log)  # (n_a, N)
    h = torch.zeros(B, N_A, cell.N, dtype=xs.dtype)
    outputs = []
    for x in xs:
        u = x @ cell.W_u.T
        delta = softplus((u @ cell.W_dt_down.T) @ cell.W_dt_up.T + cell.b_dt)  # (B, n_a)
        B_t, C_t = u @ cell.W_B.T, u @ cell.W_C.T  # (B, N)
        A_bar = torch.exp(torch.einsum("bd,dn->bdn", delta, A))
        h = A_bar * h + torch.einsum("bd,bd,bn->bdn", delta, u, B_t)
        outputs.append(torch.einsum("bdn,bn->bd", h, C_t) + cell.D * u)
    return torch.stack(outputs)


# --- The cells, with parameters away from their initialisation.


def min_gru_cell() -> MinGRUCell:
    return randomized(MinGRUCell(N_X, N_A))


def min_lstm_cell() -> MinLSTMCell:
    return randomized(MinLSTMCell(N_X, N_A))


def lru_cell(n_x: int = N_X) -> LRUCell:
    """ν and θ as initialised on the ring [0.4, 0.95] with phases up to π; γ away from its
    initial ``sqrt(1 − |λ|²)``, so that a cell reading it from Λ would differ."""
    cell = LRUCell(n_x, N_A, state_size=6, r_min=0.4, r_max=0.95, max_phase=math.pi)
    cell = randomized(cell, keep=("nu_log", "theta_log"))
    with torch.no_grad():
        cell.gamma_log.uniform_(-1.0, 0.5)
    return cell


def slstm_cell(num_heads: int = 2, input_bias: float = 0.0) -> SLSTMCell:
    """Gates' biases spread so that the stabiliser's max takes either term; ``input_bias`` added
    to ĩ's."""
    cell = randomized(SLSTMCell(N_X, N_A, num_heads=num_heads))
    with torch.no_grad():
        _, b_i, b_f, _ = cell.b.view(4, N_A)
        b_i.uniform_(-4.0, 4.0).add_(input_bias)
        b_f.uniform_(-2.0, 4.0)
    return cell


def selective_ssm_cell() -> SelectiveSSMCell:
    cell = randomized(SelectiveSSMCell(N_X, N_A, state_size=STATE_SIZE, dt_rank=2))
    with torch.no_grad():
        cell.A_log.uniform_(-1.0, 1.5)
        cell.b_dt.uniform_(-2.0, 1.0)
    return cell


CASES: dict[str, tuple[Callable[[], Recurrence], Callable[[Recurrence, Tensor], Tensor], str]] = {
    "min_gru": (min_gru_cell, min_gru, "compiled"),
    "min_lstm": (min_lstm_cell, min_lstm, "compiled"),
    "lru_diagonal_D": (lambda: lru_cell(n_x=N_A), lru, "compiled"),
    "lru_dense_D": (lru_cell, lru, "compiled"),
    "slstm_1_head": (lambda: slstm_cell(num_heads=1), slstm, "loop"),
    "slstm_2_heads": (slstm_cell, slstm, "loop"),
    "slstm_8_heads": (lambda: slstm_cell(num_heads=8), slstm, "loop"),
    "slstm_huge_input_gate": (lambda: slstm_cell(input_bias=800.0), slstm, "loop"),
    "selective_ssm": (selective_ssm_cell, selective_ssm, "compiled"),
}


def case_inputs(cell: Recurrence) -> Tensor:
    return torch.randn(T, B, cell.input_size, dtype=torch.float64)


@pytest.mark.parametrize("case", CASES)
def test_step_loop_and_fast_path_compute_the_papers_equations(case: str) -> None:
    make_cell, transcription, kernel = CASES[case]
    cell = make_cell()
    x = case_inputs(cell)
    assert kernels.kernel_for(cell, x) == kernel
    with torch.no_grad():
        expected = transcription(cell, x)
        torch.testing.assert_close(cell(x)[0], expected, **EXACT)
        for fast_path in fast_paths(cell):
            torch.testing.assert_close(fast_path(x), expected, **EXACT)
    assert expected.isfinite().all()


def fast_paths(cell: Recurrence) -> list[Callable[[Tensor], Tensor]]:
    """The whole-sequence paths that run ``cell`` (outputs only): what :func:`kernels.run` chooses
    and, for a linear recurrence, the torch scan too (the compiled one's fallback)."""
    chosen = lambda x: kernels.run(cell, x)[0]  # noqa: E731
    if not isinstance(cell, LinearRecurrence):
        return [chosen]
    return [chosen, lambda x: scan.run(cell, x, cell.initial_state(x.shape[1], x))[0]]


@pytest.mark.parametrize("case", CASES)
def test_fast_path_gradients_equal_the_step_loops(case: str) -> None:
    """Of a random weighted sum of the outputs, for every parameter and the input; the
    transcription's gradients (autograd through it) too."""
    make_cell, transcription, _ = CASES[case]
    cell = make_cell()
    x = case_inputs(cell).requires_grad_()
    weights = torch.randn(T, B, N_A, dtype=torch.float64)
    names, params = zip(*cell.named_parameters(), strict=True)

    def gradients(outputs: Tensor) -> tuple[Tensor, ...]:
        return torch.autograd.grad((outputs * weights).sum(), [*params, x])

    loop = gradients(cell(x)[0])
    transcribed = gradients(transcription(cell, x))
    for fast_path in fast_paths(cell):
        fast = gradients(fast_path(x))
        for name, g_loop, g_fast, g_transcribed in zip([*names, "x"], loop, fast, transcribed, strict=True):
            assert g_loop.abs().sum() > 0, name
            torch.testing.assert_close(g_fast, g_loop, **EXACT, msg=name)
            torch.testing.assert_close(g_transcribed, g_loop, **EXACT, msg=name)


@pytest.mark.parametrize("make_cell", [min_gru_cell, min_lstm_cell], ids=["min_gru", "min_lstm"])
def test_paper_log_space_scan_computes_the_papers_equations(make_cell: Callable[[], Recurrence]) -> None:
    cell = make_cell()
    x = inputs(scale=2.0)
    transcription = min_gru if isinstance(cell, MinGRUCell) else min_lstm
    candidate = x @ cell.W_h.T + cell.b_h
    assert (candidate >= 0).any() and (candidate < 0).any(), "both branches of g are taken"
    with torch.no_grad():
        torch.testing.assert_close(cell.paper_scan(x), transcription(cell, x), **EXACT)


def test_min_lstm_normalised_gates_sum_to_one() -> None:
    """With ``h̃ = g(0.5) = 1`` the cell's coefficients are ``f'`` and ``i' h̃ = i'``."""
    cell = min_lstm_cell()
    with torch.no_grad():
        cell.W_h.zero_()
        cell.b_h.fill_(0.5)
        f_prime, i_prime = cell.coefficients(inputs(scale=3.0))
    assert (f_prime > 0).all() and (i_prime > 0).all()
    torch.testing.assert_close(f_prime + i_prime, torch.ones_like(f_prime), rtol=0, atol=1e-15)


def test_slstm_stabiliser_takes_both_terms_of_its_max() -> None:
    """The test cells above exercise the stabiliser: after the first step, its max is sometimes
    ``log σ(f̃) + m<t-1>`` and sometimes ``ĩ``."""
    branches: list[str] = []
    with torch.no_grad():
        slstm(slstm_cell(), inputs(), branches)
    assert {"i", "f"} <= set(branches)
    assert min(branches.count("i"), branches.count("f")) >= 0.1 * len(branches)


def test_slstm_stabiliser_does_not_change_the_function() -> None:
    """For gates small enough that ``exp(ĩ)`` does not overflow, ``h`` is the unstabilised one."""
    cell = slstm_cell()
    x = inputs()
    with torch.no_grad():
        unstabilised = slstm_unstabilised(cell, x)
        assert unstabilised.isfinite().all()
        torch.testing.assert_close(cell(x)[0], unstabilised, **EXACT)


def test_slstm_stabiliser_keeps_a_huge_input_gate_finite() -> None:
    """With ĩ ≈ 800, ``exp(ĩ)`` overflows float64 (the unstabilised form is NaN); the cell is
    finite, and equal to the stabilised transcription (tested with the other cases)."""
    cell = slstm_cell(input_bias=800.0)
    x = inputs()
    with torch.no_grad():
        assert not slstm_unstabilised(cell, x).isfinite().all()
        assert cell(x)[0].isfinite().all()


def test_lru_initial_eigenvalues_lie_on_the_ring() -> None:
    """``|λ|`` in ``[r_min, r_max]``, uniform in area (``|λ|²`` uniform), phase in
    ``[0, max_phase]``; ``γ = sqrt(1 − |λ|²)``."""
    r_min, r_max, max_phase = 0.4, 0.9, math.pi / 2
    cell = LRUCell(N_X, N_A, state_size=4000, r_min=r_min, r_max=r_max, max_phase=max_phase).double()
    eigenvalues = cell.eigenvalues().detach()
    modulus, phase = eigenvalues.abs(), eigenvalues.angle()
    assert modulus.min() >= r_min - 1e-6 and modulus.max() <= r_max + 1e-6
    assert phase.min() >= 0 and phase.max() <= max_phase + 1e-6
    assert abs((modulus**2).mean().item() - (r_min**2 + r_max**2) / 2) < 0.02
    assert abs(phase.mean().item() - max_phase / 2) < 0.05
    expected_gamma = torch.sqrt(1 - torch.exp(-torch.exp(cell.nu_log.detach())) ** 2)
    torch.testing.assert_close(torch.exp(cell.gamma_log.detach()), expected_gamma, rtol=1e-5, atol=1e-6)


def test_lru_default_phases_lie_in_zero_to_two_pi() -> None:
    cell = LRUCell(N_X, N_A, state_size=4000)
    phase = torch.exp(cell.theta_log.detach())
    assert phase.min() >= 0 and phase.max() <= 2 * math.pi + 1e-5
    modulus = cell.eigenvalues().detach().abs()
    assert modulus.min() >= 0 and modulus.max() <= 1


def test_selective_ssm_initialisation_is_mambas() -> None:
    """``A = −(1, …, N)`` for every channel, ``D = 1``, ``softplus(b_Δ)`` in ``[dt_min, dt_max]``."""
    dt_min, dt_max = 0.002, 0.05
    cell = SelectiveSSMCell(N_X, 64, state_size=STATE_SIZE, dt_min=dt_min, dt_max=dt_max).double()
    A = -torch.exp(cell.A_log.detach())
    expected_A = -torch.arange(1, STATE_SIZE + 1, dtype=torch.float64).expand(64, STATE_SIZE)
    torch.testing.assert_close(A, expected_A, rtol=1e-6, atol=0)
    assert torch.equal(cell.D.detach(), torch.ones(64, dtype=torch.float64))
    dt = softplus(cell.b_dt.detach())
    assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
    assert dt.max() / dt.min() > 2, "Δ spread over the range, not one value"


@pytest.mark.parametrize(
    ("make_cell", "key"),
    [
        (lambda: SLSTMCell(N_X, N_A, num_heads=3), "num_heads"),
        (lambda: LRUCell(N_X, N_A, r_min=0.9, r_max=0.9), "r_min"),
        (lambda: LRUCell(N_X, N_A, r_min=0.95, r_max=0.5), "r_max"),
        (lambda: SelectiveSSMCell(N_X, N_A, state_size=0), "state_size"),
    ],
    ids=["slstm_num_heads_not_dividing", "lru_r_min_equal_r_max", "lru_r_min_above_r_max", "s6_state_size_0"],
)
def test_a_bad_option_is_refused_naming_it(make_cell: Callable[[], Recurrence], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        make_cell()
