"""seqexp's CPU kernel for the LSTMs: every product in oneDNN, each step's gate math compiled.

Two things make the manual kernel slow on CPU. Between a step's two matrix products it runs a
dozen small torch ops, which together take longer than the products. And torch's float32
products go through MKL, which on this workplace's AMD CPUs runs at about half oneDNN's rate
(a 2048² product: 203 against 420 GFLOP/s). Here a step is one oneDNN product, with ``W_a``
packed once per sequence, and one pass of compiled code, ``lstm_step.cpp``, over the batch
rows on torch's OpenMP threads (built on first use by :mod:`seqexp.kernels.compiler`, called
through ctypes); the weight gradients are oneDNN products too. float64, which oneDNN does not
take, has its products in torch. Without a C++ compiler, :func:`library` warns once and seqexp
keeps the manual kernel.

Computes what :class:`seqexp.kernels.manual.LSTMSequence` computes, to float rounding.
"""

from __future__ import annotations

import ctypes
import sys
import warnings
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from seqexp.kernels import compiler
from seqexp.kernels.manual import peephole_gradient

NAME = "cpu"
SOURCE = Path(__file__).with_name("lstm_step.cpp")
DTYPES = {torch.float32: "float", torch.float64: "double"}
ONEDNN = torch.backends.mkldnn.is_available()
HUGE_PAGE = 2**21
MADV_HUGEPAGE = 14


@cache
def libc() -> ctypes.CDLL | None:
    """The C library, for ``madvise`` (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    lib = ctypes.CDLL(None)
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def workspace(*shape: int, like: Tensor) -> Tensor:
    """An uninitialised buffer, asked onto huge pages where Linux allows it: a fresh buffer of
    100 MB otherwise costs 30 ms of page faults on first touch here, 3 ms with huge pages."""
    buffer = like.new_empty(shape)
    start = -(-buffer.data_ptr() // HUGE_PAGE) * HUGE_PAGE
    end = (buffer.data_ptr() + buffer.nbytes) // HUGE_PAGE * HUGE_PAGE
    if libc() is not None and end > start:
        libc().madvise(start, end - start, MADV_HUGEPAGE)
    return buffer


def linear(x: Tensor, W: Tensor) -> Tensor:
    """``x Wᵀ``, through oneDNN for float32."""
    if ONEDNN and x.dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(x, W, None, "none", [None], "")
    return F.linear(x, W)


def times_transposed(W: Tensor, rows: int) -> Callable[[Tensor], Tensor]:
    """``x -> x Wᵀ`` for inputs of ``rows`` rows, many times over: for float32, ``W`` is put
    into oneDNN's own layout once rather than at every call."""
    if ONEDNN and W.dtype == torch.float32:
        W = torch.ops.mkldnn._reorder_linear_weight(W.contiguous(), rows)
    return partial(linear, W=W)


def weight_gradient(dz: Tensor, inputs: Tensor) -> Tensor:
    """``Σ_t dz<t>ᵀ inputs<t>``, one product over all steps, computed as ``(inputsᵀ dz)ᵀ``: with
    the long side inner for both operands, oneDNN takes it at full rate (and MKL takes 10× longer
    for ``dzᵀ inputs`` when there are only a few inputs). oneDNN copies a transposed left operand
    into fresh memory, so ``inputsᵀ`` is copied here, onto huge pages."""
    T, B, n = inputs.shape
    inputs_T = workspace(n, T, B, like=inputs)
    inputs_T.copy_(inputs.permute(2, 0, 1))
    return linear(inputs_T.view(n, T * B), dz.flatten(0, 1).T).T


@cache
def library() -> ctypes.CDLL | None:
    """The compiled steps, or ``None`` (with a warning) where they cannot be built here."""
    try:
        lib = ctypes.CDLL(str(compiler.build(SOURCE)))
    except OSError as error:
        warnings.warn(
            f"seqexp's compiled CPU LSTM is not available ({error}): using the manual kernel", stacklevel=3
        )
        return None
    size, address = ctypes.c_int64, ctypes.c_void_p
    leading = [size, size, address, ctypes.c_int]  # B, n, the peepholes, threads
    for real in DTYPES.values():
        getattr(lib, f"lstm_forward_{real}").argtypes = leading + [address] * 6
        getattr(lib, f"lstm_backward_{real}").argtypes = leading + [size] + [address] * 7
    return lib


