"""Parallel jobs never lose a run: experiments exist before the jobs fan out, and a write held up
by another job's lock on the sqlite store is retried with backoff."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import open_dict
from sizes import TINY

from seqexp.config.location import CONF
from seqexp.tracking import runs as tracking
from seqexp.tracking.runs import PatientClient
from seqexp.tracking.sweep import job_experiments


class FlakyStore:
    """A client whose first ``failures`` calls find the store locked, or fail for another reason."""

    def __init__(self, failures: int, message: str = "(sqlite3.OperationalError) database is locked") -> None:
        self.failures = failures
        self.message = message
        self.calls = 0

    def log_batch(self, run_id: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            try:
                raise RuntimeError(self.message)
            except RuntimeError as cause:
                raise MlflowException("the store refused") from cause
        return run_id


def test_a_locked_store_is_waited_out_with_backoff(monkeypatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", pauses.append)
    store = FlakyStore(failures=4)

    assert PatientClient(store).log_batch("run") == "run"

    assert store.calls == 5
    assert len(pauses) == 4 and pauses[-1] > pauses[0], "each wait longer than the one before"


def test_other_errors_and_a_lock_held_past_patience_are_raised(monkeypatch) -> None:
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    other = FlakyStore(failures=1, message="no such run")
    with pytest.raises(MlflowException):
        PatientClient(other).log_batch("run")
    assert other.calls == 1, "only a lock is retried"

    monkeypatch.setattr(tracking, "LOCK_PATIENCE_S", 1.0)
    forever = FlakyStore(failures=10**6)
    with pytest.raises(MlflowException):
        PatientClient(forever).log_batch("run")
    assert 1 < forever.calls < 100


def test_a_sweep_knows_every_jobs_experiment_before_it_fans_out(outputs) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.overrides.task = ["task=adding,copy,lm", "seed=0,1"]
        assert job_experiments(cfg) == {"adding", "copy", "lm"}
        swept = compose("config", overrides=["+experiment=vanishing"], return_hydra_config=True)
        assert job_experiments(swept) == {swept.logger.experiment}
    GlobalHydra.instance().clear()


def all_runs(mlflow: MlflowClient) -> list[Any]:
    return mlflow.search_runs([e.experiment_id for e in mlflow.search_experiments()])


@pytest.mark.slow
def test_eight_parallel_jobs_across_two_tasks_into_one_fresh_sqlite_store(
    outputs, run_seqexp, records
) -> None:
    assert not (outputs / "mlflow.db").exists()
    steps = 6
    run_seqexp(
        "-m",
        *TINY,
        f"trainer.max_steps={steps}",
        "task.seq_len=10",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=8",
        "task=adding,temporal_order",
        "seed=0,1,2,3",
    )

    runs = [r for r in all_runs(records) if "seqexp.headline" in r.data.tags]
    assert len(runs) == 8
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted((r.data.params["task"], r.data.params["seed"]) for r in runs) == sorted(
        (task, str(seed)) for task in ("adding", "temporal_order") for seed in range(4)
    )
    for run in runs:
        logged = [m.step for m in records.get_metric_history(run.info.run_id, "train/loss")]
        assert logged == list(range(steps)), "every step's loss, once"
        headline = run.data.tags["seqexp.headline"]
        assert headline in run.data.metrics and f"test/{headline.removeprefix('val/')}" in run.data.metrics
