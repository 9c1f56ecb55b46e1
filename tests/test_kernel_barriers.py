"""The Triton kernels' barriers never hang: a launch splits no further than the programs that run
at once, and a barrier wait that cannot end gives up and raises. Checked in Triton's interpreter
(see conftest.py), which runs a launch's programs one after another: a split launch's first
program waits for programs that have not started, so every barrier of a forced split must give up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_kernels import assert_close_in_float32, everything, initial_state, stacks

from seqexp import kernels
from seqexp.kernels import barriers, fused
from seqexp.layers.recurrent import RecurrentStack

NOBODY_WROTE = pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
"""A launch whose barrier gave up computes from memory that no program wrote: numpy warns."""
SPLIT = fused.Launch(8, 8, 128, splits=2)
UNSPLIT = fused.Launch(8, 8, 128)
INTERPRETER = "Triton's interpreter runs programs one after another"


@pytest.fixture(autouse=True)
def triton_kernels_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU inputs run on the Triton kernels, in the interpreter."""
    torch.manual_seed(0)
    monkeypatch.setattr(kernels, "backend", lambda cell, like: fused)


def launches(monkeypatch: pytest.MonkeyPatch, *chosen: fused.Launch, resident: int = 64) -> None:
    """:func:`fused.choose_launch` answers ``chosen`` in turn (the last one from then on), and the
    interpreter is taken to run ``resident`` programs at once."""
    answers: Iterator[fused.Launch] = iter(chosen)
    monkeypatch.setattr(fused, "choose_launch", lambda *args: next(answers, chosen[-1]))
    monkeypatch.setattr(fused, "resident_programs", lambda *args: resident)


def within(seconds: float, run: Callable[[], Any]) -> BaseException | None:
    """What ``run()`` raised (``None`` if nothing), failing the test if it has not ended in time."""
    raised: list[BaseException | None] = [None]

    def target() -> None:
        try:
            run()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            raised[0] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting at a barrier after {seconds} s"
    return raised[0]


def forward_and_backward(stack: RecurrentStack, batch: int = 5) -> None:
    x = torch.randn(batch, 3, 3, requires_grad=True)
    outputs = stack.run(x).outputs
    torch.autograd.grad(outputs.sum(), [x, *stack.parameters()])


