"""Sweeps you can trust: a parent run per sweep, failures recorded, reports, exact reruns and resumes."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.commands.report import main as report_main
from seqexp.commands.rerun import recorded_config, rerun, resume
from seqexp.commands.train import train
from seqexp.tracking.records import untrusted_targets
from seqexp.tracking.runs import PARENT_RUN_FILE


def all_runs(records: MlflowClient) -> list[Run]:
    return records.search_runs([e.experiment_id for e in records.search_experiments()])


def sweep_dir(outputs: Path) -> Path:
    [directory] = (outputs / "multirun").iterdir()
    return directory


def test_a_sweep_is_a_parent_run_with_a_child_per_job_and_a_report(outputs, run_seqexp, records) -> None:
    run_seqexp("-m", *TINY, "cell=rnn,gru,lstm")

    runs = all_runs(records)
    [parent] = [r for r in runs if "seqexp.headline" not in r.data.tags]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED"
    assert (sweep_dir(outputs) / PARENT_RUN_FILE).read_text() == parent.info.run_id
    assert len(children) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.tags["seqexp.sweep_id"] for r in children} == {parent.info.run_id}
    assert sorted(r.data.tags["seqexp.job"] for r in children) == ["0", "1", "2"]
    kernels = {r.data.params["cell"]: r.data.tags["seqexp.kernel"] for r in children}
    assert kernels == {"rnn": "native", "gru": "manual", "lstm": "native"}  # auto, on CPU

    artifacts = [a.path for a in records.list_artifacts(parent.info.run_id, "report")]
    assert {"report/summary.md", "report/summary.csv", "report/learning_curves.png"} <= set(artifacts)
    with open(sweep_dir(outputs) / "report" / "summary.csv") as f:
        rows = {row["cell"]: row for row in csv.DictReader(f)}
    for child in children:
        row = rows[child.data.params["cell"]]
        assert float(row["val/mse mean"]) == pytest.approx(child.data.metrics["val/mse"])
        assert row["val/mse std"] == ""  # one run: no spread, not "± 0"
        assert rows[child.data.params["cell"]]["runs"] == "1"


@pytest.mark.parametrize(
    ("sweep", "reason"),
    [
        (["optimizer.lr=0.003,0.002"], "RuntimeError: a failing step"),
        (
            [
                "cell=rnn",
                "cell.nonlinearity=relu",
                "optimizer=sgd",
                "optimizer.lr=0.01,1e6",
                "trainer.gradient_clip_val=null",
            ],
            "Diverged: diverged at training step",
        ),
    ],
    ids=["raises", "diverges"],
)
def test_a_failing_job_is_recorded_as_failed_and_the_sweep_goes_on(
    sweep, reason, outputs, monkeypatch, run_seqexp, records
) -> None:
    adam_step = torch.optim.Adam.step

    def failing_step(self: torch.optim.Adam, closure: Any = None) -> Any:
        """Training steps (Lightning passes a closure) fail at one learning rate: a job that raises
        once it runs, with a config that passes every check."""
        if closure is not None and self.param_groups[0]["lr"] == 0.002:
            raise RuntimeError("a failing step")
        return adam_step(self, closure)

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    run_seqexp("-m", *TINY, *sweep)

    children = [r for r in all_runs(records) if "seqexp.headline" in r.data.tags]
    by_status = {r.info.status: r for r in children}
    assert sorted(by_status) == ["FAILED", "FINISHED"]
    assert by_status["FAILED"].data.tags["seqexp.failure"].startswith(reason)
    summary = (sweep_dir(outputs) / "report" / "summary.md").read_text()
    assert "Runs that did not finish" in summary and reason in summary
    failed = by_status["FAILED"]
    job_log = sweep_dir(outputs) / failed.data.tags["seqexp.job"] / "seqexp.log"
    assert f"run {failed.info.run_id} failed: {reason}" in job_log.read_text()


def test_a_sweep_whose_every_job_fails_is_reported_and_finished(
    outputs, monkeypatch, run_seqexp, records
) -> None:
    def failing_step(self: torch.optim.Adam, closure: Any = None) -> Any:
        raise RuntimeError("a failing step")

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    run_seqexp("-m", *TINY, "optimizer.lr=0.003,0.002")

    runs = all_runs(records)
    [parent] = [r for r in runs if "seqexp.headline" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.status for r in runs if r is not parent) == ["FAILED", "FAILED"]
    summary = (sweep_dir(outputs) / "report" / "summary.md").read_text()
    assert "val/mse: no difference at n = 0" in summary and "RuntimeError: a failing step" in summary


def test_report_groups_by_what_was_swept_and_averages_over_seeds(
    outputs, capsys, run_seqexp, records
) -> None:
    run_seqexp("-m", *TINY, "cell=rnn,lstm", "seed=0,1")
    capsys.readouterr()

    report_main(["--experiment", "adding", "--outputs", str(outputs), "--out", str(outputs / "r")])

    with open(outputs / "r" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["cell"], row["runs"]) for row in rows] == [("lstm", "2"), ("rnn", "2")]
    finals = [r.data.metrics["val/mse"] for r in all_runs(records) if r.data.params.get("cell") == "rnn"]
    assert float(rows[1]["val/mse mean"]) == pytest.approx(sum(finals) / 2)
    assert float(rows[1]["val/mse std"]) == pytest.approx(abs(finals[0] - finals[1]) / 2**0.5)  # ddof = 1
    assert "rnn" in capsys.readouterr().out


def test_a_rerun_reproduces_the_recorded_metrics_exactly(outputs, run_seqexp, records) -> None:
    run_seqexp(*TINY, "cell=peephole", "topology=bi")
    [original] = all_runs(records)

    result, matches = rerun(records, original.info.run_id, outputs)

    assert matches
    for name in ("train/loss", "val/loss", "val/mse"):
        assert result.metrics[name] == original.data.metrics[name]
    copy = records.get_run(result.run_id)
    assert copy.data.tags["seqexp.rerun_of"] == original.info.run_id
    assert copy.data.tags["seqexp.rerun_matches"] == "True"
    assert copy.data.tags["seqexp.kernel"] == original.data.tags["seqexp.kernel"] == "onednn"


def test_a_rerun_on_another_kernel_says_so(outputs, capsys, run_seqexp, records) -> None:
    """A run recorded by an older seqexp may have run on a kernel this one no longer has."""
    run_seqexp(*TINY, "cell=peephole")
    [original] = all_runs(records)
    records.set_tag(original.info.run_id, "seqexp.kernel", "cpu")

    rerun(records, original.info.run_id, outputs)

    said = " ".join(capsys.readouterr().out.split())
    assert "the recorded run ran on cpu, this rerun on onednn: the same function" in said


def test_a_rerun_refuses_code_that_seqexp_does_not_ship(outputs, run_seqexp, records) -> None:
    run_seqexp(*TINY)
    [original] = all_runs(records)
    cfg = recorded_config(records, original.info.run_id)
    assert untrusted_targets(cfg) == []
    cfg.callbacks.nan_guard._target_ = "torch.utils.collect_env.run"
    assert untrusted_targets(cfg) == ["callbacks.nan_guard._target_ = 'torch.utils.collect_env.run'"]
    assert untrusted_targets({"optimizer": {"_target_": "os.system"}}) == ["optimizer._target_ = 'os.system'"]

    tampered = outputs / "config.yaml"
    tampered.write_text(
        Path(records.download_artifacts(original.info.run_id, "config.yaml", str(outputs)))
        .read_text()
        .replace("torch.optim.Adam", "builtins.exec")
    )
    records.log_artifact(original.info.run_id, str(tampered))
    with pytest.raises(ConfigError, match=r"optimizer._target_ = 'builtins.exec'.*--trust"):
        rerun(records, original.info.run_id, outputs)


STEPS = 200


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "Ctrl-C"])
def test_a_killed_run_resumes_into_the_same_run_and_ends_as_an_uninterrupted_one(
    sent, outputs, tmp_path, compose, records
) -> None:
    overrides = [
        *TINY,
        "topology=deep",
        "topology.dropout=0.3",
        "task.seq_len=20",
        f"trainer.max_steps={STEPS}",
        "data.batches_per_epoch=10",
    ]
    # A child inherits an ignored SIGINT (as in a background job, where CI may run this): handle it
    # here meanwhile, so that the child starts with the default and Ctrl-C reaches it.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        process = subprocess.Popen(["seqexp", *overrides], **quiet)
    finally:
        signal.signal(signal.SIGINT, ignored)
    while not list(outputs.glob("runs/*/checkpoints/last.ckpt")) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(sent)
    process.wait(timeout=60)
    [killed] = all_runs(records)
    assert killed.info.status != "FINISHED"
    steps_before = [m.step for m in records.get_metric_history(killed.info.run_id, "train/loss")]
    assert 0 < len(steps_before) < STEPS

    resumed = resume(records, killed.info.run_id, outputs)
    whole = train(compose(*overrides, "logger=none"), tmp_path / "whole")

    assert resumed.metrics == whole.metrics
    assert records.get_run(killed.info.run_id).info.status == "FINISHED"
    steps = [m.step for m in records.get_metric_history(killed.info.run_id, "train/loss")]
    assert steps == list(range(STEPS)), "every step logged once, none lost"
    checkpoint = next(outputs.glob("runs/*/checkpoints/last.ckpt"))
    assert torch.load(checkpoint, weights_only=True)["global_step"] == STEPS
