"""How fast seqexp's recurrences are against torch.nn's, and whether its kernels are right.

Every time is the median of repeats of one batch's forward+backward, next to torch.nn's kernel
of the same topology (``nn.RNN`` / ``GRU`` / ``LSTM``: oneDNN on CPU, cuDNN on GPU, the one whose
equations are nearest the cell's) and to ``nn.LSTM``, both timed in the same run on the same
inputs. ``block`` times a cell in two residual blocks whose parameters match ``nn.LSTM``'s.

The cells are the ``cell`` config group's options, shipped or in a ``--config-dir`` of one's own,
built as a run builds them (Hydra composes them: ``hydra-core`` is all it needs beside torch);
``seqexp-bench`` runs the same measurements beside its loop and start-up ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from itertools import accumulate
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from seqexp import kernels
from seqexp.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from seqexp.layers import BlockStack
from seqexp.layers.recurrent import CellFactory, RecurrentStack
from seqexp.models.budget import hidden_size_for_budget, trainable_parameters

console = Console(width=None if sys.stdout.isatty() else 200)  # piped: whole rows, not wrapped cells
CPU_SIZES = [(64, 100, 32, 128), (64, 1000, 32, 128), (64, 500, 2, 128), (128, 200, 64, 256)]
"""(B, T, n_x, n_a) of the CPU targets."""
GPU_SIZES = [(64, 100, 32, 128), (64, 100, 512, 512), (64, 1000, 32, 128), (256, 200, 64, 256)]
"""(B, T, n_x, n_a) of the GPU targets."""
TINY_SIZES = [(2, 5, 3, 4)]
REFERENCE: dict[str, CellFactory] = {
    "rnn_tanh": RNNCell,
    "rnn_relu": partial(RNNCell, nonlinearity="relu"),
    "gru_simple": partial(GRUCell, reset_after=True),
    "gru": partial(GRUCell, reset_after=True),
    "lstm": LSTMCell,
    "slstm": LSTMCell,
}
"""The torch.nn kernel nearest each of the kernels' equations: nn.RNN, nn.GRU or nn.LSTM."""
TOPOLOGIES = {
    "uni": (1, False),
    "bi": (1, True),
    "deep": (3, False),
    "deep_bi": (2, True),
    "block": (2, False),
}
"""(layers, bidirectional) of each topology timed; ``block`` is two residual blocks."""


def shipped_cells() -> list[str]:
    """The options of the ``cell`` config group that seqexp ships."""
    from seqexp.config.compose import options

    return options("cell")


def cell_factory(name: str, config_dir: Path | None = None) -> CellFactory:
    """The cells of option ``name`` of the ``cell`` group (in ``config_dir`` too), with its options."""
    from hydra.utils import get_class

    from seqexp.config.checking import options
    from seqexp.config.compose import composed

    search = [f"hydra.searchpath=[file://{config_dir.resolve()}]"] if config_dir else []
    node = composed([*search, f"cell={name}"]).cell
    return partial(get_class(node._target_), **options(node, drop=("name", "_target_")))


def reference_for(make_cell: CellFactory) -> CellFactory:
    """The cell whose torch.nn kernel a cell of ``make_cell`` is compared with: its own where torch
    has it, the nearest to its equations, or nn.LSTM for a cell torch has nothing like."""
    cell = make_cell(1, 4)
    if cell.native is not None:
        return make_cell
    found = cell.kernel_equations()
    return REFERENCE[found[0]] if found else LSTMCell


def block_stack(make_cell: CellFactory, n_x: int, parameters: int, impl: str) -> BlockStack:
    """Two residual blocks of ``make_cell`` whose width gives them about ``parameters`` parameters."""

    def count(width: int) -> int:
        with torch.device("meta"):
            return trainable_parameters(BlockStack(make_cell, n_x, width))

    return BlockStack(make_cell, n_x, hidden_size_for_budget(count, parameters, tolerance=0.15), impl=impl)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class KernelTiming:
    cell: str
    topology: str
    size: tuple[int, int, int, int]
    dtype: str
    kernel: str
    """What ran: ``triton``, ``cpu``, ``manual`` or ``loop`` (seqexp's kernels, see
    :mod:`seqexp.kernels`), or ``native`` (torch.nn)."""
    ms: float
    """Median forward+backward time of one batch."""
    reference_ms: float
    """The same for the torch.nn kernel (nn.RNN / GRU / LSTM) of the same topology."""
    lstm_ms: float
    """The same for nn.LSTM of the same topology and sizes."""
    saved_mb: float
    """Memory that autograd keeps for the backward pass."""
    reference_saved_mb: float
    peak_mb: float
    """The most memory in use at once during forward+backward, above what was in use before."""
    reference_peak_mb: float

    @property
    def ratio(self) -> float:
        return self.ms / self.reference_ms

    @property
    def lstm_ratio(self) -> float:
        return self.ms / self.lstm_ms


