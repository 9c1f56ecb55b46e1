"""A run leaves the process that called it as it found it."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch
from sizes import TINY

from seqexp.commands.train import train


def process_state() -> dict[str, object]:
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "fill": torch.utils.deterministic.fill_uninitialized_memory,
        "environment": dict(os.environ),
        "warning filters": list(warnings.filters),
        "random": random.getstate(),
        "numpy": np.random.get_state()[1].tolist(),
        "torch": torch.random.get_rng_state().tolist(),
    }


def test_a_run_restores_threads_determinism_generators_environment_and_warning_filters(
    outputs, compose
) -> None:
    """The run sets one thread, deterministic algorithms, seeds every generator, and Lightning sets
    environment variables: none of it outlives the run."""
    random.seed(123)
    torch.manual_seed(123)
    before = process_state()

    train(compose(*TINY, "threads=1", "logger=none"), outputs / "run")

    after = process_state()
    assert {key: after[key] == value for key, value in before.items()} == dict.fromkeys(before, True)
