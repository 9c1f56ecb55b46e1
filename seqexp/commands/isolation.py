"""A run leaves its process as it found it: what training changes for its own sake (torch's thread
count and determinism settings, the random number generators, the environment variables Lightning
sets, the warning filters) is restored when the run ends."""

from __future__ import annotations

import functools
import os
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

QUIET = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own deprecation notice
    r"Your `IterableDataset` has `__len__` defined",  # fresh batches are drawn in the main process
)
"""Warnings of no use to a seqexp user, silenced while a run trains (and only then)."""


@contextmanager
def process_state_kept() -> Iterator[None]:
    """Run the block, then restore what it changed of the process's global state."""
    import numpy as np
    import torch
    import torch.utils.deterministic

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    environment = dict(os.environ)
    generators = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    with warnings.catch_warnings():
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = fill
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
            os.environ.clear()
            os.environ.update(environment)
            random.setstate(generators[0])
            np.random.set_state(generators[1])
            torch.random.set_rng_state(generators[2])


def keeps_process_state(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, run inside :func:`process_state_kept`."""

    @functools.wraps(function)
    def kept(*args: P.args, **kwargs: P.kwargs) -> R:
        with process_state_kept():
            return function(*args, **kwargs)

    return kept