@NOBODY_WROTE
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("cell", ["rnn", "gru_simple", "gru", "lstm", "peephole"])
def test_a_split_launch_that_cannot_meet_raises_instead_of_hanging(
    cell: str, direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kernel, each way: the course's GRU meets twice per step, the LSTMs once."""
    launches(monkeypatch, SPLIT if direction == "forward" else UNSPLIT, SPLIT)
    stack, _ = stacks(cell, "uni", 3, 10, torch.float32)

    error = within(60, lambda: forward_and_backward(stack))

    assert isinstance(error, barriers.BarrierTimeout), error
    message = str(error)
    kernel = f"_{cell.removesuffix('_simple').replace('peephole', 'lstm')}_{direction}"
    assert (
        f"seqexp's Triton kernel {kernel}: a wait at the barrier of its 2 programs per batch block" in message
    )
    assert "results of that call (and anything computed from them) are wrong" in message
    assert INTERPRETER in message


@NOBODY_WROTE
def test_a_launch_splits_no_further_than_the_programs_that_run_at_once(monkeypatch) -> None:
    """17 rows in blocks of 8: 3 batch blocks. 7 programs at once leave 2 per block of the 4 asked
    for; 5 leave 1, which needs no barrier and computes what the cells compute."""
    launches(monkeypatch, fused.Launch(8, 8, 128, splits=4), resident=7)
    stack, step_by_step = stacks("lstm", "uni", 3, 10, torch.float32)

    error = within(60, lambda: forward_and_backward(stack, batch=17))
    assert isinstance(error, barriers.BarrierTimeout)
    assert "its 2 programs per batch block (6 in all)" in str(error)

    launches(monkeypatch, fused.Launch(8, 8, 128, splits=4), resident=5)
    x = torch.randn(17, 3, 3)
    state = initial_state(stack, 17, torch.float32)
    for got, expected in zip(everything(stack, x, state), everything(step_by_step, x, state), strict=True):
        assert_close_in_float32(got, expected)


def test_the_interpreter_runs_one_program_at_a_time(monkeypatch) -> None:
    """Unpatched, a launch asked to split runs unsplit in the interpreter: no error, the cells' results."""
    monkeypatch.setattr(fused, "choose_launch", lambda *args: SPLIT)
    stack, step_by_step = stacks("gru", "uni", 3, 10, torch.float32)
    assert fused.resident_programs(fused._gru_forward, torch.device("cpu"), "key", lambda: None) == 1
    x = torch.randn(5, 4, 3)
    state = initial_state(stack, 5, torch.float32)
    for got, expected in zip(everything(stack, x, state), everything(step_by_step, x, state), strict=True):
        assert_close_in_float32(got, expected)


class RefusesSplitLaunches:
    """A kernel whose split (cooperative) launches the driver refuses, as it does for an MPS client
    that holds fewer multiprocessors than the GPU reports."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.__name__ = kernel.__name__
        self.grids: list[tuple[int, int]] = []

    def __getitem__(self, grid: tuple[int, int]) -> Any:
        self.grids.append(grid)
        if grid[1] > 1:
            raise RuntimeError("Triton Error [CUDA]: too many blocks in cooperative launch")
        return self.kernel[grid]


def test_a_refused_cooperative_launch_runs_unsplit(monkeypatch) -> None:
    launches(monkeypatch, SPLIT)
    kernel = RefusesSplitLaunches(fused._rnn_forward)
    monkeypatch.setattr(fused, "_rnn_forward", kernel)
    stack, step_by_step = stacks("rnn", "uni", 3, 10, torch.float32)
    x = torch.randn(5, 4, 3)

    with (
        torch.no_grad(),
        pytest.warns(UserWarning, match="_rnn_forward: .*cooperative launch; running it unsplit"),
    ):
        outputs = stack.run(x).outputs
    assert kernel.grids == [(1, 2), (1, 1)]
    assert_close_in_float32(outputs, step_by_step.run(x).outputs)


class Event:
    """Stands for a torch.cuda.Event: whether the GPU has passed it."""

    def __init__(self) -> None:
        self.passed = False

    def query(self) -> bool:
        return self.passed

    def synchronize(self) -> None:
        self.passed = True


def test_a_gpu_launch_is_reported_once_the_gpu_has_finished_it() -> None:
    """No launch waits for the GPU to read an earlier one's counters; waiting is asked for."""
    reports = barriers.Reports()
    fine, broken = Event(), Event()
    reports.follow(
        barriers.Launched("_lstm_forward", 2, torch.tensor([4, 4], dtype=torch.int32), False, fine)
    )
    counters = torch.tensor([3, 3 | barriers.BROKEN], dtype=torch.int32)
    reports.follow(barriers.Launched("_lstm_backward", 2, counters, False, broken))

    reports.check()  # neither finished: nothing read yet
    fine.passed = True
    reports.check()  # the first one finished, fine; the second one not yet
    with pytest.raises(barriers.BarrierTimeout, match="kernel _lstm_backward: .* 2 programs per batch block"):
        reports.check(wait=True)
    reports.check(wait=True)  # reported once


COMPILE_FOR_A_GPU = """
import inspect, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from seqexp.kernels import barriers, fused

results = {}
for name in ("_gru_forward", "_gru_backward"):
    kernel = getattr(fused, name)
    params = list(inspect.signature(kernel.fn).parameters)
    constants = dict(NB=3, SPLIT=True, TIMER=True, WAIT=barriers.WAIT_NS, BLOCK_B=16, BLOCK_H=16, BLOCK_K=32,
                     DOT=True, IEEE=True)
    types = {p: "constexpr" if p in constants else "i32" if p in ("T", "B", "N", "H_SLICE") else "*fp32"
             for p in params}
    source = ASTSource(kernel, types, {(params.index(k),): v for k, v in constants.items()})
    options = {"num_warps": 4, "launch_cooperative_grid": True}
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    results[name] = {"globaltimer": "%globaltimer" in ptx, "atomic_or": ".or.b32" in ptx,
                     "cooperative": compiled.metadata.launch_cooperative_grid,
                     "cubin": len(compiled.asm["cubin"])}
json.dump(results, sys.stdout)
"""


def test_the_bounded_barrier_compiles_for_a_gpu(tmp_path: Path) -> None:
    """The interpreter never compiles the kernels; Triton's own ptxas does, without a GPU: the
    course's GRU (two barriers a step) each way, split, for an H100 (sm_90), its waits timed by
    %globaltimer, a wait that gives up marking the counter (an atomic or), the launch cooperative."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compiled anew from this source
    child = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR_A_GPU], capture_output=True, text=True, env=env, timeout=300
    )
    assert child.returncode == 0, child.stderr[-3000:]
    for name, compiled in json.loads(child.stdout).items():
        assert compiled["globaltimer"] and compiled["atomic_or"] and compiled["cooperative"], name
        assert compiled["cubin"] > 0, name
