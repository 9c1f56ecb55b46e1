"""Data-parallel training validates and checkpoints on the same global steps as one device, and
ends with the weights of one device trained on every rank's batches."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch
from sizes import TINY
from step_probe import events, weights

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


PLAIN_SGD = [
    *TINY,
    "trainer.max_steps=5",
    "cell=rnn",
    "optimizer=sgd",
    "optimizer.lr=0.5",
    "optimizer.momentum=0.0",
    "trainer.gradient_clip_val=null",
    "callbacks.gradient_flow=null",
]
"""Five steps of plain SGD on a mean loss, unclipped: a step on two ranks' batches of 16, their
gradients averaged, is a step on the batch of 32 that is both together."""


def test_two_processes_end_with_the_weights_of_one_trained_on_both_ranks_batches(
    outputs, tmp_path, run_seqexp
) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    watch = ["+callbacks.weights._target_=step_probe.WeightsProbe"]
    # Step k's batch of 32 on one process is rank 0's then rank 1's batch of 16 of step k on two
    # (seqexp.models.data.StepBatches: both walk the same shuffled passes over the 64 examples).
    run_seqexp(*PLAIN_SGD, "data.batch_size=32", *probe(single), *watch, f"+callbacks.weights.path={single}")
    env = {
        **os.environ,
        "SEQEXP_OUTPUTS": str(outputs),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        "seqexp", *PLAIN_SGD, *probe(ddp), *watch, f"+callbacks.weights.path={ddp}",
        "trainer=ddp", "trainer.accelerator=cpu",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    together = [record["examples"] for record in events(single, 0, "batch")]
    apart = [[record["examples"] for record in events(ddp, rank, "batch")] for rank in (0, 1)]
    assert together == [apart[0][step] + apart[1][step] for step in range(5)], "the same examples a step"

    start, ends = weights(single, 0, "start"), [weights(ddp, rank, "end") for rank in (0, 1)]
    for rank in (0, 1):
        torch.testing.assert_close(weights(ddp, rank, "start"), start, rtol=0, atol=0)
    assert ends[0].keys() == ends[1].keys() == start.keys()
    for name in start:
        assert torch.equal(ends[0][name], ends[1][name]), f"{name}: the ranks' weights differ"
    moved = max((ends[0][name] - start[name]).abs().max().item() for name in start)
    assert moved > 1e-2, "training moved the weights"
    torch.testing.assert_close(ends[0], weights(single, 0, "end"), rtol=1e-5, atol=1e-6)
