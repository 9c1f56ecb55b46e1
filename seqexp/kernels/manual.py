"""Whole-sequence recurrences with the backward pass written by hand, in plain torch ops.

Autograd records every small op of a step-by-step loop and replays it backwards. Here the
forward loop runs without autograd and keeps only what the backward pass needs; the backward
loop applies the chain rule of a whole step at once, and the weight gradients are one matrix
product over all time steps after it. Any device; on CPU this is seqexp's fast path.

Every kernel module offers the same: :func:`lstm` for the LSTMs from the inputs ``x`` (a kernel
may fuse the input projection into it), and :func:`project` for the input projection of all
steps, then ``GRUSequence`` and ``RNNSequence``.

Shapes are time-major: ``wx`` (T, B, blocks · n_a) is ``W_x x<t> + b`` for every step, ``W_a``
(blocks · n_a, n_a), states (B, n_a). Every function returns ``a<1..T>`` (T, B, n_a) and the
last state; its gradients are those of the step-by-step cells in :mod:`seqexp.cells`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

NAME = "manual"
FAMILIES = ("rnn_tanh", "rnn_relu", "gru_simple", "gru", "lstm")
"""What :func:`seqexp.kernels.kernel_for` calls this module's kernels."""

sigmoid_backward = torch.ops.aten.sigmoid_backward
"""``sigmoid_backward(g, σ(z)) = g · σ(z) · (1 − σ(z))``."""
tanh_backward = torch.ops.aten.tanh_backward
"""``tanh_backward(g, tanh(z)) = g · (1 − tanh(z)²)``."""


def project(x: Tensor, W_x: Tensor, b: Tensor) -> Tensor:
    """``W_x x<t> + b`` for all steps at once: (T, B, n_x) -> (T, B, blocks · n_a)."""
    return F.linear(x, W_x, b)


def previous_activations(a0: Tensor, outputs: Tensor) -> Tensor:
    """``a<0..T-1>`` (T, B, n_a): the activation each step's recurrent product saw."""
    return torch.cat([a0[None], outputs[:-1]])


def weight_gradient(dz: Tensor, inputs: Tensor) -> Tensor:
    """``Σ_t dz<t>ᵀ · inputs<t>``: the gradient of a weight matrix from all steps in one product."""
    return dz.flatten(0, 1).T @ inputs.flatten(0, 1)


def peephole_gradient(dz: Tensor, cells: Tensor) -> Tensor:
    """``∂L/∂(p_u, p_f, p_o)`` (3, n_a) from the LSTM's ``dz`` (T, B, 4 n_a) and ``c<0..T>``: Γu and Γf
    see ``c<t-1>``, Γo sees ``c<t>``."""
    u, f, _, o = dz.chunk(4, dim=-1)
    return torch.stack(
        [(u * cells[:-1]).sum((0, 1)), (f * cells[:-1]).sum((0, 1)), (o * cells[1:]).sum((0, 1))]
    )


