"""seqexp's CPU kernel for the LSTMs: oneDNN's fused LSTM, peepholes included.

oneDNN, the library under torch.nn.LSTM on CPU, computes the course's LSTM over a whole sequence,
forward and backward, in one call, and with its peephole weights the course's peephole LSTM too.
torch does not expose the peepholes, so seqexp calls oneDNN itself: ``onednn_lstm.cpp``, built on
first use by :mod:`seqexp.kernels.compiler` against the oneDNN of the PyPI wheels
``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp`` (built on GNU OpenMP, so they share torch's
threads), and called through ctypes. float32 only. Where the library cannot be built,
:func:`library` warns once and seqexp keeps the manual kernel.

Its large buffers are asked onto huge pages: a fresh buffer of 100 MB otherwise costs 30 ms of
page faults on first touch on this workplace's machines, 3 ms on huge pages.
"""

from __future__ import annotations

import ctypes
import sys
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
HUGE_PAGE = 2**21
MADV_HUGEPAGE = 14


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


@cache
def libc() -> ctypes.CDLL | None:
    """The C library, for ``madvise`` (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    lib = ctypes.CDLL(None)
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def workspace(*shape: int, like: Tensor) -> Tensor:
    """An uninitialised buffer, asked onto huge pages where Linux allows it."""
    buffer = like.new_empty(shape)
    start = -(-buffer.data_ptr() // HUGE_PAGE) * HUGE_PAGE
    end = (buffer.data_ptr() + buffer.nbytes) // HUGE_PAGE * HUGE_PAGE
    if libc() is not None and end > start:
        libc().madvise(start, end - start, MADV_HUGEPAGE)
    return buffer


def buffer_bytes(sizes: tuple[int, ...], peepholes: Tensor | None, training: bool) -> list[int]:
    """The bytes of the workspace that the forward pass leaves for the backward pass, and of each
    pass's scratch memory, for an LSTM of ``sizes`` (T, B, n_x, n)."""
    counts = (ctypes.c_int64 * 3)()
    call("lstm_buffer_bytes", *sizes, peepholes is not None, training, ctypes.addressof(counts))
    return list(counts)


def raw(count: int) -> Tensor:
    return workspace(count, like=torch.empty(0, dtype=torch.uint8))


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
        training = any(ctx.needs_input_grad)
        kept_bytes, scratch_bytes, ctx.backward_scratch_bytes = buffer_bytes(sizes, p, training)
        kept, scratch = raw(kept_bytes), raw(scratch_bytes)
        outputs = workspace(*sizes[:2], sizes[3], like=x)
        a_last, c_last = torch.empty_like(inputs[4]), torch.empty_like(inputs[5])
        call("lstm_forward", *sizes, training, p, *inputs, outputs, a_last, c_last, kept, scratch)
        ctx.save_for_backward(p, *inputs, outputs, a_last, c_last, kept)
        return outputs, c_last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc_last: Tensor) -> tuple[Tensor | None, ...]:
        p, x, W_x, W_a, b, a0, c0, outputs, a_last, c_last, kept = ctx.saved_tensors
        dx = workspace(*x.shape, like=x)
        dW_x, dW_a, db, da0, dc0 = map(torch.empty_like, (W_x, W_a, b, a0, c0))
        dp = None if p is None else torch.empty_like(p)
        da_last = torch.zeros_like(a_last)  # a<T> is outputs[T - 1]: its gradient is in d_outputs
        call(
            "lstm_backward", *x.shape, W_a.shape[1], p, x, W_x, W_a, b, a0, c0, outputs, a_last, c_last,
            kept, raw(ctx.backward_scratch_bytes), d_outputs.contiguous(), da_last, dc_last.contiguous(),
            dx, dW_x, dW_a, db, dp, da0, dc0,
        )  # fmt: skip
        return dx, dW_x, dW_a, db, da0, dc0, dp

