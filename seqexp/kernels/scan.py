"""The scan of a recurrence linear in its state, ``h<t> = λ<t> ⊙ h<t-1> + β<t>``, over a whole
sequence, with its backward pass written by hand. Pure torch; real or complex.

On a CPU the fastest form is the plain one: one fused multiply-add over the batch and state per
step, into a preallocated output, with no autograd graph over time; the backward pass is the
same scan run backwards, ``g<t> = ∂L/∂h<t> + conj(λ<t+1>) ⊙ g<t+1>``, after which every other
gradient is one element-wise product over the whole sequence. (The log-space and chunked
parallel scans do O(log T) times the work to use many cores, which a CPU does not have: measured
in ``seqexp/kernels/README.md``.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqexp.cells import LinearRecurrence, State

NAME = "scan"


class LinearScan(torch.autograd.Function):
    """``h<1..T>`` from ``λ<1..T>``, ``β<1..T>`` (T, B, ...) and ``h<0>`` (B, ...)."""

    @staticmethod
    def forward(lam: Tensor, beta: Tensor, h0: Tensor) -> Tensor:
        h = torch.empty_like(beta)
        previous = h0
        for t in range(beta.shape[0]):
            torch.addcmul(beta[t], lam[t], previous, out=h[t])
            previous = h[t]
        return h

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        lam, _, h0 = inputs
        ctx.save_for_backward(lam, h0, output)

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lam, h0, h = ctx.saved_tensors
        lam = lam.conj()
        g = grad_h.clone(memory_format=torch.contiguous_format)
        for t in range(g.shape[0] - 2, -1, -1):
            g[t].addcmul_(lam[t + 1], g[t + 1])
        grad_lam = torch.empty_like(g)
        torch.mul(g[0], h0.conj(), out=grad_lam[0])
        torch.mul(g[1:], h[:-1].conj(), out=grad_lam[1:])  # ∂L/∂λ<t> = g<t> ⊙ conj(h<t-1>)
        return grad_lam, g, lam[0] * g[0]


def linear_scan(lam: Tensor, beta: Tensor, h0: Tensor) -> Tensor:
    """``h<t> = λ<t> ⊙ h<t-1> + β<t>`` for t = 1..T: (T, B, ...) each, ``h0`` (B, ...)."""
    lam, beta, h0 = torch.broadcast_tensors(lam, beta, h0[None])
    return LinearScan.apply(lam, beta.contiguous(), h0[0])


def run(cell: LinearRecurrence, x: Tensor, state: State) -> tuple[Tensor, State]:
    """``cell`` over ``x`` (T, B, n_x) from ``state``: ``a<1..T>`` (T, B, n_a) and the last state."""
    lam, beta = cell.coefficients(x)
    h = linear_scan(lam, beta, state[1])
    outputs = cell.readout(h, x)
    return outputs, (outputs[-1], h[-1])
