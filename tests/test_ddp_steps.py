"""Data-parallel training validates and checkpoints on the same global steps as one device."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sizes import TINY
from step_probe import events

STOPS_MID_EPOCH = [*TINY, "trainer.max_steps=5", "data.batches_per_epoch=2"]
"""A fixed set of 64 examples in batches of 16 (4 batches a pass); an epoch of 2 steps; the run
stops in the middle of its third epoch."""


def probe(path: Path) -> list[str]:
    return ["+callbacks.probe._target_=step_probe.StepProbe", f"+callbacks.probe.path={path}"]


def steps(path: Path, rank: int, event: str) -> list[int]:
    return sorted({record["step"] for record in events(path, rank, event)})


def test_two_processes_validate_and_checkpoint_on_the_steps_of_one(
    outputs, tmp_path, run_seqexp, records
) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_seqexp(*STOPS_MID_EPOCH, *probe(single))
    env = {
        **os.environ,
        "SEQEXP_OUTPUTS": str(outputs),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = ["seqexp", *STOPS_MID_EPOCH, *probe(ddp), "trainer=ddp", "trainer.accelerator=cpu"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    assert steps(single, 0, "validation") == [2, 4, 5], "one device: every 2 steps, and at the end"
    assert steps(single, 0, "checkpoint") == [2, 4, 5]
    for rank in (0, 1):
        assert steps(ddp, rank, "validation") == steps(single, 0, "validation")
        assert steps(ddp, rank, "checkpoint") == steps(single, 0, "checkpoint")
    single_run, ddp_run = sorted(records.search_runs(["1"]), key=lambda run: run.info.start_time)
    assert ddp_run.data.params["trainer.strategy"] == "ddp" and ddp_run.info.status == "FINISHED"
    recorded = [
        sorted(m.step for m in records.get_metric_history(run.info.run_id, "val/loss"))
        for run in (single_run, ddp_run)
    ]
    assert recorded[0] == recorded[1] and len(recorded[0]) == 3, "the same validations recorded"

    batches = [[record["examples"] for record in events(ddp, rank, "batch")] for rank in (0, 1)]
    assert [len(b) for b in batches] == [5, 5], "each rank draws a batch for each of the 5 steps"
    first_pass = [example for step in (0, 1) for rank in (0, 1) for example in batches[rank][step]]
    assert len(set(first_pass)) == 64, "the ranks' batches of steps 0 and 1 are one pass over the data"
    alone = [record["examples"] for record in events(single, 0, "batch")]
    assert batches[0][0] == alone[0] and batches[1][0] == alone[1], "the walk of one device, W batches a step"
