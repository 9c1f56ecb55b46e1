"""A run records where its wall time went (seqexp.tracking.phases), and seqexp-report says it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from mlflow import MlflowClient
from omegaconf import DictConfig
from sizes import TINY

from seqexp.commands.train import train
from seqexp.tracking.phases import PHASES
from seqexp.tracking.report import runs_frame, time_spent


def test_a_run_records_its_phases_and_they_add_up_to_its_wall_time(
    outputs: Path, compose: Callable[[str], DictConfig], records: MlflowClient
) -> None:
    started = time.perf_counter()
    result = train(compose(*TINY), outputs / "run")  # six steps, a validation every three
    elapsed = time.perf_counter() - started
    run = records.get_run(result.run_id)
    seconds = {phase: run.data.metrics[f"time/{phase}_s"] for phase in PHASES}

    assert all(s > 0 for s in seconds.values()), seconds
    # All of train() but what it does after the record (printing the final table): within a second.
    assert elapsed - 1.0 < sum(seconds.values()) < elapsed

    spent = time_spent(runs_frame([run], []))
    assert spent.startswith("Where the time went, over the 1 runs that recorded it")
    for phase in PHASES:
        assert f" {phase} " in spent
