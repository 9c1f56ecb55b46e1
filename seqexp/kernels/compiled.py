"""seqexp's CPU kernels for the recurrences linear in their state: the time loop in C++, the
element-wise math of each step fused into it.

torch runs a recurrence's element-wise math as one pass per operation over (T, B, n) tensors that
no longer fit a cache, forward and backward; here each step's gates, scan and gradients are one
loop in ``linear_scans.cpp`` (the equations in its header), built on first use by
:mod:`seqexp.kernels.compiler` and called through ctypes, on torch's OpenMP threads. What a cell
hands it is its fused scan (:meth:`~seqexp.cells.LinearRecurrence.scan_equations`), a family
and its tensors, all computed in torch so that autograd carries their gradients on:

- ``mingru`` — ``x`` (T, B, n_x) and the gates' ``W`` (2n, n_x) and ``b`` (2n), the pre-activations
  ``[k_z | k_h] = W x + b`` (made here a chunk of steps at a time, see :class:`Gated`); gives ``h<1..T>``;
- ``minlstm`` — the same with ``W`` (3n, n_x) and ``b`` (3n) for ``[k_f | k_i | k_h]``;
- ``selective`` — Mamba's S6: ``u``, ``dt`` (T, B, D), ``A`` (D, N), ``B``, ``C`` (T, B, N), ``D``
  (D); gives ``a<t> = C<t> · h<t> + D ⊙ u<t>`` and ``h<T>``, never the (T, B, D, N) states.

Any other :class:`~seqexp.cells.LinearRecurrence` (the LRU, one's own) runs the plain scan
``h<t> = λ<t> ⊙ h<t-1> + β<t>`` from its :meth:`coefficients`, real or complex, with a ``λ``
constant over time or the batch kept at its size (the LRU's is). float32 and float64 on CPU;
where the library cannot be built, :func:`library` warns once and seqexp keeps the torch scan.
"""

from __future__ import annotations

import ctypes
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqexp.cells import LinearRecurrence, State
from seqexp.kernels import compiler, scan

NAME = "compiled"
SOURCE = Path(__file__).with_name("linear_scans.cpp")
DTYPES = (torch.float32, torch.float64)
FAMILIES = ("mingru", "minlstm", "selective")
SUFFIX = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.complex64: "complex64",
    torch.complex128: "complex128",
}


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` (with a warning) where they cannot be built here."""
    try:
        return compiler.load(compiler.build(SOURCE))
    except OSError as error:
        warnings.warn(
            f"seqexp's compiled scans are not available ({error}): using the torch scan", stacklevel=3
        )
        return None


def takes(x: Tensor) -> bool:
    """Whether these kernels run a recurrence over ``x``: on CPU, in float32 or float64."""
    return x.device.type == "cpu" and x.dtype in DTYPES and library() is not None


def call(function: str, tensor: Tensor, *arguments: int | Tensor) -> None:
    """``function`` of the library for ``tensor``'s dtype, with sizes as int64 and (contiguous)
    tensors by address."""
    converted = []
    for argument in arguments:
        if isinstance(argument, Tensor):
            if not argument.is_contiguous():
                raise ValueError(f"{function}: an argument is not contiguous")
            converted.append(ctypes.c_void_p(argument.data_ptr()))
        else:
            converted.append(ctypes.c_int64(argument))
    getattr(library(), f"{function}_{SUFFIX[tensor.dtype]}")(*converted)


class Scan(scan.LinearScan):
    """``h<1..T>`` from ``λ`` (T or 1, B or 1, *S), ``β`` (T, B, *S) and ``h<0>`` (B, *S); what
    it keeps for the backward pass is the torch scan's."""

    @staticmethod
    def forward(lam: Tensor, beta: Tensor, h0: Tensor) -> Tensor:
        T, B = beta.shape[:2]
        S = beta[0, 0].numel() if T else h0[0].numel()
        h = torch.empty_like(beta)
        call("scan_forward", beta, T, B, S, *strides(lam, S), lam, beta, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lam, h0, h = ctx.saved_tensors
        T, B = h.shape[:2]
        S = h0[0].numel()
        d_beta, d_lam, d_h0 = torch.empty_like(h), torch.zeros_like(lam), torch.empty_like(h0)
        call("scan_backward", h, T, B, S, *strides(lam, S), lam, h0, h, d_h.contiguous(), d_beta, d_lam, d_h0)
        return d_lam, d_beta, d_h0


def strides(lam: Tensor, S: int) -> tuple[int, int]:
    """``λ``'s strides over time and batch, in elements: 0 where it is constant over them."""
    batch = 0 if lam.shape[1] == 1 else S
    return (0 if lam.shape[0] == 1 else lam.shape[1] * S), batch


def linear_scan(lam: Tensor, beta: Tensor, h0: Tensor) -> Tensor:
    """``h<t> = λ<t> ⊙ h<t-1> + β<t>`` for t = 1..T: ``β`` (T, B, *S), ``λ`` broadcastable to it
    (kept constant over time or batch where it is), ``h0`` (B, *S)."""
    lam = lam[(None,) * (beta.dim() - lam.dim())]
    lam = lam.expand(*lam.shape[:2], *beta.shape[2:]).to(beta.dtype).contiguous()
    return Scan.apply(lam, beta.contiguous(), h0.to(beta.dtype).contiguous())


CHUNK_BYTES = 1 << 20
"""The size of the gated scans' working buffers: a chunk of steps' pre-activations stays in cache."""


def steps_per_chunk(batch: int, width: int, itemsize: int) -> int:
    """How many steps of pre-activations (``batch`` × ``width``) fit :data:`CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (batch * width * itemsize))


