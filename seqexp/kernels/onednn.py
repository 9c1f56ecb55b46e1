"""seqexp's CPU kernel for the LSTMs: the time loop in C++, every matrix product oneDNN's.

On this workplace's AMD CPUs torch's float32 products go through MKL, which runs at about half
oneDNN's rate, and a time loop in Python pays a fixed cost per call at every step. Here the whole
sequence is one call into ``onednn_lstm.cpp``, forward and one backward: the input's product for
all steps, then per step one oneDNN product (its primitive, and ``W_a`` in oneDNN's layout, made
once per sequence) and one vectorised pass of gate math over the batch rows on torch's OpenMP
threads, then the weights' gradients for all steps. The C++ is built on first use by
:mod:`seqexp.kernels.compiler` against oneDNN from the PyPI wheels ``onednn-cpu-gomp`` and
``onednn-devel-cpu-gomp`` (built on GNU OpenMP, so they share torch's threads) and called through
ctypes. float32 only. Where it cannot be built, or loading it would change how the process treats
subnormals, :func:`library` warns once and seqexp keeps the manual kernel.

The inputs' dtypes, devices and shapes are checked before any address reaches C++, whose errors
come back as Python ones; a sequence of no steps is an empty output with ``c<T> = c<0>``. Python
threads may call the kernel at once (ctypes lets go of the GIL for the call).

Computes what :class:`seqexp.kernels.manual.LSTMSequence` computes, to float rounding.
"""

from __future__ import annotations

import ctypes
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqexp.kernels import compiler
from seqexp.kernels.manual import peephole_gradient

NAME = "onednn"
SOURCE = Path(__file__).with_name("onednn_lstm.cpp")
DTYPES = (torch.float32,)
WHEELS = {"onednn-cpu-gomp": "libdnnl.so", "onednn-devel-cpu-gomp": "oneapi/dnnl/dnnl.hpp"}


def installed(wheel: str) -> Path:
    """Where ``wheel`` put its file of :data:`WHEELS`; raises ``OSError`` if it is not installed."""
    try:
        found = [f for f in metadata.files(wheel) or [] if f.as_posix().endswith(WHEELS[wheel])]
    except metadata.PackageNotFoundError:
        found = []
    if not found:
        raise OSError(f"oneDNN is not installed ({wheel}): pip install {' '.join(WHEELS)}")
    return Path(found[0].locate()).resolve()


def header_flags() -> list[str]:
    """The compiler's flags for oneDNN's headers."""
    return [f"-I{installed('onednn-devel-cpu-gomp').parents[2]}"]


