"""The whole time loop in one GPU launch (Triton), forward and backward.

A step's recurrent product is tiny, so on a GPU a step-by-step loop costs launches, not
arithmetic. Here each program owns a block of batch rows and walks all T steps itself: the
input projection for all steps comes in as one tensor (``wx``), every step's recurrent product
and gate math run inside the kernel, and the state passes from step to step through a buffer
that stays in the GPU's caches. The backward kernel walks the steps in reverse the same way and
writes ``∂L/∂z<t>`` for every step; the weight gradients are then one matrix product each, as in
:mod:`seqexp.kernels.manual`, whose functions these mirror (same arguments, same results).

Element-wise math is float32 whatever the input's dtype; products take the weights' dtype
(float32 products are exact float32, not TF32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqexp.kernels.manual import weight_gradient

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Input dtypes the kernels take; others run on :mod:`seqexp.kernels.manual`."""


@dataclass(frozen=True)
class Blocks:
    """Tile sizes of a launch: batch rows per program, hidden units per tile, reduction chunk."""

    batch: int
    hidden: int
    reduction: int

    @property
    def dot(self) -> bool:
        """Whether products use ``tl.dot`` (tensor cores; needs 16 rows) or multiply-and-sum."""
        return self.batch >= 16


def choose_blocks(batch: int, dtype: torch.dtype) -> Blocks:
    """Tensor cores for 16-bit inputs; for float32 (no tensor cores without TF32) fewer rows per
    program, so that more programs share the batch."""
    if dtype == torch.float32:
        return Blocks(batch=4 if batch >= 64 else 2, hidden=32, reduction=32)
    return Blocks(batch=16, hidden=64, reduction=64)


@triton.jit
def _product(
    src,
    src_row_stride,
    rows,
    row_mask,
    w,
    w_stride_k,
    w_stride_j,
    cols,
    col_mask,
    K,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT: tl.constexpr,
    IEEE: tl.constexpr,
):
    """``Σ_{k<K} src[rows, k] · w[k, cols]`` as a float32 (BLOCK_B, BLOCK_H) tile."""
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < K
        s = tl.load(
            src + rows[:, None] * src_row_stride + ks[None, :],
            mask=row_mask[:, None] & k_mask[None, :],
            other=0.0,
        )
        wt = tl.load(
            w + ks[:, None] * w_stride_k + cols[None, :] * w_stride_j,
            mask=k_mask[:, None] & col_mask[None, :],
            other=0.0,
        )
        if DOT:
            if IEEE:
                acc += tl.dot(s.to(wt.dtype), wt, input_precision="ieee")
            else:
                acc += tl.dot(s.to(wt.dtype), wt)
        else:
            acc += tl.sum(s.to(tl.float32)[:, :, None] * wt.to(tl.float32)[None, :, :], axis=1)
    return acc