class Gated(torch.autograd.Function):
    """minGRU's or minLSTM's scan (``family``) over ``x`` (T, B, n_x) from ``h<0>``, its gates'
    pre-activations ``k = W x + b`` made a chunk of steps at a time into one buffer.

    Neither pass ever holds ``k`` or its gradient for the whole sequence: the forward pass keeps
    ``x`` and ``h``, and the backward pass makes each chunk's ``k`` again, runs its scan back and
    turns its ``dk`` into ``dx``, ``dW`` and ``db`` at once. Fresh (T, B, ·) tensors are what such
    a scan pays for on a CPU (first touches of new pages), not the product made twice.
    """

    @staticmethod
    def forward(x: Tensor, W: Tensor, b: Tensor, h0: Tensor, family: str, chunk: int) -> Tensor:
        T, B, n = *x.shape[:2], h0.shape[1]
        h = x.new_empty(T, B, n)
        k = x.new_empty(min(chunk, T), B, W.shape[0])
        state = h0
        for first in range(0, T, chunk):
            last = min(T, first + chunk)
            k_chunk = project(x[first:last], W, b, k)
            call(f"{family}_forward", k, last - first, B, n, k_chunk, state, h[first:last])
            state = h[last - 1]
        return h

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, W, b, h0, ctx.family, ctx.chunk = inputs
        ctx.save_for_backward(x, W, b, h0, output)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_h: Tensor) -> tuple[Tensor | None, ...]:
        x, W, b, h0, h = ctx.saved_tensors
        T, B, n = h.shape
        chunk = ctx.chunk
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        dW, db = torch.zeros_like(W), torch.zeros_like(b)
        k, dk = (x.new_empty(min(chunk, T), B, W.shape[0]) for _ in range(2))
        d_h_chunk = x.new_empty(min(chunk, T), B, n)
        d_state, d_state_before = torch.zeros_like(h0), torch.empty_like(h0)
        for first in reversed(range(0, T, chunk)):
            last = min(T, first + chunk)
            steps = last - first
            x_chunk = x[first:last].reshape(steps * B, -1)
            k_chunk = project(x[first:last], W, b, k)
            d_h_steps = d_h_chunk[:steps]
            d_h_steps.copy_(d_h[first:last])
            d_h_steps[-1] += d_state
            state = h[first - 1] if first else h0
            dk_chunk = dk[:steps]
            call(
                f"{ctx.family}_backward", k, steps, B, n,
                k_chunk, state, h[first:last], d_h_steps, dk_chunk, d_state_before,
            )  # fmt: skip
            d_state, d_state_before = d_state_before, d_state
            dk_rows = dk_chunk.view(steps * B, -1)
            dW.addmm_(dk_rows.t(), x_chunk)
            db += dk_rows.sum(0)
            if dx is not None:
                torch.mm(dk_rows, W, out=dx[first:last].view(steps * B, -1))
        return dx, dW, db, d_state, None, None


def project(x: Tensor, W: Tensor, b: Tensor, into: Tensor) -> Tensor:
    """``W x<t> + b`` for the steps of ``x`` (steps, B, n_x), written into the first rows of ``into``."""
    steps, B = x.shape[:2]
    k = into[:steps]
    torch.addmm(b, x.reshape(steps * B, -1), W.t(), out=k.view(steps * B, -1))
    return k


class Selective(torch.autograd.Function):
    """S6's scan and readout ``C<t> · h<t>`` over every channel: ``y<1..T>`` (T, B, D) and ``h<T>``."""

    @staticmethod
    def forward(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        y, hT = torch.empty_like(u), torch.empty_like(h0)
        call("selective_forward", u, *u.shape, A.shape[1], u, dt, A, B, C, h0, y, hT)
        return y, hT

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, Tensor]) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor, d_hT: Tensor) -> tuple[Tensor, ...]:
        u, dt, A, B, C, h0 = ctx.saved_tensors
        du, d_dt, dB, dC, d_h0 = map(torch.empty_like, (u, dt, B, C, h0))
        dA = h0.new_empty(h0.shape)  # per example, summed below
        call(
            "selective_backward", u, *u.shape, A.shape[1], u, dt, A, B, C, h0,
            dy.contiguous(), d_hT.contiguous(), du, d_dt, dA, dB, dC, d_h0,
        )  # fmt: skip
        return du, d_dt, dA.sum(0), dB, dC, d_h0


def run(cell: LinearRecurrence, x: Tensor, state: State) -> tuple[Tensor, State]:
    """``cell`` over ``x`` (T, B, n_x) from ``state``: ``a<1..T>`` (T, B, n_a) and the last state."""
    found = cell.scan_equations(x)
    h0 = state[1].contiguous()
    if found is None:
        h = linear_scan(*cell.coefficients(x), h0)
        outputs = cell.readout(h, x)
        return outputs, (outputs[-1], h[-1])
    family, given = found
    if family not in FAMILIES:
        raise ValueError(
            f"{type(cell).__name__}.scan_equations names the fused scan {family!r}; the compiled "
            f"scans are {', '.join(FAMILIES)} (return None for the plain scan of its coefficients)"
        )
    if family == "selective":
        inputs = (given[name].contiguous() for name in ("u", "dt", "A", "B", "C"))
        y, hT = Selective.apply(*inputs, h0)
        outputs = y + given["D"] * given["u"]
        return outputs, (outputs[-1], hT)
    x, W = given["x"].contiguous(), given["W"].contiguous()
    h = Gated.apply(x, W, given["b"], h0, family, steps_per_chunk(x.shape[1], W.shape[0], x.element_size()))
    outputs = cell.readout(h, x)
    return outputs, (outputs[-1], h[-1])
