"""Fast paths for seqexp's own cells: a whole sequence per call, with a hand-written backward.
Pure torch (and Triton, C++); may import seqexp.checks and cells.

:func:`run` computes exactly what :meth:`RecurrentCell.steps` computes (the cells stay the
readable reference), through the fastest kernel there is for the cell and device:

- ``triton`` — one GPU launch for the whole time loop (:mod:`seqexp.kernels.fused`), on CUDA;
- ``onednn`` — the LSTMs on CPU in float32: the time loop in compiled C++, every matrix product
  oneDNN's (:mod:`seqexp.kernels.onednn`);
- ``manual`` — torch ops with the backward pass written by hand (:mod:`seqexp.kernels.manual`),
  on any device, and wherever the Triton kernel does not take the input;
- ``loop`` — the cell's own step-by-step loop through autograd, for a cell with no kernel here
  (the GRU with ``reset_after``, whose fast path is torch.nn.GRU).
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import cache
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

from seqexp.cells import GRUCell, LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell, SimpleGRUCell, State
from seqexp.kernels import manual, onednn

Kernel = Literal["triton", "onednn", "manual", "loop"]


def has_kernel(cell: RecurrentCell) -> bool:
    """Whether a whole-sequence kernel computes this cell."""
    return isinstance(cell, LSTMCell | RNNCell | SimpleGRUCell) or (
        isinstance(cell, GRUCell) and not cell.reset_after
    )


@cache
def triton_kernels() -> ModuleType | None:
    """:mod:`seqexp.kernels.fused`, or ``None`` where Triton is not installed."""
    if importlib.util.find_spec("triton") is None:
        return None
    return importlib.import_module("seqexp.kernels.fused")


def fall_back(reason: str) -> None:
    """Say that a CUDA input runs on the manual kernel instead of Triton's (``warnings`` says it
    once per reason)."""
    warnings.warn(
        f"seqexp's Triton kernels do not run here ({reason}): using the manual kernel", stacklevel=3
    )


def backend(cell: RecurrentCell, like: Tensor) -> ModuleType:
    """The module whose kernel runs ``cell`` on inputs like ``like``: fused (Triton) on CUDA,
    onednn for a float32 LSTM on CPU where it can be built, else manual."""
    if like.device.type == "cpu":
        compiled = isinstance(cell, LSTMCell) and like.dtype in onednn.DTYPES
        return onednn if compiled and onednn.library() is not None else manual
    if not like.is_cuda:
        return manual
    fused = triton_kernels()
    if fused is None:
        fall_back("Triton is not installed")
        return manual
    if like.dtype not in fused.DTYPES:
        fall_back(f"{like.dtype} input; they take {', '.join(map(str, fused.DTYPES))}")
        return manual
    return fused


def kernel_for(cell: RecurrentCell, like: Tensor) -> Kernel:
    """The kernel :func:`run` takes for ``cell`` on inputs like ``like``."""
    if not has_kernel(cell):
        return "loop"
    return backend(cell, like).NAME


def run(cell: RecurrentCell, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """Run ``cell`` over a time-major sequence ``x`` (T, B, n_x) from ``state`` (zeros if
    ``None``): returns ``a<1..T>`` (T, B, n_a) and the last state."""
    if state is None:
        state = cell.initial_state(x.shape[1], x)
    if not has_kernel(cell):
        outputs, state = cell.steps(x, state)
        return torch.stack(outputs), state
    kernels = backend(cell, x)
    if isinstance(cell, LSTMCell):
        peepholes = (
            torch.stack([cell.p_u, cell.p_f, cell.p_o]) if isinstance(cell, PeepholeLSTMCell) else None
        )
        outputs, c = kernels.lstm(x, cell.W_x, cell.b, cell.W_a, *state, peepholes)
        return outputs, (outputs[-1], c)
    wx = kernels.project(x, cell.W_x, cell.b)
    if isinstance(cell, RNNCell):
        outputs = kernels.RNNSequence.apply(wx, cell.W_a, state[0], cell.nonlinearity == "relu")
    else:
        outputs = kernels.GRUSequence.apply(wx, cell.W_a, state[0])
    return outputs, (outputs[-1],)