def step(direction: str, like: Tensor, peepholes: Tensor | None) -> Callable[..., None]:
    """The compiled ``lstm_forward_*`` or ``lstm_backward_*`` for ``like``'s dtype, with its
    leading arguments bound: the batch, the units, the peepholes and torch's thread count."""
    compiled = getattr(library(), f"lstm_{direction}_{DTYPES[like.dtype]}")
    B, n = like.shape[-2], like.shape[-1] // 4
    p_at = None if peepholes is None else peepholes.data_ptr()
    return partial(compiled, B, n, p_at, torch.get_num_threads())


def addresses(tensor: Tensor) -> list[int]:
    """The address of each ``tensor[t]`` of a contiguous ``tensor``."""
    return [t.data_ptr() for t in tensor.unbind(0)]


class InputProjection(torch.autograd.Function):
    """``W_x x<t> + b`` for all steps at once, (T, B, n_x) -> (T, B, blocks · n_a)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, W_x: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(x, W_x)
        T, B, _ = x.shape
        # MKL, into a huge-page buffer: oneDNN's own output, faulting in page by page, costs more
        wx = workspace(T, B, W_x.shape[0], like=x)
        return torch.addmm(b, x.flatten(0, 1), W_x.T, out=wx.view(T * B, -1)).view_as(wx)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dwx: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, W_x = ctx.saved_tensors
        dx = linear(dwx, W_x.T) if ctx.needs_input_grad[0] else None
        return dx, weight_gradient(dwx, x), dwx.sum((0, 1))


def project(x: Tensor, W_x: Tensor, b: Tensor) -> Tensor:
    """``W_x x<t> + b`` for all steps at once: (T, B, n_x) -> (T, B, blocks · n_a)."""
    return InputProjection.apply(x, W_x, b)


class LSTMSequence(torch.autograd.Function):
    """The LSTM (blocks u, f, c, o), with peepholes ``p_u, p_f, p_o`` (3, n_a) when they are given."""

    @staticmethod
    def forward(
        ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, peepholes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = wx.shape
        n = W_a.shape[1]
        wx = wx.contiguous()
        gates = workspace(*wx.shape, like=wx)  # Γu, Γf, c̃, Γo
        cells, activations = workspace(T + 1, B, n, like=wx), workspace(T + 1, B, n, like=wx)
        cells[0], activations[0] = c0, a0
        p = None if peepholes is None else peepholes.contiguous()
        forward_step, times_W_a_T = step("forward", wx, p), times_transposed(W_a, B)
        wx_at, gates_at, c_at, a_at = map(addresses, (wx, gates, cells, activations))
        for t, a_prev in enumerate(activations[:-1]):
            ra = times_W_a_T(a_prev)  # W_a a<t-1>
            forward_step(wx_at[t], ra.data_ptr(), c_at[t], gates_at[t], c_at[t + 1], a_at[t + 1])
        ctx.save_for_backward(W_a, p, gates, cells, activations)
        return activations[1:], cells[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc_last: Tensor) -> tuple[Tensor | None, ...]:
        W_a, p, gates, cells, activations = ctx.saved_tensors
        T, B, _ = d_outputs.shape
        if d_outputs.stride(2) != 1:
            d_outputs = d_outputs.contiguous()  # its rows may lie apart, its entries not
        backward_step = partial(step("backward", gates, p), d_outputs.stride(1))
        times_W_a = times_transposed(W_a.T, B)
        dz = workspace(*gates.shape, like=gates)
        dc = dc_last.clone(memory_format=torch.contiguous_format)  # ∂L/∂c<t>, stepped back in place
        da_next = torch.zeros_like(dc)  # nothing comes back from beyond the last step
        gates_at, c_at, dz_at, d_out_at = map(addresses, (gates, cells, dz, d_outputs))
        for t in reversed(range(T)):
            da = (d_out_at[t], da_next.data_ptr())  # ∂L/∂a<t>: the loss's own, and through step t + 1
            backward_step(*da, dc.data_ptr(), gates_at[t], c_at[t], c_at[t + 1], dz_at[t])
            da_next = times_W_a(dz[t])  # ∂L/∂a<t-1> through step t
        d_peepholes = None if p is None else peephole_gradient(dz, cells)
        return dz, weight_gradient(dz, activations[:-1]), da_next, dc, d_peepholes
