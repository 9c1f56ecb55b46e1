"""``seqexp-bench``: how fast seqexp's recurrences and training loop are, against torch's own.

Every number is a ratio to a baseline measured in the same run on the same inputs (these
machines are noisy): a cell's forward+backward against the torch.nn kernel of the same
topology (:mod:`seqexp.bench.kernels`), seqexp's training loop against a plain PyTorch loop
over the same model and data, its start-up against importing Lightning. Medians over repeats.
Results also as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from rich.table import Table

from seqexp.bench.kernels import (
    CPU_SIZES,
    GPU_SIZES,
    TINY_SIZES,
    add_arguments,
    console,
    machine,
    run_kernels,
)
from seqexp.commands.train import train
from seqexp.config.build import build_data, build_model, build_task
from seqexp.config.checking import options
from seqexp.config.compose import composed


@dataclass
class LoopRun:
    """One measurement of seqexp's loop, between two of the plain loop's."""

    seqexp_steps_per_s: float
    """Training steps per second between validations: what the loop itself costs."""
    seqexp_overall_steps_per_s: float
    """The same over the whole run, validations, checkpoints and their MLflow records included."""
    plain_before: float
    plain_after: float

    @property
    def bracketed_ratio(self) -> float:
        """Against the mean of the plain loop's steps per second just before and just after: a
        drift of the machine's speed during the three measurements cancels out, if it is steady."""
        return self.seqexp_steps_per_s / ((self.plain_before + self.plain_after) / 2)


@dataclass
class LoopTiming:
    label: str
    runs: list[LoopRun]
    plain_steps_per_s: float
    """The median over all the plain loop's measurements."""

    @property
    def seqexp_steps_per_s(self) -> float:
        return statistics.median(run.seqexp_steps_per_s for run in self.runs)

    @property
    def seqexp_overall_steps_per_s(self) -> float:
        return statistics.median(run.seqexp_overall_steps_per_s for run in self.runs)

    @property
    def ratio(self) -> float:
        return self.seqexp_steps_per_s / self.plain_steps_per_s

    @property
    def overall_ratio(self) -> float:
        return self.seqexp_overall_steps_per_s / self.plain_steps_per_s

    @property
    def bracketed_ratio(self) -> float:
        """The median of the runs' bracketed ratios: steadier than ``ratio`` while the
        machine's speed drifts."""
        return statistics.median(run.bracketed_ratio for run in self.runs)

    def as_json(self) -> dict[str, object]:
        """Every measurement, and the medians and ratios taken from them."""
        derived = [
            "seqexp_steps_per_s",
            "seqexp_overall_steps_per_s",
            "ratio",
            "overall_ratio",
            "bracketed_ratio",
        ]
        return asdict(self) | {key: getattr(self, key) for key in derived}


class StepTimer(pl.Callback):
    """Times the training steps after the first ``skip``: each from the end of the one before
    (so its batch's making included), leaving out those with a validation (and the checkpoint
    after it) in between; and all of them together. Writes both to ``path``."""

    def __init__(self, skip: int, path: str) -> None:
        self.skip = skip
        self.path = path
        self.start = self.last_end = 0.0
        self.steps, self.seconds = 0, 0.0
        self.validated = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        now = time.perf_counter()
        if trainer.global_step == self.skip:
            self.start = now
        elif trainer.global_step > self.skip and not self.validated:
            self.steps += 1
            self.seconds += now - self.last_end
        self.last_end, self.validated = now, False

    def on_validation_start(self, *args: object) -> None:
        self.validated = True

    def on_train_end(self, trainer: pl.Trainer, *args: object) -> None:
        overall_seconds = time.perf_counter() - self.start
        timing = {
            "overall": {"steps": trainer.global_step - self.skip, "seconds": overall_seconds},
            "between_validations": {"steps": self.steps, "seconds": self.seconds},
        }
        Path(self.path).write_text(json.dumps(timing))


def seqexp_steps_per_s(cfg: DictConfig, skip: int, run_dir: Path) -> tuple[float, float]:
    """seqexp's whole loop: Lightning, MLflow logging, checkpoints, the diagnostics in the config.
    Steps per second between validations, and overall."""
    timing = run_dir / "timing.json"
    with open_dict(cfg):
        timer = {"_target_": "seqexp.bench.loop.StepTimer", "skip": skip, "path": str(timing)}
        cfg.callbacks.bench_timer = timer
    train(cfg, run_dir)
    measured = json.loads(timing.read_text())
    rates = {key: value["steps"] / value["seconds"] for key, value in measured.items()}
    return rates["between_validations"], rates["overall"]


def plain_steps_per_s(cfg: DictConfig, skip: int) -> float:
    """A hand-written PyTorch loop over the same model, data, optimizer and clipping (the model's own:
    :class:`~seqexp.models.sequence.GradientClipping`, applied as Lightning applies it)."""
    torch.manual_seed(cfg.seed)
    task = build_task(cfg)
    model = build_model(cfg, task)
    data = build_data(cfg, task)
    data.setup("fit")
    optimizer = hydra.utils.instantiate(options(cfg.optimizer), params=model.parameters())
    x, y = data.train.tensors
    start = time.perf_counter()
    for step in range(cfg.trainer.max_steps):
        if step == skip:
            start = time.perf_counter()
        index = torch.randint(len(x), (cfg.data.batch_size,))
        optimizer.zero_grad()
        task.loss(model(x[index]), y[index]).backward()
        model.clipping.apply(model.parameters())
        optimizer.step()
    return (cfg.trainer.max_steps - skip) / (time.perf_counter() - start)