def median_ms(runs: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """The median time of each run, in ms. The runs take turns, so that a machine whose speed
    drifts slows them all alike."""

    def timed(run: Callable[[], object]) -> float:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for run in runs.values():
        timed(run)  # warm-up (and Triton's compilation)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run))
    return {name: statistics.median(seconds) * 1000 for name, seconds in times.items()}


def saved_for_backward_mb(stack: nn.Module, x: torch.Tensor) -> float:
    """The bytes of every tensor autograd saves in one forward pass, in MB."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stack(x)
    return total / 2**20


@contextmanager
def no_native_stderr() -> Iterator[None]:
    """Silences what native code writes to stderr (the profiler's start and stop lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_mb(run: Callable[[], object], device: torch.device) -> float:
    """The most memory allocated at once during ``run``, above what was allocated before it, in
    MB: from CUDA's allocator statistics, or on CPU from the allocations torch's profiler records."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with no_native_stderr(), torch.profiler.profile(profile_memory=True) as profiler:
        run()
    events = profiler.profiler.kineto_results.events()
    allocations = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
    return max(accumulate(e.nbytes() for e in allocations), default=0) / 2**20


def forward_backward(stack: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        outputs, _ = stack(x)
        outputs.sum().backward()

    return run


def stacks_to_time(
    make_cell: CellFactory, topology: str, n_x: int, n_a: int, loop: bool
) -> dict[str, nn.Module]:
    """seqexp's stack through its kernels, step by step (``loop``), and on torch.nn where it can;
    for ``block``, two residual blocks with as many parameters as nn.LSTM(n_x, n_a)."""
    num_layers, bidirectional = TOPOLOGIES[topology]
    if topology == "block":
        lstm_parameters = 4 * n_a * (n_x + n_a + 2)
        impls = ("custom", "loop") if loop and kernels.has_kernel(make_cell(1, 4)) else ("custom",)
        return {impl: block_stack(make_cell, n_x, lstm_parameters, impl) for impl in impls}
    custom = RecurrentStack(make_cell, n_x, n_a, num_layers, bidirectional, impl="custom")
    stacks: dict[str, nn.Module] = {"custom": custom}
    if loop and kernels.has_kernel(custom.layers[0][0]):
        stacks["loop"] = RecurrentStack(make_cell, n_x, n_a, num_layers, bidirectional, impl="loop")
    if custom.layers[0][0].native is not None:
        stacks["native"] = RecurrentStack(make_cell, n_x, n_a, num_layers, bidirectional, impl="native")
    return stacks


def time_kernel(
    cell: str,
    make_cell: CellFactory,
    topology: str,
    size: tuple[int, int, int, int],
    repeats: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    loop: bool = False,
) -> list[KernelTiming]:
    B, T, n_x, n_a = size
    num_layers, bidirectional = TOPOLOGIES[topology]
    x = torch.randn(B, T, n_x, device=device, dtype=dtype)

    def native(make_reference: CellFactory) -> nn.Module:
        """torch.nn's own module (cuDNN, oneDNN) for the cell, with its weights in one block."""
        reference = make_reference(n_x, n_a)
        assert isinstance(reference, RecurrentCell) and reference.native is not None
        rnn = reference.native(
            n_x, n_a, num_layers, bidirectional=bidirectional, batch_first=True, **reference.native_options()
        )
        return rnn.to(device, dtype)

    reference = LSTMCell if topology == "block" else reference_for(make_cell)
    if topology == "block":
        num_layers = 1  # the blocks are compared with one nn.LSTM layer of as many parameters
    stacks = {"reference": native(reference)}
    if reference is not LSTMCell:
        stacks["nn.LSTM"] = native(LSTMCell)
    for name, stack in stacks_to_time(make_cell, topology, n_x, n_a, loop).items():
        stacks[name] = stack.to(device, dtype)
    runs = {name: forward_backward(stack, x) for name, stack in stacks.items()}
    ms = median_ms(runs, repeats, device)
    peaks = {name: peak_mb(run, device) for name, run in runs.items()}
    reference_mb = saved_for_backward_mb(stacks["reference"], x)
    return [
        KernelTiming(
            cell,
            topology,
            size,
            str(dtype).removeprefix("torch."),
            stack.kernel(x) if name == "custom" else name,
            ms[name],
            ms["reference"],
            ms.get("nn.LSTM", ms["reference"]),
            saved_for_backward_mb(stack, x),
            reference_mb,
            peaks[name],
            peaks["reference"],
        )
        for name, stack in stacks.items()
        if name not in ("reference", "nn.LSTM")
    ]


@dataclass
class KernelCheck:
    cell: str
    size: tuple[int, int, int, int]
    dtype: str
    kernel: str
    output_error: float
    """Largest absolute difference of the outputs from the step-by-step cells' in float32."""
    gradient_error: float
    """Largest difference of any parameter's or the input's gradient, relative to its largest entry."""


def check_kernel(
    cell: str,
    make_cell: CellFactory,
    size: tuple[int, int, int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> KernelCheck:
    """seqexp's kernel against the cells' own step-by-step loop (float32) on random inputs."""
    B, T, n_x, n_a = size
    torch.manual_seed(0)
    reference = RecurrentStack(make_cell, n_x, n_a, impl="loop").to(device)
    with torch.no_grad():  # parameters that start at 0 (peepholes) made to count
        for p in reference.parameters():
            if not p.any():
                nn.init.uniform_(p, -0.3, 0.3)
    fast = RecurrentStack(make_cell, n_x, n_a, impl="custom").to(device, dtype)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(B, T, n_x, device=device)
    weights = torch.randn(B, T, n_a, device=device)
    results = []
    for stack, inputs in ((reference, x), (fast, x.to(dtype))):
        inputs = inputs.detach().requires_grad_()
        outputs, _ = stack(inputs)
        grads = torch.autograd.grad((outputs.float() * weights).sum(), [inputs, *stack.parameters()])
        results.append((outputs.float(), [g.float() for g in grads]))
    (out_ref, grads_ref), (out_fast, grads_fast) = results
    gradient_error = max(
        ((g - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
        for g, r in zip(grads_fast, grads_ref, strict=True)
    )
    return KernelCheck(
        cell,
        size,
        str(dtype).removeprefix("torch."),
        fast.kernel(x.to(dtype)),
        (out_fast - out_ref).abs().max().item(),
        gradient_error,
    )


def kernel_table(timings: list[KernelTiming]) -> Table:
    table = Table(
        "cell",
        "topology",
        "B, T, n_x, n_a",
        "dtype",
        "kernel",
        "ms",
        "torch.nn ms",
        "ratio",
        "vs nn.LSTM",
        "peak MB",
        "torch.nn peak MB",
        "saved MB",
        "torch.nn saved MB",
        title="forward + backward of one batch (median), against torch.nn of the same topology",
    )
    for t in timings:
        table.add_row(
            t.cell,
            t.topology,
            ", ".join(map(str, t.size)),
            t.dtype,
            t.kernel,
            f"{t.ms:.2f}",
            f"{t.reference_ms:.2f}",
            f"{t.ratio:.2f}×",
            f"{t.lstm_ratio:.2f}×",
            f"{t.peak_mb:.1f}",
            f"{t.reference_peak_mb:.1f}",
            f"{t.saved_mb:.1f}",
            f"{t.reference_saved_mb:.1f}",
        )
    return table


def check_table(checks: list[KernelCheck]) -> Table:
    table = Table(
        "cell", "B, T, n_x, n_a", "dtype", "kernel", "output error", "gradient error (relative)",
        title="seqexp's kernels against the step-by-step cells (float32)",
    )  # fmt: skip
    for c in checks:
        table.add_row(
            c.cell,
            ", ".join(map(str, c.size)),
            c.dtype,
            c.kernel,
            f"{c.output_error:.1e}",
            f"{c.gradient_error:.1e}",
        )
    return table


def machine(device: torch.device) -> dict[str, object]:
    """What the numbers were measured on; also printed."""
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    console.print(", ".join(f"{key}: {value}" for key, value in info.items()))
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cells",
        nargs="+",
        default=None,
        help="cell config options (default: every shipped one)",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="a config dir of one's own (its cell/ options)",
    )
    parser.add_argument("--topologies", nargs="+", default=list(TOPOLOGIES), choices=list(TOPOLOGIES))
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=list(DTYPES))
    parser.add_argument("--loop", action="store_true", help="also time the step-by-step loop (impl=loop)")
    parser.add_argument("--check", action="store_true", help="check seqexp's kernels against the cells first")


def run_kernels(args: argparse.Namespace, sizes: list[tuple[int, int, int, int]]) -> dict[str, object]:
    """Check and time what ``args`` asks for; print the tables and return them as JSON-ready data."""
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32, for cuDNN too
    torch.backends.cudnn.allow_tf32 = False
    result: dict[str, object] = {}
    dtypes = [DTYPES[name] for name in args.dtypes]
    cells = {name: cell_factory(name, args.config_dir) for name in args.cells or shipped_cells()}
    if args.check:
        checks = [
            check_kernel(cell, make_cell, size, device, dtype)
            for dtype in dtypes
            for cell, make_cell in cells.items()
            if kernels.has_kernel(make_cell(1, 4))
            for size in sizes
        ]
        console.print(check_table(checks))
        result["checks"] = [asdict(c) for c in checks]
    timings = [
        timing
        for dtype in dtypes
        for cell in cells
        for topology in args.topologies
        for size in sizes
        for timing in time_kernel(cell, cells[cell], topology, size, args.repeats, device, dtype, args.loop)
    ]
    console.print(kernel_table(timings))
    result["kernels"] = [asdict(t) | {"ratio": t.ratio, "lstm_ratio": t.lstm_ratio} for t in timings]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seqexp.bench.kernels", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    parser.add_argument("--sizes", choices=["cpu", "gpu", "tiny"], default=None, help="default: the device's")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = {"cpu": CPU_SIZES, "gpu": GPU_SIZES, "tiny": TINY_SIZES}[
        args.sizes or ("gpu" if args.device.startswith("cuda") else "cpu")
    ]
    result = {"machine": machine(torch.device(args.device))} | run_kernels(args, sizes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        console.print(f"results written to {args.json}", soft_wrap=True)


if __name__ == "__main__":
    main()
