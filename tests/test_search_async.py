"""Trials that never wait for each other: with a launcher that starts one job at a time, the sweeper
starts a new trial as soon as any running one ends (finished, pruned or failed), ``n_jobs`` in
flight; ``batches`` keeps Hydra's way (every trial of a batch waits for the slowest)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import joblib
import optuna
import pytest
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from sizes import TINY

from seqexp.search.jobs import asynchronous
from seqexp.search.process_jobs import ProcessJobs
from seqexp.search.sweeper import StudySweeper
from seqexp.search.trials import PRUNED, storage

LR = "optimizer.lr"
LONG_S = 1.5
PLAN = {1.0: "long", 2.0: "pruned", 3.0: "worker dies", 4.0: "finished"}
"""What the fake job of each planned learning rate does: trial 0 runs long, the others end at once."""


class FakeJobs(Launcher):
    """A launcher that starts one job at a time, in threads: each job acts out its learning rate's
    part of ``PLAN`` and notes how many jobs ran at once."""

    def __init__(self, url: str, workers: int = 2) -> None:
        self.url = url
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers)
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0

    def setup(self, **kwargs: object) -> None:
        """Nothing to set up."""

    def submit(self, overrides: Sequence[str], job_idx: int) -> Future[JobReturn]:
        return self.pool.submit(self.act, list(overrides))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        """The batch's jobs, side by side; a job that raised returns its error, as Hydra's do."""
        futures = [self.submit(job, initial_job_idx) for job in job_overrides]
        return [
            JobReturn(status=JobStatus.FAILED, _return_value=f.exception()) if f.exception() else f.result()
            for f in futures
        ]

    def stop(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def act(self, overrides: list[str]) -> JobReturn:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            lr = float(next(o for o in overrides if o.startswith(f"{LR}=")).partition("=")[2])
            part = PLAN[lr]
            if part == "long":
                time.sleep(LONG_S)
            if part == "worker dies":
                raise RuntimeError("a worker died")
            if part == "pruned":
                trial_id = int(re.search(r"trial_id:(\d+)", overrides[-1])[1])
                storage(self.url).set_trial_system_attr(trial_id, PRUNED, 3)
            return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=lr)
        finally:
            with self.lock:
                self.running -= 1


def planned_sweep(outputs: Path, compose, batches: bool) -> tuple[StudySweeper, FakeJobs]:
    """A sweeper of four planned trials, two at a time, on fake jobs."""
    outputs.mkdir(parents=True)
    url = f"sqlite:///{outputs / 'optuna.db'}"
    planned = optuna.create_study(study_name="planned", storage=url)
    for lr in PLAN:
        planned.enqueue_trial({LR: lr})
    sweeper = StudySweeper(
        sampler=OmegaConf.create({"_target_": "optuna.samplers.RandomSampler", "seed": 0}),
        direction="minimize",
        storage=url,
        study_name="planned",
        n_trials=len(PLAN),
        n_jobs=2,
        params=None,
        heartbeat_s=1,
        batches=batches,
    )
    config: DictConfig = compose("logger=none")
    OmegaConf.set_struct(config, False)
    config.hydra = {"sweep": {"dir": str(outputs / "sweep")}}
    sweeper.config, sweeper.outputs = config, outputs
    sweeper.launcher = jobs = FakeJobs(url)
    return sweeper, jobs


def test_a_new_trial_starts_as_soon_as_a_short_one_ends_while_a_long_one_runs(outputs, compose) -> None:
    sweeper, jobs = planned_sweep(outputs, compose, batches=False)

    sweeper.sweep([f"{LR}=interval(1, 4)"])

    stored = optuna.load_study(study_name="planned", storage=sweeper.storage_url)
    states = [trial.state for trial in stored.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    long = stored.trials[0]
    for short in stored.trials[2:]:  # started, and ended, while the long trial ran
        assert long.datetime_start < short.datetime_start < short.datetime_complete < long.datetime_complete
    assert stored.trials[2].datetime_start >= stored.trials[1].datetime_complete  # in its place
    assert jobs.most_running == 2  # never more than n_jobs in flight


def test_in_batches_every_trial_waits_for_the_slowest_of_its_batch(outputs, compose) -> None:
    sweeper, jobs = planned_sweep(outputs, compose, batches=True)

    sweeper.sweep([f"{LR}=interval(1, 4)"])

    stored = optuna.load_study(study_name="planned", storage=sweeper.storage_url)
    assert [trial.state for trial in stored.trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    for later in stored.trials[2:]:
        assert later.datetime_start >= stored.trials[0].datetime_complete
    assert jobs.most_running == 2


def test_the_joblib_launcher_runs_one_job_at_a_time_and_hydras_basic_launcher_in_batches() -> None:
    launcher = JoblibLauncher(n_jobs=2)
    launcher.setup(hydra_context=object(), task_function=print, config=OmegaConf.create({}))
    jobs = asynchronous(launcher)
    assert isinstance(jobs, ProcessJobs) and jobs.workers == 2
    assert asynchronous(BasicLauncher()) is None


def test_joblib_parallel_runs_in_the_same_process_after_the_joblib_launchers_jobs() -> None:
    """The jobs' pool is the one ``joblib.Parallel`` shares (a plain loky pool broke its next call)."""
    launcher = JoblibLauncher(n_jobs=2)
    launcher.setup(hydra_context=object(), task_function=print, config=OmegaConf.create({}))
    jobs = ProcessJobs(launcher)
    assert jobs.executor.submit(abs, -3).result() == 3
    assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    jobs.stop()
    assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_parallel_sweep_starts_trials_while_a_long_one_trains(outputs, run_seqexp) -> None:
    outputs.mkdir(parents=True)
    url = f"sqlite:///{outputs / 'optuna.db'}"
    planned = optuna.create_study(study_name="planned", storage=url)
    for steps in (1500, 6, 6, 6):
        planned.enqueue_trial({"trainer.max_steps": steps})

    run_seqexp(
        "-m",
        *TINY,
        "data.batches_per_epoch=50",
        "hydra/sweeper=optuna",
        "hydra/sweeper/pruner=none",
        "hydra/launcher=parallel",
        "hydra.sweeper.study_name=planned",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "trainer.max_steps=choice(6, 1500)",
    )

    stored = optuna.load_study(study_name="planned", storage=url)
    assert [trial.state for trial in stored.trials] == [TrialState.COMPLETE] * 4
    long = stored.trials[0]
    for short in stored.trials[2:]:
        assert long.datetime_start < short.datetime_start < long.datetime_complete


@pytest.mark.slow
def test_a_trial_whose_worker_dies_fails_and_the_study_goes_on_in_fresh_workers(
    tmp_path, outputs, run_seqexp
) -> None:
    marker = tmp_path / "kill"
    marker.write_text("0")  # the first job to start kills its worker (SIGKILL) at its first validation
    run_seqexp(
        "-m",
        *TINY,
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random",
        "hydra/sweeper/pruner=none",
        "hydra/launcher=parallel",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        f"{LR}=tag(log, interval(1e-3, 3e-2))",
        f"+callbacks.kill_once={{_target_:test_search_sweeper.KillOnce,marker:'{marker}'}}",
    )

    [name] = optuna.get_all_study_names(f"sqlite:///{outputs / 'optuna.db'}")
    stored = optuna.load_study(study_name=name, storage=f"sqlite:///{outputs / 'optuna.db'}")
    states = [trial.state for trial in stored.trials]
    assert TrialState.FAIL in states[:2]  # the killed one (and the other, if its worker went with it)
    assert states[2:] == [TrialState.COMPLETE, TrialState.COMPLETE]