def time_loops(overrides: list[str], steps: int, repeats: int) -> list[LoopTiming]:
    """seqexp's loop against the plain one, with seqexp's default callbacks and without them,
    each measured ``repeats`` times; in turns, the plain loop before and after every one of
    seqexp's measurements (the machine's speed drifts)."""
    cfg = composed([*overrides, f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false"])
    skip = steps // 5
    bare = cfg.copy()
    bare.callbacks = {}
    configs = {"seqexp, default callbacks": cfg, "seqexp, no diagnostics": bare}
    runs: dict[str, list[LoopRun]] = {label: [] for label in configs}
    with tempfile.TemporaryDirectory() as tmp:
        cfg.paths.outputs = bare.paths.outputs = tmp
        plain = [plain_steps_per_s(cfg.copy(), skip)]
        for repeat in range(repeats):
            for number, (label, config) in enumerate(configs.items()):
                rates = seqexp_steps_per_s(config.copy(), skip, Path(tmp, f"{number}-{repeat}"))
                plain.append(plain_steps_per_s(cfg.copy(), skip))
                runs[label].append(LoopRun(*rates, *plain[-2:]))
    return [LoopTiming(label, measured, statistics.median(plain)) for label, measured in runs.items()]


def seconds_until(command: list[str], marker: Path | None = None) -> float:
    """Wall time from starting ``command`` until it exits, or until it writes ``marker``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not (marker and marker.exists()):
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    process.kill()
    process.wait()
    return elapsed


class FirstStep(pl.Callback):
    """Writes ``path`` when the first training step starts."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, *args: object) -> None:
        Path(self.path).touch()


LIBRARIES = ("torch", "pytorch_lightning", "hydra", "mlflow", "matplotlib.pyplot", "seqexp.commands.train")


def time_startup(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, float]:
    """Seconds from a fresh process to seqexp's first training step, and to importing each of the
    libraries it stands on, for comparison."""
    times = {
        f"import {module}": seconds_until([sys.executable, "-c", f"import {module}"]) for module in libraries
    }
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "first_step"
        command = [
            "seqexp",
            f"paths.outputs={tmp}",
            "trainer.enable_progress_bar=false",
            f"+callbacks.first_step={{_target_: seqexp.bench.loop.FirstStep, path: '{marker}'}}",
        ]
        times["seqexp to its first training step"] = seconds_until(command, marker)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqexp-bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument(
        "--loop-steps",
        type=int,
        default=500,
        help="training steps for the loop comparison (a multiple of 250)",
    )
    parser.add_argument("--loop-repeats", type=int, default=3, help="measurements of each loop, in turns")
    parser.add_argument(
        "--loop-config",
        nargs="*",
        default=[],
        metavar="OVERRIDE",
        help="Hydra overrides of the default experiment for the loop comparison, e.g. model.hidden_size=256",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["kernels", "loops", "startup"])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one repeat: checks that it runs")
    parser.add_argument(
        "--json", type=Path, default=Path("outputs/bench") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.repeats = 1
    sizes = TINY_SIZES if args.tiny else GPU_SIZES if args.device.startswith("cuda") else CPU_SIZES
    tiny_loop = ["task.seq_len=5", "model.hidden_size=4", "task.train_size=64", "task.val_size=16"]
    loop_overrides = [*tiny_loop, "data.batches_per_epoch=5"] if args.tiny else args.loop_config
    loop_steps = 10 if args.tiny else args.loop_steps

    result: dict[str, object] = {"machine": machine(torch.device(args.device))}
    if "kernels" not in args.skip:
        result |= run_kernels(args, sizes)
    if "loops" not in args.skip:
        loops = time_loops(loop_overrides, loop_steps, 1 if args.tiny else args.loop_repeats)
        table = Table(
            "loop",
            "seqexp steps/s",
            "plain steps/s",
            "ratio",
            "bracketed ratio",
            "seqexp overall",
            "ratio overall",
            title=f"training loop, default experiment {' '.join(loop_overrides)}"
            " (overall: validations and checkpoints included)",
        )
        for loop in loops:
            table.add_row(
                loop.label,
                f"{loop.seqexp_steps_per_s:.1f}",
                f"{loop.plain_steps_per_s:.1f}",
                f"{loop.ratio:.2f}×",
                f"{loop.bracketed_ratio:.2f}×",
                f"{loop.seqexp_overall_steps_per_s:.1f}",
                f"{loop.overall_ratio:.2f}×",
            )
        console.print(table)
        result["loop_config"] = loop_overrides
        result["loops"] = [loop.as_json() for loop in loops]
    if "startup" not in args.skip:
        startup = time_startup(("pytorch_lightning",) if args.tiny else LIBRARIES)
        table = Table("from a fresh process to", "seconds", title="start-up")
        for what, seconds in startup.items():
            table.add_row(what, f"{seconds:.1f}")
        console.print(table)
        result["startup"] = startup
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    console.print(f"results written to {args.json}", soft_wrap=True)