def library_flags() -> list[str]:
    """The linker's flags for oneDNN's library."""
    library = installed("onednn-cpu-gomp").parent
    return [f"-L{library}", "-ldnnl", f"-Wl,-rpath,{library}"]


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or ``None`` (with a warning) where it cannot be built here."""
    try:
        lib = compiler.load(compiler.build(SOURCE, header_flags(), library_flags()))
    except OSError as error:
        message = f"seqexp's oneDNN LSTM is not available ({error}): using the manual kernel"
        warnings.warn(message, stacklevel=3)
        return None
    size, address = ctypes.c_int64, ctypes.c_void_p
    lib.lstm_forward.argtypes = [size] * 4 + [address] * 8
    lib.lstm_backward.argtypes = [size] * 4 + [address] * 14
    for function in (lib.lstm_forward, lib.lstm_backward):
        function.restype = ctypes.c_char_p
    return lib


def check_inputs(
    x: Tensor, W_x: Tensor, b: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, p: Tensor | None
) -> None:
    """Raises ``TypeError`` or ``ValueError`` naming the input whose dtype, device or shape the
    kernel does not take."""
    given = {"x": x, "W_x": W_x, "b": b, "W_a": W_a, "a0": a0, "c0": c0, "peepholes": p}
    for name, tensor in given.items():
        if tensor is None:
            continue
        if tensor.dtype != torch.float32:
            raise TypeError(f"the onednn LSTM takes torch.float32; {name} is {tensor.dtype}")
        if tensor.device.type != "cpu":
            raise ValueError(f"the onednn LSTM runs on the CPU; {name} is on {tensor.device}")
    if x.dim() != 3 or W_a.dim() != 2:
        raise ValueError(
            f"x must be (T, B, n_x) and W_a (4n, n); got {tuple(x.shape)} and {tuple(W_a.shape)}"
        )
    _, B, n_x = x.shape
    n = W_a.shape[1]
    expected = {  # W_a first: it alone says n
        "W_a": (4 * n, n),
        "W_x": (4 * n, n_x),
        "b": (4 * n,),
        "a0": (B, n),
        "c0": (B, n),
        "peepholes": (3, n),
    }
    for name, shape in expected.items():
        tensor = given[name]
        if tensor is not None and tensor.shape != shape:
            raise ValueError(
                f"{name} must be {shape} for x of {tuple(x.shape)} and {n} hidden units; "
                f"got {tuple(tensor.shape)}"
            )


def call(function: str, *arguments: int | Tensor | None) -> None:
    """``function`` of the library, with tensors passed by address; raises ``RuntimeError`` with
    the message of what went wrong in C++."""
    for position, argument in enumerate(arguments):
        if isinstance(argument, Tensor) and not argument.is_contiguous():
            raise ValueError(f"argument {position} of {function} is not contiguous")
    lib = library()
    if lib is None:
        raise RuntimeError("seqexp's oneDNN LSTM is not available here (see the warning)")
    refusal = getattr(lib, function)(*(a.data_ptr() if isinstance(a, Tensor) else a for a in arguments))
    if refusal is not None:
        raise RuntimeError(refusal.decode())


class LSTMSequence(torch.autograd.Function):
    """The LSTM over a whole sequence ``x`` (T, B, n_x) from ``a0, c0``, with peepholes
    ``p_u, p_f, p_o`` (3, n_a) when they are given: returns ``a<1..T>`` and ``c<T>``."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, W_x: Tensor, b: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, p: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        check_inputs(x, W_x, b, W_a, a0, c0, p)
        x, W_x, b, W_a = (t.contiguous() for t in (x, W_x, b, W_a))
        p = None if p is None else p.contiguous()
        T, B, n_x = x.shape
        n = W_a.shape[1]
        gates = x.new_empty(T, B, 4 * n)  # Γu, Γf, c̃, Γo
        cells, activations = x.new_empty(T + 1, B, n), x.new_empty(T + 1, B, n)
        cells[0], activations[0] = c0, a0
        call("lstm_forward", T, B, n_x, n, p, x, W_x, b, W_a, gates, cells, activations)
        ctx.save_for_backward(x, W_x, W_a, p, gates, cells, activations)
        return activations[1:], cells[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc_last: Tensor) -> tuple[Tensor | None, ...]:
        x, W_x, W_a, p, gates, cells, activations = ctx.saved_tensors
        dz = torch.empty_like(gates)
        dc = dc_last.clone(memory_format=torch.contiguous_format)  # ∂L/∂c<t>, stepped back in place
        da, dx, dW_x, dW_a = map(torch.empty_like, (dc, x, W_x, W_a))
        call(
            "lstm_backward", *x.shape, W_a.shape[1], p, x, W_x, W_a, gates, cells, activations,
            d_outputs.contiguous(), dz, dc, da, dx, dW_x, dW_a,
        )  # fmt: skip
        d_peepholes = None if p is None else peephole_gradient(dz, cells)
        return dx, dW_x, dz.sum((0, 1)), dW_a, da, dc, d_peepholes


lstm = LSTMSequence.apply
"""The LSTM over ``x`` (T, B, n_x) from ``a0, c0``: ``a<1..T>`` and ``c<T>`` (the input's
product included)."""
