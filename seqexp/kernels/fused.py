"""The whole time loop in one GPU launch (Triton), forward and backward.

A step's recurrent product is tiny, so on a GPU a step-by-step loop costs launches, not
arithmetic. Here one launch walks all T steps: the input projection for all steps comes in as
one tensor (``wx``), and each step's recurrent product and gate math run inside the kernel. Each
program owns a block of batch rows and a slice of the hidden units; the programs of a batch block
exchange ``a<t>`` through a buffer in the GPU's L2 cache and wait for each other at a barrier
after every phase of a step (once per step; twice for the course's GRU, whose Γr comes first).
A barrier needs every program of the launch running at once, so a launch that splits the hidden
units (:func:`choose_launch`: at most one program per multiprocessor) has no more programs than
the GPU holds at once (:func:`resident_programs`, from the compiled kernel's occupancy), and is a
cooperative launch; a barrier wait that still cannot end gives up after a bound and the launch
raises :class:`~seqexp.kernels.barriers.BarrierTimeout` (see TRITON.md).

The backward kernel walks the steps in reverse the same way, writing ``∂L/∂z<t>`` for every
step; the weight gradients are then one matrix product each, as in :mod:`seqexp.kernels.manual`,
whose functions these mirror (same arguments, same results). Element-wise math is float32
whatever the input's dtype; products take the weights' dtype (float32 products are exact float32,
not TF32).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable
from triton.language.extra.cuda import globaltimer
from triton.runtime.interpreter import InterpretedFunction

from seqexp.kernels import barriers
from seqexp.kernels.manual import peephole_gradient, weight_gradient
from seqexp.kernels.manual import project as project  # the input projection: the same on GPU

NAME = "triton"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Input dtypes the kernels take; others run on :mod:`seqexp.kernels.manual`."""
_BROKEN = tl.constexpr(barriers.BROKEN)


@dataclass(frozen=True)
class Launch:
    """How a launch shares out the work: ``batch`` rows per program and ``splits`` programs across
    the hidden units (they meet at a barrier after every phase of a step; :func:`_launch` may
    lower it to what runs at once); tiles of ``hidden`` units, products reduced in chunks of
    ``reduction``."""

    batch: int
    hidden: int
    reduction: int
    splits: int = 1
    warps: int = 4

    @property
    def dot(self) -> bool:
        """Whether products use ``tl.dot`` (tensor cores for 16-bit inputs; it needs tiles of 16)."""
        return min(self.batch, self.hidden, self.reduction) >= 16


