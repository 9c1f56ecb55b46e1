"""Safety of the Triton kernels' barriers (:mod:`seqexp.kernels.fused`): how many programs of a
compiled kernel the GPU runs at once, and the report of a barrier wait that gave up.

A program that waits at a barrier longer than its bound marks its batch block's barrier counter
broken (adds :data:`BROKEN`): every later wait of that block then passes at once, so the launch
ends instead of hanging. The counters are read back after the launch: at once on CPU (Triton's
interpreter has finished when the launch returns); on a GPU by a copy to pinned host memory that
is checked at the next launch or by :func:`check`, so no launch waits for the GPU.
"""

from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import Tensor

BROKEN = 1 << 30
"""Added to a barrier counter by a wait that gave up; the counts themselves stay below it."""
WAIT_NS = 10 * 10**9
"""On a GPU, how long one barrier wait may last (ns): a step's wait normally takes microseconds;
preemption and time-slicing pause it for milliseconds."""
WAIT_SPINS = 100
"""In Triton's interpreter, how many times one barrier wait reads its counter. The interpreter runs
the programs one after another, so a wait for another program of the launch can never end."""


class BarrierTimeout(RuntimeError):
    """A launch's programs were not all running at once: a barrier wait gave up."""


@cache
def _occupancy() -> Any:
    """The driver's ``cuOccupancyMaxActiveBlocksPerMultiprocessor`` (libcuda is loaded already)."""
    function = ctypes.CDLL("libcuda.so.1").cuOccupancyMaxActiveBlocksPerMultiprocessor
    function.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def programs_per_processor(compiled: Any) -> int:
    """How many programs of ``compiled`` (a Triton ``CompiledKernel``) one multiprocessor holds at
    once, from its registers, shared memory and warps, as the CUDA driver computes it (the count
    a cooperative launch is checked against)."""
    _ = compiled.run  # loads the binary onto the device: its function handle and register count
    threads = compiled.metadata.num_warps * compiled.metadata.warp_size
    programs = ctypes.c_int()
    status = _occupancy()(ctypes.byref(programs), compiled.function, threads, compiled.metadata.shared)
    if status != 0:
        raise RuntimeError(f"cuOccupancyMaxActiveBlocksPerMultiprocessor failed (CUresult {status})")
    return programs.value


def _message(kernel: str, splits: int, programs: int, interpreted: bool) -> str:
    what = (
        f"seqexp's Triton kernel {kernel}: a wait at the barrier of its {splits} programs per batch "
        f"block ({programs} in all) gave up, so they were not all running at once and the results "
        "of that call (and anything computed from them) are wrong. "
    )
    if interpreted:
        return what + (
            "Triton's interpreter runs programs one after another, so a launch split across the hidden "
            "units never passes its barrier: on CPU a launch must not split (Launch.splits=1)."
        )
    return what + (
        f"A wait lasts at most {WAIT_NS / 1e9:g} s; the launch was cooperative and sized to the GPU's "
        "occupancy, so something held the multiprocessors for that long (a debugger, another process "
        "or MPS client). Run the GPU alone, or run the cell with model.impl=loop, and report it."
    )


@dataclass(frozen=True)
class Launched:
    """A split launch whose barrier counters (``counters``, a host copy once ``done``) are unread."""

    kernel: str
    splits: int
    counters: Tensor
    interpreted: bool
    done: Any = None  # a torch.cuda.Event after the copy, on a GPU

    def raise_if_broken(self) -> None:
        if bool((self.counters & BROKEN).any()):
            programs = self.counters.numel() * self.splits
            raise BarrierTimeout(_message(self.kernel, self.splits, programs, self.interpreted))


class Reports:
    """The barrier counters of split launches, read without making a launch wait for the GPU."""

    def __init__(self) -> None:
        self._pending: deque[Launched] = deque()

    def add(self, kernel: str, splits: int, counters: Tensor, interpreted: bool) -> None:
        """After launching ``kernel``: report its ``counters`` (one per batch block) now on CPU,
        later on a GPU. A launch captured into a CUDA graph is not followed (its replays are not
        launches here); its waits are still bounded."""
        if counters.device.type != "cuda":
            Launched(kernel, splits, counters, interpreted).raise_if_broken()
            return
        if torch.cuda.is_current_stream_capturing():
            return
        host = torch.empty(counters.shape, dtype=counters.dtype, pin_memory=True)
        host.copy_(counters, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self.follow(Launched(kernel, splits, host, interpreted, done))

    def follow(self, launched: Launched) -> None:
        """Check ``launched`` once its ``done`` event has passed."""
        self._pending.append(launched)

    def check(self, wait: bool = False) -> None:
        """Raise :class:`BarrierTimeout` for a past launch whose barrier broke: among the launches
        the GPU has finished, or all of them if ``wait``."""
        while self._pending and (wait or self._pending[0].done.query()):
            launched = self._pending.popleft()
            launched.done.synchronize()
            launched.raise_if_broken()


REPORTS = Reports()


def check() -> None:
    """Wait for every Triton launch so far and raise :class:`BarrierTimeout` if a barrier broke
    (launches are otherwise checked as the GPU finishes them, at the next launch)."""
    REPORTS.check(wait=True)
