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
FAMILIES = ("lstm", "slstm")
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
    lib.slstm_forward_float32.argtypes = [size] * 4 + [address] * 9
    lib.slstm_backward_float32.argtypes = [size] * 4 + [address] * 17
    for function in (
        lib.lstm_forward,
        lib.lstm_backward,
        lib.slstm_forward_float32,
        lib.slstm_backward_float32,
    ):
        function.restype = ctypes.c_char_p
    return lib


def check_inputs(kernel: str, given: dict[str, Tensor | None], expected: dict[str, tuple[int, ...]]) -> None:
    """Raises ``TypeError`` or ``ValueError`` naming the input of ``kernel`` whose dtype, device or
    shape (``expected``) the kernel does not take."""
    for name, tensor in given.items():
        if tensor is None:
            continue
        if tensor.dtype != torch.float32:
            raise TypeError(f"the onednn {kernel} takes torch.float32; {name} is {tensor.dtype}")
        if tensor.device.type != "cpu":
            raise ValueError(f"the onednn {kernel} runs on the CPU; {name} is on {tensor.device}")
    for name, shape in expected.items():
        tensor = given[name]
        if tensor is not None and tensor.shape != shape:
            raise ValueError(f"{name} must be {shape} for the onednn {kernel}; got {tuple(tensor.shape)}")


def check_lstm_inputs(
    x: Tensor, W_x: Tensor, b: Tensor, W_a: Tensor, a0: Tensor, c0: Tensor, p: Tensor | None
) -> None:
    """:func:`check_inputs` for the LSTM, whose sizes ``x`` and ``W_a`` say."""
    given = {"x": x, "W_x": W_x, "b": b, "W_a": W_a, "a0": a0, "c0": c0, "peepholes": p}
    check_sizes("LSTM", x, W_a)
    _, B, n_x = x.shape
    n = W_a.shape[1]
    shapes = {
        "W_a": (4 * n, n),
        "W_x": (4 * n, n_x),
        "b": (4 * n,),
        "a0": (B, n),
        "c0": (B, n),
        "peepholes": (3, n),
    }
    check_inputs("LSTM", given, shapes)


def check_sizes(kernel: str, x: Tensor, recurrent: Tensor) -> None:
    """Raises ``ValueError`` unless ``x`` is (T, B, n_x) and the recurrent weights a matrix."""
    if x.dim() != 3 or recurrent.dim() != 2:
        raise ValueError(
            f"x must be (T, B, n_x) and the recurrent weights (4n, n) for the onednn {kernel}; "
            f"got {tuple(x.shape)} and {tuple(recurrent.shape)}"
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
        check_lstm_inputs(x, W_x, b, W_a, a0, c0, p)
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


class SLSTMSequence(torch.autograd.Function):
    """The sLSTM over a whole sequence ``x`` (T, B, n_x) from ``h0, c0, n0, m0``, its recurrent
    weights ``R`` given dense (4n, n): returns ``h<1..T>`` and ``c<T>``, ``n<T>``, ``m<T>``."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, W_x: Tensor, b: Tensor, R: Tensor, h0: Tensor, c0: Tensor, n0: Tensor, m0: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        given = {"x": x, "W_x": W_x, "b": b, "R": R, "h0": h0, "c0": c0, "n0": n0, "m0": m0}
        check_sizes("sLSTM", x, R)
        (T, B, n_x), n = x.shape, R.shape[1]
        rows = {"h0": (B, n), "c0": (B, n), "n0": (B, n), "m0": (B, n)}
        check_inputs("sLSTM", given, {"R": (4 * n, n), "W_x": (4 * n, n_x), "b": (4 * n,), **rows})
        x, W_x, b, R = (t.contiguous() for t in (x, W_x, b, R))
        gates = x.new_empty(T, B, 4 * n)  # z̃, ĩ, f̃, õ
        h, c, nrm, m = (x.new_empty(T + 1, B, n) for _ in range(4))
        h[0], c[0], nrm[0], m[0] = h0, c0, n0, m0
        call("slstm_forward_float32", T, B, n_x, n, x, W_x, b, R, gates, h, c, nrm, m)
        ctx.save_for_backward(x, W_x, R, gates, h, c, nrm, m)
        return h[1:], c[-1], nrm[-1], m[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_outputs: Tensor, dc: Tensor, dn: Tensor, dm: Tensor) -> tuple[Tensor, ...]:
        x, W_x, R, gates, h, c, nrm, m = ctx.saved_tensors
        dz = torch.empty_like(gates)
        dc, dn, dm = (d.clone(memory_format=torch.contiguous_format) for d in (dc, dn, dm))
        dh0, dx, dW_x, dR = map(torch.empty_like, (dc, x, W_x, R))
        call(
            "slstm_backward_float32", *x.shape, R.shape[1], x, W_x, R, gates, h, c, nrm, m,
            d_outputs.contiguous(), dz, dc, dn, dm, dh0, dx, dW_x, dR,
        )  # fmt: skip
        return dx, dW_x, dz.sum((0, 1)), dR, dh0, dc, dn, dm


slstm = SLSTMSequence.apply
"""The sLSTM over ``x`` (T, B, n_x) from ``h0, c0, n0, m0``: ``h<1..T>``, ``c<T>``, ``n<T>``, ``m<T>``."""
