"""Fast paths for seqexp's own cells: a whole sequence per call, with a hand-written backward.
Pure torch (and Triton, C++); may import seqexp.checks and cells.

:func:`run` computes exactly what :meth:`Recurrence.steps` computes (the cells stay the
readable reference), through the fastest kernel there is for the cell and device:

- ``triton`` — one GPU launch for the whole time loop (:mod:`seqexp.kernels.fused`), on CUDA;
- ``onednn`` — the LSTMs (the sLSTM too) on CPU in float32: the time loop in compiled C++, every
  matrix product oneDNN's (:mod:`seqexp.kernels.onednn`);
- ``manual`` — torch ops with the backward pass written by hand (:mod:`seqexp.kernels.manual`),
  on any device, and wherever the Triton kernel does not take the input;
- ``compiled`` — a recurrence linear in its state (:class:`~seqexp.cells.LinearRecurrence`:
  minGRU, minLSTM, LRU, the selective SSM) on CPU in float32 or float64: the time loop in C++ with
  each step's element-wise math fused into it (:mod:`seqexp.kernels.compiled`);
- ``scan`` — the same recurrences elsewhere (and where no C++ compiler is found): the scan in
  torch ops with a hand-written backward (:mod:`seqexp.kernels.scan`);
- ``cell`` — the cell's own whole-sequence fast path (:attr:`~seqexp.cells.Recurrence.fast_path`);
- ``loop`` — the cell's own step-by-step loop through autograd, for a cell with none of these
  (the GRU with ``reset_after``, whose fast path is torch.nn.GRU; the sLSTM where oneDNN's kernel
  does not take the input).

A cell says which applies through the cell protocol (:mod:`seqexp.cells.base`): the kernels'
equations it computes (:meth:`~seqexp.cells.Recurrence.kernel_equations`), that it is linear in
its state, or a fast path of its own. Nothing here names a cell.
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import cache
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

from seqexp.cells import LinearRecurrence, Recurrence, State
from seqexp.kernels import compiled, manual, onednn, scan

Kernel = Literal["triton", "onednn", "manual", "compiled", "scan", "cell", "loop"]


def has_kernel(cell: Recurrence) -> bool:
    """Whether a whole-sequence kernel (seqexp's, a scan, or the cell's own) computes this cell."""
    return isinstance(cell, LinearRecurrence) or cell.fast_path or cell.kernel_equations() is not None


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


def backend(family: str, like: Tensor) -> ModuleType | None:
    """The module whose kernel runs the equations ``family`` on inputs like ``like``: fused
    (Triton) on CUDA, onednn in float32 on CPU where it can be built, else manual; ``None`` where
    none of them computes ``family`` (the cell's loop runs it)."""
    on_onednn = like.device.type == "cpu" and family in onednn.FAMILIES and like.dtype in onednn.DTYPES
    if on_onednn and onednn.library() is not None:
        return onednn
    if family not in manual.FAMILIES:
        return None
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


def kernel_for(cell: Recurrence, like: Tensor) -> Kernel:
    """The kernel :func:`run` takes for ``cell`` on inputs like ``like``."""
    if isinstance(cell, LinearRecurrence):
        return compiled.NAME if compiled.takes(like) else scan.NAME
    if cell.fast_path:
        return "cell"
    found = cell.kernel_equations()
    kernels = None if found is None else backend(found[0], like)
    return "loop" if kernels is None else kernels.NAME


def run(cell: Recurrence, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """Run ``cell`` over a time-major sequence ``x`` (T, B, n_x) from ``state`` (its initial state
    if ``None``): returns ``a<1..T>`` (T, B, n_a) and the last state."""
    if state is None:
        state = cell.initial_state(x.shape[1], x)
    if isinstance(cell, LinearRecurrence):
        return (compiled if compiled.takes(x) else scan).run(cell, x, state)
    if cell.fast_path:
        return cell.sequence(x, state)
    found = cell.kernel_equations()
    kernels = None if found is None else backend(found[0], x)
    if found is None or kernels is None:
        outputs, state = cell.steps(x, state)
        return torch.stack(outputs), state
    family, w = found
    if family == "slstm":
        outputs, *rest = kernels.slstm(x, w["W"], w["b"], w["R"], *state)
        return outputs, (outputs[-1], *rest)
    if family == "lstm":
        outputs, c = kernels.lstm(x, w["W_x"], w["b"], w["W_a"], *state, w["peepholes"])
        return outputs, (outputs[-1], c)
    wx = kernels.project(x, w["W_x"], w["b"])
    if family.startswith("rnn"):
        outputs = kernels.RNNSequence.apply(wx, w["W_a"], state[0], family == "rnn_relu")
    else:
        outputs = kernels.GRUSequence.apply(wx, w["W_a"], state[0])
    return outputs, (outputs[-1],)