def processors(device: torch.device) -> int:
    """The device's multiprocessors (queried): how many programs :func:`choose_launch` spreads a
    launch over. One off CUDA: Triton's interpreter runs programs one after another."""
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def choose_launch(batch: int, hidden: int, dtype: torch.dtype, device: torch.device) -> Launch:
    """The tile that keeps the most programs busy, at most one per multiprocessor: batch blocks
    first, then slices of the hidden units. On an H100, more programs with less work each beat
    fewer with more, and at a tie 16×16 tiles (``tl.dot``) beat 8×8 ones."""
    tiles = [Launch(16, 16, 32 if dtype == torch.float32 else 64)]
    if dtype == torch.float32:  # without TF32 ``tl.dot`` has no tensor cores to give: 8×8 tiles too
        tiles.append(Launch(8, 8, 128, warps=2))
    launches = []
    for tile in tiles:
        blocks = triton.cdiv(batch, tile.batch)
        splits = max(1, min(processors(device) // blocks, triton.cdiv(hidden, tile.hidden)))
        launches.append((blocks * splits, replace(tile, splits=splits)))
    return max(launches, key=lambda programs_and_launch: programs_and_launch[0])[1]


@triton.jit
def _tile_product(a, w, DOT: tl.constexpr, IEEE: tl.constexpr):
    """``a @ w`` in float32: ``tl.dot`` (exact float32 products if ``IEEE``) or multiply-and-sum."""
    if DOT:
        if IEEE:
            return tl.dot(a.to(w.dtype), w, input_precision="ieee")
        return tl.dot(a.to(w.dtype), w)
    return tl.sum(a.to(tl.float32)[:, :, None] * w.to(tl.float32)[None, :, :], axis=1)


@triton.jit
def _preactivation(
    z_at, a_prev, W, block, N, rows, row_mask, cols, col_mask, mask,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``W_a a<t-1> + W_x x<t> + b`` for one weight block (rows ``block·N ...`` of ``W_a``) as a
    float32 tile. ``a<t-1>`` is read past the multiprocessor's cache: other programs wrote it."""
    z = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    for k0 in range(0, N, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < N
        a = tl.load(
            a_prev + rows[:, None] * N + ks[None, :],
            mask=row_mask[:, None] & k_mask[None, :],
            other=0.0,
            cache_modifier=".cg",
        )
        w_at = W + (block * N + cols[None, :]) * N + ks[:, None]  # W_aᵀ[k, j] = W_a[j, k]
        z += _tile_product(a, tl.load(w_at, mask=k_mask[:, None] & col_mask[None, :], other=0.0), DOT, IEEE)
    return z + tl.load(z_at + block * N, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _lstm_preactivations(
    z_at, a_prev, W, N, rows, row_mask, cols, col_mask, mask,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """:func:`_preactivation` of the four LSTM blocks in one pass over ``a<t-1>``: each chunk of
    it is read once, and the four weight tiles' loads overlap."""
    z_u = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    z_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    z_c = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    z_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    for k0 in range(0, N, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < N
        a = tl.load(
            a_prev + rows[:, None] * N + ks[None, :],
            mask=row_mask[:, None] & k_mask[None, :],
            other=0.0,
            cache_modifier=".cg",
        )
        w_at = W + cols[None, :] * N + ks[:, None]  # W_aᵀ[k, j] = W_a[j, k]
        w_mask = k_mask[:, None] & col_mask[None, :]
        z_u += _tile_product(a, tl.load(w_at, mask=w_mask, other=0.0), DOT, IEEE)
        z_f += _tile_product(a, tl.load(w_at + N * N, mask=w_mask, other=0.0), DOT, IEEE)
        z_c += _tile_product(a, tl.load(w_at + 2 * N * N, mask=w_mask, other=0.0), DOT, IEEE)
        z_o += _tile_product(a, tl.load(w_at + 3 * N * N, mask=w_mask, other=0.0), DOT, IEEE)
    z_u += tl.load(z_at, mask=mask, other=0.0).to(tl.float32)
    z_f += tl.load(z_at + N, mask=mask, other=0.0).to(tl.float32)
    z_c += tl.load(z_at + 2 * N, mask=mask, other=0.0).to(tl.float32)
    z_o += tl.load(z_at + 3 * N, mask=mask, other=0.0).to(tl.float32)
    return z_u, z_f, z_c, z_o


@triton.jit
def _tanh(x):
    return 2 * tl.sigmoid(2 * x) - 1


@triton.jit
def _share(B, N, H_SLICE, BLOCK_B: tl.constexpr):
    """This program's share: its batch rows (and their mask), and its hidden units ``h_begin ...
    h_end``."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    h_begin = tl.program_id(1) * H_SLICE
    return rows, rows < B, h_begin, tl.minimum(h_begin + H_SLICE, N)


@triton.jit
def _tile(h0, h_end, rows, row_mask, N, BLOCK_H: tl.constexpr):
    """A tile of hidden units from ``h0``: its columns, their mask, the tile's mask and its offsets
    in a (B, N) slab."""
    cols = h0 + tl.arange(0, BLOCK_H)
    col_mask = cols < h_end
    return cols, col_mask, row_mask[:, None] & col_mask[None, :], rows[:, None] * N + cols[None, :]


@triton.jit
def _waited(start, spins, TIMER: tl.constexpr):
    """How long a barrier wait has lasted: ns since ``start`` on a GPU, else ``spins``."""
    if TIMER:
        return globaltimer() - start
    else:
        return spins


@triton.jit
def _sync(counter, phase, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr):
    """Wait until every program of this batch block has finished ``phase``; returns the next
    phase. The programs share ``counter``, to which each adds 1 per phase. A wait longer than
    ``WAIT`` (see :func:`_waited`) gives up: it marks the counter broken, which ends this wait and
    opens every later one of the block at once, so the launch ends, and
    :mod:`seqexp.kernels.barriers` reports it. The loop turns on the counter alone, which every
    thread of the program reads alike; a thread's own clock only decides whether it marks the
    counter (a masked atomic, so no thread leaves the loop, with its ``bar.sync``, before another)."""
    tl.debug_barrier()
    if SPLIT:
        tl.atomic_add(counter, 1, sem="release")
        target = (phase + 1) * tl.num_programs(1)
        seen = tl.atomic_add(counter, 0, sem="acquire")
        if seen < target:
            start = globaltimer() if TIMER else 0
            spins = 0
            while seen < target:
                spins += 1
                tl.atomic_or(counter, _BROKEN, sem="relaxed", mask=_waited(start, spins, TIMER) > WAIT)
                seen = tl.atomic_add(counter, 0, sem="acquire")
    tl.debug_barrier()
    return phase + 1


@triton.jit
def _lstm_forward(
    wx, W, p, hs, cells, gates, T, B, N, H_SLICE, sync,
    PEEPHOLE: tl.constexpr, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``hs[t+1]``, ``cells[t+1]`` and ``gates[t]`` (Γu, Γf, c̃, Γo) from ``hs[t]``, ``cells[t]``."""
    rows, row_mask, h_begin, h_end = _share(B, N, H_SLICE, BLOCK_B)
    G = 4 * N
    phase = 0
    for t in range(T):
        a_prev = hs + t * B * N
        for h0 in range(h_begin, h_end, BLOCK_H):
            cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
            z_at = wx + t * B * G + rows[:, None] * G + cols[None, :]
            z_u, z_f, z_c, z_o = _lstm_preactivations(
                z_at, a_prev, W, N, rows, row_mask, cols, col_mask, mask, BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE
            )
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
        # a<t> is whole before step t+1 reads it
        phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)


@triton.jit
def _backpropagated(
    dz, G, W, N, rows, row_mask, cols, col_mask,
    NB: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``(dz[rows, :NB·N] @ W_a[:NB·N])[:, cols]``: what the first ``NB`` blocks' products send
    back to the previous state. Rows of ``dz`` hold ``G`` entries. The blocks are unrolled so that
    their loads overlap; ``dz`` is read past the multiprocessor's cache (other programs wrote it)."""
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    for k0 in range(0, N, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < N
        for block in tl.static_range(NB):
            d = tl.load(
                dz + rows[:, None] * G + block * N + ks[None, :],
                mask=row_mask[:, None] & k_mask[None, :],
                other=0.0,
                cache_modifier=".cg",
            )
            w = tl.load(
                W + (block * N + ks[:, None]) * N + cols[None, :],
                mask=k_mask[:, None] & col_mask[None, :],
                other=0.0,
            )
            acc += _tile_product(d, w, DOT, IEEE)
    return acc


@triton.jit
def _lstm_backward(
    d_out, W, p, cells, gates, dz, dc, T, B, N, H_SLICE, sync,
    PEEPHOLE: tl.constexpr, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``dz[t] = ∂L/∂z<t>`` for t = T-1 ... 0, one phase per step: ``∂L/∂a<t>`` is ``d_out[t]``
    plus ``dz[t+1] @ W_a`` (``dz[T]`` is zeros); ``dc`` carries ∂L/∂c<t> back (from ∂L/∂c<T> to
    ∂L/∂c<0>). ∂L/∂a<0> is left to the caller: ``dz[0] @ W_a``."""
    rows, row_mask, h_begin, h_end = _share(B, N, H_SLICE, BLOCK_B)
    G = 4 * N
    phase = 0
    for step in range(T):
        t = T - 1 - step
        for h0 in range(h_begin, h_end, BLOCK_H):
            cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
            d_a = _backpropagated(
                dz + (t + 1) * B * G, G, W, N, rows, row_mask, cols, col_mask, 4,
                BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
            )  # fmt: skip
            d_a += tl.load(d_out + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            u = tl.load(gate_at, mask=mask, other=0.0)
            f = tl.load(gate_at + N, mask=mask, other=0.0)
            c_tilde = tl.load(gate_at + 2 * N, mask=mask, other=0.0)
            o = tl.load(gate_at + 3 * N, mask=mask, other=0.0)
            c_prev = tl.load(cells + t * B * N + state, mask=mask, other=0.0)
            h = _tanh(tl.load(cells + (t + 1) * B * N + state, mask=mask, other=0.0))
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
        # dz[t] is whole before step t-1 reads it
        phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)


@triton.jit
def _gru_forward(
    wx, W, hs, gates, reset, T, B, N, H_SLICE, sync,
    NB: tl.constexpr, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """The course's GRU (``NB = 3`` blocks r, u, c) or the simplified one (``NB = 2``: u, c).
    ``reset[t]`` keeps ``Γr * c<t-1>``, the input of ``W_c``'s product."""
    rows, row_mask, h_begin, h_end = _share(B, N, H_SLICE, BLOCK_B)
    G = NB * N
    U = NB - 2  # the u block; c follows it
    phase = 0
    for t in range(T):
        c_prev_at = hs + t * B * N
        recurrent_input = c_prev_at
        if NB == 3:  # Γr first: c̃'s product needs Γr * c<t-1> for every hidden unit
            recurrent_input = reset + t * B * N
            for h0 in range(h_begin, h_end, BLOCK_H):
                cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
                z_at = wx + t * B * G + rows[:, None] * G + cols[None, :]
                z_r = _preactivation(
                    z_at, c_prev_at, W, 0, N, rows, row_mask, cols, col_mask, mask,
                    BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
                )  # fmt: skip
                r = tl.sigmoid(z_r)
                c_prev = tl.load(c_prev_at + state, mask=mask, other=0.0).to(tl.float32)
                tl.store(gates + t * B * G + rows[:, None] * G + cols[None, :], r, mask=mask)
                tl.store(recurrent_input + state, (r * c_prev).to(reset.dtype.element_ty), mask=mask)
            phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)
        for h0 in range(h_begin, h_end, BLOCK_H):
            cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
            z_at = wx + t * B * G + rows[:, None] * G + cols[None, :]
            z_u = _preactivation(
                z_at, c_prev_at, W, U, N, rows, row_mask, cols, col_mask, mask,
                BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
            )  # fmt: skip
            z_c = _preactivation(
                z_at, recurrent_input, W, U + 1, N, rows, row_mask, cols, col_mask, mask,
                BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
            )  # fmt: skip
            u = tl.sigmoid(z_u)
            c_tilde = _tanh(z_c)
            c_prev = tl.load(c_prev_at + state, mask=mask, other=0.0).to(tl.float32)
            c = u * c_tilde + (1 - u) * c_prev
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            tl.store(gate_at + U * N, u, mask=mask)
            tl.store(gate_at + (U + 1) * N, c_tilde, mask=mask)
            tl.store(hs + (t + 1) * B * N + state, c.to(hs.dtype.element_ty), mask=mask)
        phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)


@triton.jit
def _gru_backward(
    d_out, W, hs, gates, dz, dc, T, B, N, H_SLICE, sync,
    NB: tl.constexpr, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``dz[t] = ∂L/∂z<t>`` for t = T-1 ... 0 (``dz[T]`` is zeros). ``dc`` carries the part of
    ∂L/∂c<t-1> that does not go through the first two blocks' products (``dc * (1 − Γu)``, and
    ``Γr *`` the gradient through ``W_c`` in the course form); that part is ``dz[t][:, :2N] @
    W_a[:2N]``, added at the next step, or by the caller for ∂L/∂c<0>."""
    rows, row_mask, h_begin, h_end = _share(B, N, H_SLICE, BLOCK_B)
    G = NB * N
    U = NB - 2  # the u block; c follows it
    phase = 0
    for step in range(T):
        t = T - 1 - step
        for h0 in range(h_begin, h_end, BLOCK_H):
            cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
            d_c = _backpropagated(
                dz + (t + 1) * B * G, G, W, N, rows, row_mask, cols, col_mask, 2,
                BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
            )  # fmt: skip
            d_c += tl.load(d_out + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_c += tl.load(dc + state, mask=mask, other=0.0)
            gate_at = gates + t * B * G + rows[:, None] * G + cols[None, :]
            u = tl.load(gate_at + U * N, mask=mask, other=0.0)
            c_tilde = tl.load(gate_at + (U + 1) * N, mask=mask, other=0.0)
            c_prev = tl.load(hs + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            dz_at = dz + t * B * G + rows[:, None] * G + cols[None, :]
            tl.store(dz_at + U * N, d_c * (c_tilde - c_prev) * u * (1 - u), mask=mask)
            tl.store(dz_at + (U + 1) * N, d_c * u * (1 - c_tilde * c_tilde), mask=mask)
            tl.store(dc + state, d_c * (1 - u), mask=mask)
        phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)
        if NB == 3:  # through Γr * c<t-1>: ∂L/∂(Γr * c<t-1>) = dz_c @ W_c
            for h0 in range(h_begin, h_end, BLOCK_H):
                cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
                d_reset = _backpropagated(
                    dz + t * B * G + 2 * N, G, W + 2 * N * N, N, rows, row_mask, cols, col_mask, 1,
                    BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
                )  # fmt: skip
                r_offsets = t * B * G + rows[:, None] * G + cols[None, :]
                r = tl.load(gates + r_offsets, mask=mask, other=0.0)
                c_prev = tl.load(hs + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
                tl.store(dz + r_offsets, d_reset * c_prev * r * (1 - r), mask=mask)
                tl.store(dc + state, tl.load(dc + state, mask=mask, other=0.0) + d_reset * r, mask=mask)
            phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)


@triton.jit
def _rnn_forward(
    wx, W, hs, T, B, N, H_SLICE, sync,
    RELU: tl.constexpr, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    rows, row_mask, h_begin, h_end = _share(B, N, H_SLICE, BLOCK_B)
    phase = 0
    for t in range(T):
        for h0 in range(h_begin, h_end, BLOCK_H):
            cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
            z = _preactivation(
                wx + t * B * N + state, hs + t * B * N, W, 0, N, rows, row_mask, cols, col_mask, mask,
                BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
            )  # fmt: skip
            a = tl.maximum(z, 0.0) if RELU else _tanh(z)
            tl.store(hs + (t + 1) * B * N + state, a.to(hs.dtype.element_ty), mask=mask)
        phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)


@triton.jit
def _rnn_backward(
    d_out, W, hs, dz, T, B, N, H_SLICE, sync,
    RELU: tl.constexpr, SPLIT: tl.constexpr, TIMER: tl.constexpr, WAIT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """``dz[t] = ∂L/∂z<t>`` for t = T-1 ... 0 (``dz[T]`` is zeros); ∂L/∂a<0> is ``dz[0] @ W_a``."""
    rows, row_mask, h_begin, h_end = _share(B, N, H_SLICE, BLOCK_B)
    phase = 0
    for step in range(T):
        t = T - 1 - step
        for h0 in range(h_begin, h_end, BLOCK_H):
            cols, col_mask, mask, state = _tile(h0, h_end, rows, row_mask, N, BLOCK_H)
            d_a = _backpropagated(
                dz + (t + 1) * B * N, N, W, N, rows, row_mask, cols, col_mask, 1,
                BLOCK_B, BLOCK_H, BLOCK_K, DOT, IEEE,
            )  # fmt: skip
            d_a += tl.load(d_out + t * B * N + state, mask=mask, other=0.0).to(tl.float32)
            a = tl.load(hs + (t + 1) * B * N + state, mask=mask, other=0.0).to(tl.float32)
            d_z = tl.where(a > 0, d_a, 0.0) if RELU else d_a * (1 - a * a)
            tl.store(dz + t * B * N + state, d_z, mask=mask)
        phase = _sync(sync + tl.program_id(0), phase, SPLIT, TIMER, WAIT)


def resident_programs(kernel: Any, device: torch.device, key: Hashable, compiled: Callable[[], Any]) -> int:
    """How many programs of ``kernel`` surely run at once, and so can meet at a barrier: the
    multiprocessors times the programs each holds, which the CUDA driver computes for the kernel
    that ``compiled()`` returns (kept per ``key``). One in Triton's interpreter, which runs
    programs one after another."""
    if isinstance(kernel, InterpretedFunction) or device.type != "cuda":
        return 1
    if key not in _RESIDENT:
        _RESIDENT[key] = processors(device) * barriers.programs_per_processor(compiled())
    return _RESIDENT[key]


_RESIDENT: dict[Hashable, int] = {}


def _launch(kernel: Any, like: Tensor, *args: Any, **constants: Any) -> None:
    """Run ``kernel`` for a sequence like ``like`` (T, B, n_a), shared out by :func:`choose_launch`
    over no more programs than run at once (:func:`resident_programs`). A split launch (programs
    that meet at barriers) is cooperative on a GPU: the driver starts it only with every program
    resident, or refuses it, and then it runs unsplit. Its barrier waits are bounded, and reported
    by :mod:`barriers`."""
    barriers.REPORTS.check()  # earlier launches that the GPU has finished: no waiting
    steps, batch, hidden = like.shape
    launch = choose_launch(batch, hidden, like.dtype, like.device)
    blocks = triton.cdiv(batch, launch.batch)
    interpreted = isinstance(kernel, InterpretedFunction)
    counters = torch.zeros(blocks, dtype=torch.int32, device=like.device)  # one barrier counter per block

    def start(splits: int, warmup: bool = False) -> Any:
        grid = (blocks, splits)
        arguments = (*args, triton.cdiv(hidden, splits), counters)
        options = dict(
            constants,
            SPLIT=splits > 1,
            TIMER=not interpreted,
            WAIT=barriers.WAIT_SPINS if interpreted else barriers.WAIT_NS,
            BLOCK_B=launch.batch,
            BLOCK_H=launch.hidden,
            BLOCK_K=launch.reduction,
            DOT=launch.dot,
            IEEE=like.dtype == torch.float32,
            num_warps=launch.warps,
            launch_cooperative_grid=splits > 1,
        )
        if warmup:
            return kernel.warmup(*arguments, grid=grid, **options)
        return kernel[grid](*arguments, **options)

    if launch.splits > 1:  # the compiled kernel is the same for any number of splits above 1
        key = (kernel.__name__, like.device, like.dtype, replace(launch, splits=2), *constants.items())
        resident = resident_programs(kernel, like.device, key, lambda: start(launch.splits, warmup=True))
        counted = (barriers.BROKEN - 1) // max(1, 2 * steps)  # a counter's count (≤ 2 per step) < BROKEN
        splits = min(launch.splits, resident // blocks, counted)
        launch = replace(launch, splits=splits if splits > 1 else 1)
    try:
        start(launch.splits)
    except RuntimeError as error:  # e.g. an MPS client holds fewer multiprocessors than the GPU has
        if launch.splits == 1 or "cooperative launch" not in str(error):
            raise
        warnings.warn(f"{kernel.__name__}: {error}; running it unsplit", stacklevel=4)
        launch = replace(launch, splits=1)
        start(1)
    if launch.splits > 1:
        barriers.REPORTS.add(kernel.__name__, launch.splits, counters, interpreted)


def _states(initial: Tensor, T: int, dtype: torch.dtype) -> Tensor:
    """A (T + 1, B, n_a) buffer whose first slab is the initial state."""
    states = initial.new_empty((T + 1, *initial.shape), dtype=dtype)
    states[0] = initial
    return states


def _pre_activation_gradients(T: int, B: int, G: int, like: Tensor) -> Tensor:
    """``dz`` for the backward kernels: (T + 1, B, G) float32, its last slab zeros."""
    dz = torch.empty(T + 1, B, G, dtype=torch.float32, device=like.device)
    dz[T].zero_()
    return dz


def lstm(
    x: Tensor, W_x: Tensor, b: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, peepholes: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The LSTM over ``x`` (T, B, n_x) from ``a0, c0``: ``a<1..T>`` and ``c<T>``."""
    return LSTMSequence.apply(project(x, W_x, b), W_a, a0, c0, peepholes)


class LSTMSequence(torch.autograd.Function):
    """As :class:`seqexp.kernels.manual.LSTMSequence`, one launch each way."""

    @staticmethod
    def forward(
        ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, peepholes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        T, B, G = wx.shape
        wx, W_a = wx.contiguous(), W_a.contiguous()
        hs, cells = _states(a0, T, wx.dtype), _states(c0, T, torch.float32)
        gates = wx.new_empty((T, B, G), dtype=torch.float32)
        p = cells if peepholes is None else peepholes.float().contiguous()  # cells: never read
        constants = {"PEEPHOLE": peepholes is not None}
        _launch(_lstm_forward, hs[1:], wx, W_a, p, hs, cells, gates, T, B, W_a.shape[1], **constants)
        ctx.save_for_backward(W_a, peepholes, hs, cells, gates)
        return hs[1:], cells[-1].to(wx.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc_last: Tensor) -> tuple[Tensor | None, ...]:
        W_a, peepholes, hs, cells, gates = ctx.saved_tensors
        T, B, G = gates.shape
        n = W_a.shape[1]
        d_outputs = d_outputs.contiguous()
        dc = dc_last.float().clone(memory_format=torch.contiguous_format)  # the kernel writes into it
        dz = _pre_activation_gradients(T, B, G, hs)
        p = cells if peepholes is None else peepholes.float().contiguous()
        constants = {"PEEPHOLE": peepholes is not None}
        _launch(_lstm_backward, hs[1:], d_outputs, W_a, p, cells, gates, dz, dc, T, B, n, **constants)
        dz = dz[:T]
        d_peepholes = None if peepholes is None else peephole_gradient(dz, cells).to(peepholes.dtype)
        dtype = hs.dtype
        da0 = dz[0] @ W_a.float()
        dz = dz.to(dtype)
        return dz, weight_gradient(dz, hs[:-1]), da0.to(dtype), dc.to(dtype), d_peepholes


class GRUSequence(torch.autograd.Function):
    """As :class:`seqexp.kernels.manual.GRUSequence`, one launch each way."""

    @staticmethod
    def forward(ctx: Any, wx: Tensor, W_a: Tensor, c0: Tensor) -> Tensor:
        T, B, G = wx.shape
        n = W_a.shape[1]
        wx, W_a = wx.contiguous(), W_a.contiguous()
        hs = _states(c0, T, wx.dtype)
        gates = wx.new_empty((T, B, G), dtype=torch.float32)
        relevance = G // n == 3
        reset = wx.new_empty((T, B, n)) if relevance else hs  # hs: never written
        _launch(_gru_forward, hs[1:], wx, W_a, hs, gates, reset, T, B, n, NB=G // n)
        ctx.save_for_backward(W_a, hs, gates, reset if relevance else None)
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        W_a, hs, gates, reset = ctx.saved_tensors
        T, B, G = gates.shape
        n = W_a.shape[1]
        dz = _pre_activation_gradients(T, B, G, hs)
        dc = torch.zeros(B, n, dtype=torch.float32, device=hs.device)
        _launch(_gru_backward, hs[1:], d_outputs.contiguous(), W_a, hs, gates, dz, dc, T, B, n, NB=G // n)
        dc0 = dc + dz[0, :, : 2 * n] @ W_a[: 2 * n].float()
        dz = dz[:T].to(hs.dtype)
        if reset is None:
            dW_a = weight_gradient(dz, hs[:-1])
        else:
            dW_a = torch.cat(
                [weight_gradient(dz[..., : 2 * n], hs[:-1]), weight_gradient(dz[..., 2 * n :], reset)]
            )
        return dz, dW_a, dc0.to(hs.dtype)


class RNNSequence(torch.autograd.Function):
    """As :class:`seqexp.kernels.manual.RNNSequence`, one launch each way."""

    @staticmethod
    def forward(ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, relu: bool) -> Tensor:
        T, B, n = wx.shape
        wx, W_a = wx.contiguous(), W_a.contiguous()
        hs = _states(a0, T, wx.dtype)
        _launch(_rnn_forward, hs[1:], wx, W_a, hs, T, B, n, RELU=relu)
        ctx.save_for_backward(W_a, hs)
        ctx.relu = relu
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor) -> tuple[Tensor | None, ...]:
        W_a, hs = ctx.saved_tensors
        T, B, n = hs[1:].shape
        dz = _pre_activation_gradients(T, B, n, hs)
        _launch(_rnn_backward, hs[1:], d_outputs.contiguous(), W_a, hs, dz, T, B, n, RELU=ctx.relu)
        da0 = dz[0] @ W_a.float()
        dz = dz[:T].to(hs.dtype)
        return dz, weight_gradient(dz, hs[:-1]), da0.to(hs.dtype), None