def lstm(
    x: Tensor, W_x: Tensor, b: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, peepholes: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The LSTM over ``x`` (T, B, n_x) from ``a0, c0``: ``a<1..T>`` and ``c<T>``."""
    return LSTMSequence.apply(project(x, W_x, b), W_a, a0, c0, peepholes)


class LSTMSequence(torch.autograd.Function):
    """The LSTM (blocks u, f, c, o), with peepholes ``p_u, p_f, p_o`` when they are given."""

    @staticmethod
    def forward(
        ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, peepholes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = wx.shape
        n = W_a.shape[1]
        gates = torch.empty_like(wx)  # Γu, Γf, c̃, Γo
        cells = wx.new_empty(T + 1, B, n)
        tanh_cells = wx.new_empty(T, B, n)
        outputs = wx.new_empty(T, B, n)
        cells[0] = c0
        a, W_aT = a0, W_a.T
        for t, wx_t in enumerate(wx.unbind(0)):
            z = torch.addmm(wx_t, a, W_aT)
            c_prev = cells[t]
            if peepholes is not None:  # + p_u * c<t-1>, + p_f * c<t-1>
                z.view(B, 4, n)[:, :2].addcmul_(peepholes[:2], c_prev[:, None])
            z[:, 2 * n : 3 * n].mul_(2)  # tanh(z) = 2σ(2z) − 1: one σ for all four blocks
            u, f, c_tilde, o = torch.sigmoid(z, out=gates[t]).chunk(4, dim=1)
            c_tilde.mul_(2).sub_(1)
            c = torch.addcmul(f * c_prev, u, c_tilde, out=cells[t + 1])
            if peepholes is not None:  # Γo = σ(W_o [a<t-1>, x<t>] + p_o * c<t> + b_o)
                torch.sigmoid(torch.addcmul(z[:, 3 * n :], peepholes[2], c), out=o)
            a = torch.mul(o, torch.tanh(c, out=tanh_cells[t]), out=outputs[t])
        ctx.save_for_backward(W_a, a0, peepholes, gates, cells, tanh_cells, outputs)
        return outputs, cells[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc_last: Tensor) -> tuple[Tensor | None, ...]:
        W_a, a0, peepholes, gates, cells, tanh_cells, outputs = ctx.saved_tensors
        T, B, n = outputs.shape
        dc = dc_last.clone()  # autograd gives zeros for an output that the loss does not use
        dz = torch.empty_like(gates)
        d_gate = torch.empty(B, 4 * n, dtype=gates.dtype, device=gates.device)
        du, df, dc_tilde, do = d_gate.chunk(4, dim=1)
        da = d_outputs[-1]
        for t in reversed(range(T)):
            u, f, c_tilde, o = gates[t].chunk(4, dim=1)
            c_prev, h = cells[t], tanh_cells[t]
            torch.mul(da, h, out=do)
            dz_u, dz_f, dz_c, dz_o = dz[t].chunk(4, dim=1)
            sigmoid_backward(do, o, grad_input=dz_o)
            dc += tanh_backward(da * o, h)
            if peepholes is not None:
                dc.addcmul_(dz_o, peepholes[2])
            torch.mul(dc, c_tilde, out=du)
            torch.mul(dc, c_prev, out=df)
            torch.mul(dc, u, out=dc_tilde)
            sigmoid_backward(d_gate[:, : 2 * n], gates[t][:, : 2 * n], grad_input=dz[t][:, : 2 * n])
            tanh_backward(dc_tilde, c_tilde, grad_input=dz_c)
            dc = dc * f
            if peepholes is not None:
                dc.addcmul_(dz_u, peepholes[0]).addcmul_(dz_f, peepholes[1])
            da = torch.addmm(d_outputs[t - 1], dz[t], W_a) if t else dz[t] @ W_a
        d_peepholes = None if peepholes is None else peephole_gradient(dz, cells)
        return dz, weight_gradient(dz, previous_activations(a0, outputs)), da, dc, d_peepholes


class GRUSequence(torch.autograd.Function):
    """The course's GRU: blocks r, u, c (``c̃ = tanh(W_c [Γr * c<t-1>, x<t>] + b_c)``), or the
    simplified one, blocks u, c (``c̃ = tanh(W_c [c<t-1>, x<t>] + b_c)``)."""

    @staticmethod
    def forward(ctx: Any, wx: Tensor, W_a: Tensor, c0: Tensor) -> Tensor:
        T, B, _ = wx.shape
        n = W_a.shape[1]
        relevance = W_a.shape[0] == 3 * n
        W_uT, W_cT = W_a[-2 * n : -n].T, W_a[-n:].T  # u and c blocks
        gates = torch.empty_like(wx)  # (Γr,) Γu, c̃
        reset_cells = wx.new_empty(T, B, n) if relevance else None  # Γr * c<t-1>
        outputs = wx.new_empty(T, B, n)
        c = c0
        for t, wx_t in enumerate(wx.unbind(0)):
            if relevance:
                z_ru = torch.addmm(wx_t[:, : 2 * n], c, W_a[: 2 * n].T)
                r, u = torch.sigmoid(z_ru, out=gates[t][:, : 2 * n]).chunk(2, dim=1)
                recurrent_input = torch.mul(r, c, out=reset_cells[t])
            else:
                u = torch.sigmoid(torch.addmm(wx_t[:, :n], c, W_uT), out=gates[t][:, :n])
                recurrent_input = c
            c_tilde = torch.tanh(torch.addmm(wx_t[:, -n:], recurrent_input, W_cT), out=gates[t][:, -n:])
            c = torch.addcmul(c, u, c_tilde - c, out=outputs[t])  # Γu * c̃ + (1 − Γu) * c<t-1>
        ctx.save_for_backward(W_a, c0, gates, reset_cells, outputs)
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        W_a, c0, gates, reset_cells, outputs = ctx.saved_tensors
        T, B, n = outputs.shape
        relevance = reset_cells is not None
        c_prev_all = previous_activations(c0, outputs)
        dz = torch.empty_like(gates)
        dc = d_outputs[-1]
        for t in reversed(range(T)):
            u, c_tilde = gates[t][:, -2 * n : -n], gates[t][:, -n:]
            c_prev = c_prev_all[t]
            dz_u, dz_c = dz[t][:, -2 * n : -n], dz[t][:, -n:]
            sigmoid_backward(dc * (c_tilde - c_prev), u, grad_input=dz_u)
            tanh_backward(dc * u, c_tilde, grad_input=dz_c)
            dc_prev = torch.addcmul(dc, dc, u, value=-1)  # dc * (1 − Γu)
            if relevance:
                r = gates[t][:, :n]
                d_reset = dz_c @ W_a[-n:]  # ∂L/∂(Γr * c<t-1>)
                sigmoid_backward(d_reset * c_prev, r, grad_input=dz[t][:, :n])
                dc_prev.addcmul_(d_reset, r).addmm_(dz[t][:, : 2 * n], W_a[: 2 * n])
            else:
                dc_prev.addmm_(dz[t], W_a)
            dc = dc_prev + d_outputs[t - 1] if t else dc_prev
        if relevance:
            dW_a = torch.cat(
                [weight_gradient(dz[..., : 2 * n], c_prev_all), weight_gradient(dz[..., -n:], reset_cells)]
            )
        else:
            dW_a = weight_gradient(dz, c_prev_all)
        return dz, dW_a, dc


class RNNSequence(torch.autograd.Function):
    """The basic RNN, ``a<t> = g(W_a a<t-1> + W_x x<t> + b)`` with ``g`` tanh or ReLU."""

    @staticmethod
    def forward(ctx: Any, wx: Tensor, W_a: Tensor, a0: Tensor, relu: bool) -> Tensor:
        outputs = torch.empty_like(wx)
        a, W_aT = a0, W_a.T
        for t, wx_t in enumerate(wx.unbind(0)):
            z = torch.addmm(wx_t, a, W_aT, out=outputs[t])
            a = z.relu_() if relu else z.tanh_()
        ctx.save_for_backward(W_a, a0, outputs)
        ctx.relu = relu
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor) -> tuple[Tensor | None, ...]:
        W_a, a0, outputs = ctx.saved_tensors
        dz = torch.empty_like(outputs)
        da = d_outputs[-1]
        for t in reversed(range(len(outputs))):
            if ctx.relu:
                torch.ops.aten.threshold_backward(da, outputs[t], 0, grad_input=dz[t])
            else:
                tanh_backward(da, outputs[t], grad_input=dz[t])
            da = torch.addmm(d_outputs[t - 1], dz[t], W_a) if t else dz[t] @ W_a
        return dz, weight_gradient(dz, previous_activations(a0, outputs)), da, None
