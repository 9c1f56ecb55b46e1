"""Will a run fit in memory? An estimate from the config and the built task (its spec, lengths and
split sizes), before any data or model is allocated, so that a run too large for the machine is
refused instead of failing mid-way."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from seqexp.checks import ConfigError
from seqexp.tasks import Task

FLOAT = 4
TOKEN = 8
STEP_FLOATS_PER_UNIT = 16
"""Per time step, layer, direction and hidden unit: the gates, states and their gradients (an
LSTM keeps about eight values a unit a step and needs as many for its backward pass)."""
PARAMETER_COPIES = 4
"""A parameter, its gradient and two optimizer states (Adam's)."""
GIB = 2**30


def available_bytes() -> int:
    """The memory this machine can give a new process now (``MemAvailable``, else free pages)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def estimate(cfg: DictConfig, task: Task) -> dict[str, int]:
    """Bytes the run needs, by what needs them: an upper estimate of the data and model a run
    holds at once, not a measurement. The task says its length (:attr:`Task.steps`) and its
    splits' sizes; the config says the batch and the model."""
    spec, seq_len, batch = task.spec, task.steps, cfg.data.batch_size
    examples = (task.train_size or batch) + task.val_size + task.test_size
    per_step_input = TOKEN if spec.tokens else spec.input_size * FLOAT
    output_len = spec.output_length or seq_len
    example_bytes = seq_len * per_step_input + output_len * spec.output_size * FLOAT
    directions = 2 if cfg.topology.bidirectional else 1
    hidden, layers = cfg.model.hidden_size, cfg.topology.num_layers
    states = batch * (seq_len + output_len) * hidden * layers * directions * STEP_FLOATS_PER_UNIT * FLOAT
    outputs = batch * output_len * spec.output_size * FLOAT * 3  # logits, probabilities, gradient
    width = cfg.model.embedding_size if spec.tokens else spec.input_size
    weights = layers * directions * 4 * hidden * (width + hidden * directions + 2)
    weights += (spec.input_size * width if spec.tokens else 0) + hidden * directions * spec.output_size
    return {
        "the data": examples * example_bytes,
        "one batch's activations": states + outputs,
        "the model and its optimizer state": weights * FLOAT * PARAMETER_COPIES,
    }


def check_fits(cfg: DictConfig, task: Task, available: int | None = None) -> None:
    """Refuse a config whose estimate for ``task`` exceeds the memory available, with the estimate."""
    needs = estimate(cfg, task)
    available = available_bytes() if available is None else available
    total = sum(needs.values())
    if total > available:
        parts = ", ".join(f"{what} {size / GIB:.3g} GiB" for what, size in needs.items())
        raise ConfigError(
            f"this run needs about {total / GIB:.3g} GiB ({parts}) but {available / GIB:.3g} GiB of "
            "memory is available: reduce task.seq_len, task.train_size, task.val_size, data.batch_size "
            "or model.hidden_size"
        )
