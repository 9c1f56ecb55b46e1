"""seqexp's CPU kernel for the LSTMs: oneDNN's fused LSTM, peepholes included.

oneDNN, the library under torch.nn.LSTM on CPU, computes the course's LSTM over a whole sequence,
forward and backward, in one call, and with its peephole weights the course's peephole LSTM too.
torch does not expose the peepholes, so seqexp calls oneDNN itself: ``onednn_lstm.cpp``, built on
first use by :mod:`seqexp.kernels.compiler` against the oneDNN of the PyPI wheels
``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp`` (built on GNU OpenMP, so they share torch's
threads), and called through ctypes. float32 only. Where the library cannot be built,
:func:`library` warns once and seqexp keeps the manual kernel.
"""

from __future__ import annotations

import ctypes
import threading
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqexp.kernels import compiler

NAME = "onednn"
SOURCE = Path(__file__).with_name("onednn_lstm.cpp")
DTYPES = (torch.float32,)
WHEELS = {"onednn-cpu-gomp": "libdnnl.so", "onednn-devel-cpu-gomp": "oneapi/dnnl/dnnl.hpp"}


def installed(wheel: str, file: str) -> Path:
    """Where ``wheel`` put ``file``; raises ``OSError`` if it is not installed."""
    try:
        found = [f for f in metadata.files(wheel) or [] if f.as_posix().endswith(file)]
    except metadata.PackageNotFoundError:
        found = []
    if not found:
        raise OSError(f"oneDNN is not installed ({wheel}): pip install {' '.join(WHEELS)}")
    return Path(found[0].locate()).resolve()


def flags() -> list[str]:
    """The compiler's flags for oneDNN's headers and library."""
    library = installed("onednn-cpu-gomp", WHEELS["onednn-cpu-gomp"]).parent
    headers = installed("onednn-devel-cpu-gomp", WHEELS["onednn-devel-cpu-gomp"]).parents[2]
    return [f"-I{headers}", f"-L{library}", "-ldnnl", f"-Wl,-rpath,{library}"]


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or ``None`` (with a warning) where it cannot be built here."""
    try:
        lib = ctypes.CDLL(str(compiler.build(SOURCE, *flags())))
    except OSError as error:
        message = f"seqexp's oneDNN LSTM is not available ({error}): using the manual kernel"
        warnings.warn(message, stacklevel=3)
        return None
    size, flag, address = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.lstm_buffer_bytes.argtypes = [size] * 4 + [flag, flag, address]
    lib.lstm_forward.argtypes = [size] * 4 + [flag] + [address] * 12
    lib.lstm_backward.argtypes = [size] * 4 + [address] * 22
    for function in (lib.lstm_buffer_bytes, lib.lstm_forward, lib.lstm_backward):
        function.restype = ctypes.c_char_p
    return lib


def call(function: str, *arguments: int | Tensor | None) -> None:
    """``function`` of the library, with tensors passed by address; raises oneDNN's refusal."""
    refusal = getattr(library(), function)(*(a.data_ptr() if isinstance(a, Tensor) else a for a in arguments))
    if refusal is not None:
        raise RuntimeError(f"oneDNN refused the LSTM: {refusal.decode()}")


def buffer_bytes(sizes: tuple[int, ...], peepholes: Tensor | None, training: bool) -> list[int]:
    """The bytes of the workspace that the forward pass leaves for the backward pass, and of each
    pass's scratch memory, for an LSTM of ``sizes`` (T, B, n_x, n)."""
    counts = (ctypes.c_int64 * 3)()
    call("lstm_buffer_bytes", *sizes, peepholes is not None, training, ctypes.addressof(counts))
    return list(counts)


def raw(count: int) -> Tensor:
    return torch.empty(count, dtype=torch.uint8)


class Scratch(threading.local):
    """Each thread's scratch memory for oneDNN, kept from call to call and grown when a call needs
    more: tens of MB at the bench's sizes, which the system would otherwise fault in afresh at
    every call (torch's oneDNN keeps its scratch memory the same way)."""

    buffer = raw(0)

    def at_least(self, count: int) -> Tensor:
        if self.buffer.numel() < count:
            self.buffer = raw(0)  # freed before its successor is made
            self.buffer = raw(count)
        return self.buffer


scratch = Scratch()


class LSTMSequence(torch.autograd.Function):
    """The LSTM over a whole sequence ``x`` (T, B, n_x) from ``a0, c0``, with peepholes
    ``p_u, p_f, p_o`` (3, n_a) when they are given: returns ``a<1..T>`` and ``c<T>``."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, W_x: Tensor, W_a: Tensor, b: Tensor, a0: Tensor, c0: Tensor, p: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        inputs = [t.contiguous() for t in (x, W_x, W_a, b, a0, c0)]
        p = None if p is None else p.contiguous()
        sizes = (*x.shape, W_a.shape[1])
        training = any(ctx.needs_input_grad)  # else oneDNN's inference pass, which keeps nothing
        kept_bytes, forward_bytes, ctx.backward_bytes = buffer_bytes(sizes, p, training)
        kept, outputs = raw(kept_bytes), x.new_empty(*sizes[:2], sizes[3])
        a_last, c_last = torch.empty_like(inputs[4]), torch.empty_like(inputs[5])
        results = (outputs, a_last, c_last, kept, scratch.at_least(forward_bytes))
        call("lstm_forward", *sizes, training, p, *inputs, *results)
        ctx.save_for_backward(p, *inputs, outputs, a_last, c_last, kept)
        return outputs, c_last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc_last: Tensor) -> tuple[Tensor | None, ...]:
        p, *forward = ctx.saved_tensors  # x, W_x, W_a, b, a0, c0, outputs, a_last, c_last, kept
        x, W_x, W_a, b, a0, c0 = forward[:6]
        da_last = torch.zeros_like(a0)  # a<T> is outputs[T - 1]: its gradient is in d_outputs
        d_results = (d_outputs.contiguous(), da_last, dc_last.contiguous())
        d_inputs = [torch.empty_like(t) for t in (x, W_x, W_a, b)]
        d_peepholes = None if p is None else torch.empty_like(p)
        d_state = [torch.empty_like(a0), torch.empty_like(c0)]
        call(
            "lstm_backward", *x.shape, W_a.shape[1], p, *forward, scratch.at_least(ctx.backward_bytes),
            *d_results, *d_inputs, d_peepholes, *d_state,
        )  # fmt: skip
        return *d_inputs, *d_state, d_peepholes