@triton.jit
def _preactivation(
    z_at, a_prev, W, block, N, rows, row_mask, cols, col_mask, mask,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``W_a a<t-1> + W_x x<t> + b`` for one weight block (rows ``block·N ...`` of ``W_a``)."""
    product = _product(
        a_prev, N, rows, row_mask, W + block * N * N, 1, N, cols, col_mask, N,
        BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
    )  # fmt: skip
    return product + tl.load(z_at + block * N, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _tanh(x):
    return 2 * tl.sigmoid(2 * x) - 1


@triton.jit
def _lstm_forward(
    wx, W, p, hs, cells, gates, T, B, N,
    PEEPHOLE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``hs[t+1]``, ``cells[t+1]`` and ``gates[t]`` (Γu, Γf, c̃, Γo) from ``hs[t]``, ``cells[t]``."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    G = 4 * N
    for t in range(T):
        a_prev = hs + t * B * N
        for h0 in range(0, N, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            state = rows[:, None] * N + cols[None, :]
            z_at = wx + t * B * G + rows[:, None] * G + cols[None, :]
            z_u = _preactivation(z_at, a_prev, W, 0, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)  # noqa: E501
            z_f = _preactivation(z_at, a_prev, W, 1, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)  # noqa: E501
            z_c = _preactivation(z_at, a_prev, W, 2, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)  # noqa: E501
            z_o = _preactivation(z_at, a_prev, W, 3, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)  # noqa: E501
            c_prev = tl.load(cells + t * B * N + state, mask=mask, other=0.0)
            if PEEPHOLE:
                z_u += tl.load(p + cols, mask=col_mask, other=0.0)[None, :] * c_prev
                z_f += tl.load(p + N + cols, mask=col_mask, other=0.0)[None, :] * c_prev
            u = tl.sigmoid(z_u)
            f = tl.sigmoid(z_f)
            c_tilde = _tanh(z_c)
            c = u * c_tilde + f * c_prev
            if PEEPHOLE:
                z_o += tl.load(p + 2 * N + cols, mask=col_mask, other=0.0)[None, :] * c
            o = tl.sigmoid(z_o)
            a = o * _tanh(c)
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            tl.store(gate_at, u, mask=mask)
            tl.store(gate_at + N, f, mask=mask)
            tl.store(gate_at + 2 * N, c_tilde, mask=mask)
            tl.store(gate_at + 3 * N, o, mask=mask)
            tl.store(cells + (t + 1) * B * N + state, c, mask=mask)
            tl.store(hs + (t + 1) * B * N + state, a.to(hs.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # a<t> is complete before any tile of step t+1 reads it


@triton.jit
def _lstm_backward(
    d_out, W, p, cells, gates, dz, da, dc, T, B, N,
    PEEPHOLE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``dz[t] = ∂L/∂z<t>`` for t = T-1 ... 0; ``da``, ``dc`` carry ∂L/∂a<t>, ∂L/∂c<t> back
    (they start as zeros and ∂L/∂c<T>, and end as ∂L/∂a<0>, ∂L/∂c<0>)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    G = 4 * N
    for step in range(T):
        t = T - 1 - step
        for h0 in range(0, N, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            state = rows[:, None] * N + cols[None, :]
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            u = tl.load(gate_at, mask=mask, other=0.0)
            f = tl.load(gate_at + N, mask=mask, other=0.0)
            c_tilde = tl.load(gate_at + 2 * N, mask=mask, other=0.0)
            o = tl.load(gate_at + 3 * N, mask=mask, other=0.0)
            c_prev = tl.load(cells + t * B * N + state, mask=mask, other=0.0)
            h = _tanh(tl.load(cells + (t + 1) * B * N + state, mask=mask, other=0.0))
            d_a = tl.load(d_out + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_a += tl.load(da + state, mask=mask, other=0.0)
            dz_o = d_a * h * o * (1 - o)
            d_c = tl.load(dc + state, mask=mask, other=0.0) + d_a * o * (1 - h * h)
            if PEEPHOLE:
                d_c += dz_o * tl.load(p + 2 * N + cols, mask=col_mask, other=0.0)[None, :]
            dz_u = d_c * c_tilde * u * (1 - u)
            dz_f = d_c * c_prev * f * (1 - f)
            dz_c = d_c * u * (1 - c_tilde * c_tilde)
            d_c_prev = d_c * f
            if PEEPHOLE:
                d_c_prev += dz_u * tl.load(p + cols, mask=col_mask, other=0.0)[None, :]
                d_c_prev += dz_f * tl.load(p + N + cols, mask=col_mask, other=0.0)[None, :]
            dz_at = dz + t * B * G + rows[:, None] * G + cols[None, :]
            tl.store(dz_at, dz_u, mask=mask)
            tl.store(dz_at + N, dz_f, mask=mask)
            tl.store(dz_at + 2 * N, dz_c, mask=mask)
            tl.store(dz_at + 3 * N, dz_o, mask=mask)
            tl.store(dc + state, d_c_prev, mask=mask)
        tl.debug_barrier()
        _backpropagate(dz + t * B * G, G, W, G, da, rows, row_mask, N, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)
        tl.debug_barrier()


@triton.jit
def _backpropagate(
    dz, dz_row_stride, W, K, out, rows, row_mask, N,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT: tl.constexpr, IEEE: tl.constexpr,
    ACCUMULATE: tl.constexpr = False,
):  # fmt: skip
    """``out[rows] (+)= dz[rows, :K] @ W[:K]``: the gradient through ``W_a`` to the previous state."""
    for h0 in range(0, N, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        col_mask = cols < N
        mask = row_mask[:, None] & col_mask[None, :]
        at = out + rows[:, None] * N + cols[None, :]
        total = _product(
            dz, dz_row_stride, rows, row_mask, W, N, 1, cols, col_mask, K, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE
        )
        if ACCUMULATE:
            total += tl.load(at, mask=mask, other=0.0)
        tl.store(at, total, mask=mask)


@triton.jit
def _gru_forward(
    wx, W, hs, gates, reset, T, B, N,
    NB: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """The course's GRU (``NB = 3`` blocks r, u, c) or the simplified one (``NB = 2``: u, c).
    ``reset[t]`` keeps ``Γr * c<t-1>``, the input of ``W_c``'s product."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    G = NB * N
    U = NB - 2  # the u block; c follows it
    for t in range(T):
        c_prev_at = hs + t * B * N
        recurrent_input = c_prev_at
        if NB == 3:  # Γr first: c̃'s product needs Γr * c<t-1> for every hidden unit
            recurrent_input = reset + t * B * N
            for h0 in range(0, N, BLOCK_H):
                cols = h0 + tl.arange(0, BLOCK_H)
                col_mask = cols < N
                mask = row_mask[:, None] & col_mask[None, :]
                state = rows[:, None] * N + cols[None, :]
                z_at = wx + t * B * G + rows[:, None] * G + cols[None, :]
                r = tl.sigmoid(_preactivation(z_at, c_prev_at, W, 0, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE))  # noqa: E501
                c_prev = tl.load(c_prev_at + state, mask=mask, other=0.0).to(tl.float32)
                tl.store(gates + t * B * G + rows[:, None] * G + cols[None, :], r, mask=mask)
                tl.store(recurrent_input + state, (r * c_prev).to(reset.dtype.element_ty), mask=mask)
            tl.debug_barrier()
        for h0 in range(0, N, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            state = rows[:, None] * N + cols[None, :]
            z_at = wx + t * B * G + rows[:, None] * G + cols[None, :]
            u = tl.sigmoid(_preactivation(z_at, c_prev_at, W, U, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE))  # noqa: E501
            c_tilde = _tanh(_preactivation(z_at, recurrent_input, W, U + 1, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE))  # noqa: E501
            c_prev = tl.load(c_prev_at + state, mask=mask, other=0.0).to(tl.float32)
            c = u * c_tilde + (1 - u) * c_prev
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            tl.store(gate_at + U * N, u, mask=mask)
            tl.store(gate_at + (U + 1) * N, c_tilde, mask=mask)
            tl.store(hs + (t + 1) * B * N + state, c.to(hs.dtype.element_ty), mask=mask)
        tl.debug_barrier()


@triton.jit
def _gru_backward(
    d_out, W, hs, gates, dz, dc, T, B, N,
    NB: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``dz[t] = ∂L/∂z<t>`` for t = T-1 ... 0; ``dc`` carries ∂L/∂c<t> back (zeros to ∂L/∂c<0>)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    G = NB * N
    U = NB - 2  # the u block; c follows it
    for step in range(T):
        t = T - 1 - step
        for h0 in range(0, N, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            state = rows[:, None] * N + cols[None, :]
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            u = tl.load(gate_at + U * N, mask=mask, other=0.0)
            c_tilde = tl.load(gate_at + (U + 1) * N, mask=mask, other=0.0)
            c_prev = tl.load(hs + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_c = tl.load(d_out + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_c += tl.load(dc + state, mask=mask, other=0.0)
            dz_at = dz + t * B * G + rows[:, None] * G + cols[None, :]
            tl.store(dz_at + U * N, d_c * (c_tilde - c_prev) * u * (1 - u), mask=mask)
            tl.store(dz_at + (U + 1) * N, d_c * u * (1 - c_tilde * c_tilde), mask=mask)
            tl.store(dc + state, d_c * (1 - u), mask=mask)
        tl.debug_barrier()
        if NB == 3:  # through Γr * c<t-1>: ∂L/∂(Γr * c<t-1>) = dz_c @ W_c
            for h0 in range(0, N, BLOCK_H):
                cols = h0 + tl.arange(0, BLOCK_H)
                col_mask = cols < N
                mask = row_mask[:, None] & col_mask[None, :]
                state = rows[:, None] * N + cols[None, :]
                d_reset = _product(
                    dz + t * B * G + 2 * N, G, rows, row_mask, W + 2 * N * N, N, 1, cols, col_mask, N,
                    BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
                )  # fmt: skip
                r = tl.load(gates + t * B * G + rows[:, None] * G + cols[None, :], mask=mask, other=0.0)
                c_prev = tl.load(hs + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
                tl.store(dz + t * B * G + rows[:, None] * G + cols[None, :], d_reset * c_prev * r * (1 - r), mask=mask)
                tl.store(dc + state, tl.load(dc + state, mask=mask, other=0.0) + d_reset * r, mask=mask)
            tl.debug_barrier()
        # through the first two blocks' products: W_r, W_u (course form) or W_u, W_c (simplified)
        _backpropagate(
            dz + t * B * G, G, W, 2 * N, dc, rows, row_mask, N,
            BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE, True,
        )  # fmt: skip
        tl.debug_barrier()


@triton.jit
def _rnn_forward(
    wx, W, hs, T, B, N,
    RELU: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    for t in range(T):
        for h0 in range(0, N, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            state = rows[:, None] * N + cols[None, :]
            z = _preactivation(wx + t * B * N + state, hs + t * B * N, W, 0, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)  # noqa: E501
            a = tl.maximum(z, 0.0) if RELU else _tanh(z)
            tl.store(hs + (t + 1) * B * N + state, a.to(hs.dtype.element_ty), mask=mask)
        tl.debug_barrier()


@triton.jit
def _rnn_backward(
    d_out, W, hs, dz, da, T, B, N,
    RELU: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    for step in range(T):
        t = T - 1 - step
        for h0 in range(0, N, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            state = rows[:, None] * N + cols[None, :]
            a = tl.load(hs + (t + 1) * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_a = tl.load(d_out + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_a += tl.load(da + state, mask=mask, other=0.0)
            d_z = tl.where(a > 0, d_a, 0.0) if RELU else d_a * (1 - a * a)
            tl.store(dz + t * B * N + state, d_z, mask=mask)
        tl.debug_barrier()
        _backpropagate(dz + t * B * N, N, W, N, da, rows, row_mask, N, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE)
        tl.debug_barrier()


def _launch(kernel: Any, batch: int, dtype: torch.dtype, *args: Any, **constants: Any) -> None:
    blocks = choose_blocks(batch, dtype)
    kernel[(triton.cdiv(batch, blocks.batch),)](
        *args,
        **constants,
        BLOCK_B=blocks.batch,
        BLOCK_H=blocks.hidden,
        BLOCK_K=blocks.reduction,
        DOT=blocks.dot,
        IEEE=dtype == torch.float32,
    )


def _states(initial: Tensor, T: int, dtype: torch.dtype) -> Tensor:
    """A (T + 1, B, n_a) buffer whose first slab is the initial state."""
    states = initial.new_empty((T + 1, *initial.shape), dtype=dtype)
    states[0] = initial
    return states


class LSTMSequence(torch.autograd.Function):
    """As :class:`seqexp.kernels.manual.LSTMSequence`, in two launches."""

    @staticmethod
    def forward(
        ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, peepholes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        T, B, G = wx.shape
        n = W_a.shape[1]
        wx, W_a = wx.contiguous(), W_a.contiguous()
        hs, cells = _states(a0, T, wx.dtype), _states(c0, T, torch.float32)
        gates = wx.new_empty((T, B, G), dtype=torch.float32)
        p = peepholes.float().contiguous() if peepholes is not None else cells
        _launch(_lstm_forward, B, wx.dtype, wx, W_a, p, hs, cells, gates, T, B, n, PEEPHOLE=peepholes is not None)
        ctx.save_for_backward(W_a, peepholes, hs, cells, gates)
        return hs[1:], cells[-1].to(wx.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor | None, dc_last: Tensor | None) -> tuple[Tensor | None, ...]:
        W_a, peepholes, hs, cells, gates = ctx.saved_tensors
        T, B, n = hs[1:].shape
        d_outputs = torch.zeros_like(hs[1:]) if d_outputs is None else d_outputs.contiguous()
        da = torch.zeros_like(cells[0])
        dc = da.clone() if dc_last is None else dc_last.float().contiguous()
        dz = torch.empty_like(gates)
        p = peepholes.float().contiguous() if peepholes is not None else cells
        _launch(_lstm_backward, B, hs.dtype, d_outputs, W_a, p, cells, gates, dz, da, dc, T, B, n, PEEPHOLE=peepholes is not None)  # noqa: E501
        d_peepholes = None
        if peepholes is not None:
            c_prev, c = cells[:-1], cells[1:]
            d_peepholes = torch.stack(
                [(dz[..., :n] * c_prev).sum((0, 1)), (dz[..., n : 2 * n] * c_prev).sum((0, 1)), (dz[..., 3 * n :] * c).sum((0, 1))]  # noqa: E501
            ).to(peepholes.dtype)
        dtype = hs.dtype
        dW_a = weight_gradient(dz.to(dtype), hs[:-1])
        return dz.to(dtype), dW_a, da.to(dtype), dc.to(dtype), d_peepholes


class GRUSequence(torch.autograd.Function):
    """As :class:`seqexp.kernels.manual.GRUSequence`, in two launches."""

    @staticmethod
    def forward(ctx: Any, wx: Tensor, W_a: Tensor, c0: Tensor) -> Tensor:
        T, B, G = wx.shape
        n = W_a.shape[1]
        wx, W_a = wx.contiguous(), W_a.contiguous()
        hs = _states(c0, T, wx.dtype)
        gates = wx.new_empty((T, B, G), dtype=torch.float32)
        reset = wx.new_empty((T, B, n)) if G == 3 * n else hs
        _launch(_gru_forward, B, wx.dtype, wx, W_a, hs, gates, reset, T, B, n, NB=G // n)
        ctx.save_for_backward(W_a, hs, gates, reset if G == 3 * n else None)
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        W_a, hs, gates, reset = ctx.saved_tensors
        T, B, G = gates.shape
        n = W_a.shape[1]
        dz = torch.empty_like(gates)
        dc = torch.zeros(B, n, dtype=torch.float32, device=hs.device)
        _launch(_gru_backward, B, hs.dtype, d_outputs.contiguous(), W_a, hs, gates, dz, dc, T, B, n, NB=G // n)
        dz = dz.to(hs.dtype)
        if reset is not None:
            dW_a = torch.cat([weight_gradient(dz[..., : 2 * n], hs[:-1]), weight_gradient(dz[..., 2 * n :], reset)])
        else:
            dW_a = weight_gradient(dz, hs[:-1])
        return dz, dW_a, dc.to(hs.dtype)


class RNNSequence(torch.autograd.Function):
    """As :class:`seqexp.kernels.manual.RNNSequence`, in two launches."""

    @staticmethod
    def forward(ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, relu: bool) -> Tensor:
        T, B, n = wx.shape
        wx, W_a = wx.contiguous(), W_a.contiguous()
        hs = _states(a0, T, wx.dtype)
        _launch(_rnn_forward, B, wx.dtype, wx, W_a, hs, T, B, n, RELU=relu)
        ctx.save_for_backward(W_a, hs)
        ctx.relu = relu
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor) -> tuple[Tensor | None, ...]:
        W_a, hs = ctx.saved_tensors
        T, B, n = hs[1:].shape
        dz = torch.empty(T, B, n, dtype=torch.float32, device=hs.device)
        da = torch.zeros(B, n, dtype=torch.float32, device=hs.device)
        _launch(_rnn_backward, B, hs.dtype, d_outputs.contiguous(), W_a, hs, dz, da, T, B, n, RELU=ctx.relu)
        dz = dz.to(hs.dtype)
        return dz, weight_gradient(dz, hs[:-1]), da.to(hs.dtype), None
