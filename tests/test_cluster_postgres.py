"""PostgreSQL behind ``mlflow server`` and as the studies' storage: two Optuna sweeps at once, 8 jobs
in parallel, the tracking server stopped (SIGTERM, as a service restart) and started again mid-sweep.
The jobs wait out the restart (``SEQEXP_TRACKING_PATIENCE_S``); then every run is there once,
finished, every metric step once, and every trial of both studies is accounted for, complete, each
with its run under its study's parent."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from cluster import LOOPBACK, end, free_port, loopback_only, mlflow_server
from mlflow import MlflowClient
from optuna.trial import TrialState
from sizes import TINY

from seqexp.search.trials import PARENT, RUN
from seqexp.tracking import postgres
from seqexp.tracking.connection import PATIENCE_ENV
from seqexp.tracking.runs import TAG_PARENT

pytestmark = pytest.mark.cluster
STEPS = 60
JOB = [*TINY, f"trainer.max_steps={STEPS}", "data.batches_per_epoch=10"]
TRIALS = 4


def sweep(seed: int, storage: str, env: dict[str, str], home: Path) -> subprocess.Popen:
    """An Optuna sweep of 4 trials, all 4 in flight, its study in ``storage``."""
    command = ["seqexp", "-m", "hydra/sweeper=optuna", "hydra/launcher=parallel", "hydra.launcher.n_jobs=4"]
    command += [
        f"hydra.sweeper.n_jobs={TRIALS}",
        f"hydra.sweeper.n_trials={TRIALS}",
        "hydra/sweeper/pruner=none",
    ]
    command += [
        f"hydra.sweeper.storage='{storage}'",
        "optimizer.lr=tag(log, interval(1e-3, 1e-2))",
        f"seed={seed}",
    ]
    with open(home / f"sweep-{seed}.log", "w") as log:
        return subprocess.Popen([*command, *JOB], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)


def test_two_sweeps_on_postgres_through_a_server_restart_lose_and_repeat_nothing(tmp_path) -> None:
    loopback_only()
    database = tmp_path / "postgres"
    backend, storage = postgres.database_url(database, "mlflow"), postgres.database_url(database, "optuna")
    port, outputs = free_port(), tmp_path / "outputs"
    uri = f"http://{LOOPBACK}:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SEQEXP_OUTPUTS": str(outputs), PATIENCE_ENV: "600"}
    server = mlflow_server(port, backend, tmp_path)
    try:
        sweeps = [sweep(seed, storage, env, tmp_path) for seed in (0, 1)]
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        while len(running(client)) < 2:  # jobs are writing: restart the server under them
            ended = [said(seed, tmp_path) for seed, s in enumerate(sweeps) if s.poll() is not None]
            assert time.monotonic() < deadline and not ended, ended or "no job ran"
            time.sleep(0.5)
        end(server)  # SIGTERM, as a service restart: requests under way are answered, new ones refused
        time.sleep(2)
        server = mlflow_server(port, backend, tmp_path)
        assert running(client), "jobs were running through the restart"
        for s in sweeps:
            s.wait(timeout=600)
        assert [s.returncode for s in sweeps] == [0, 0], [said(seed, tmp_path) for seed in (0, 1)]

        studies = optuna.get_all_study_summaries(storage)
        assert len(studies) == 2
        for summary in studies:
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            trials = study.get_trials()
            assert len(trials) == TRIALS
            failures = [
                line for seed in (0, 1) for line in said(seed, tmp_path).splitlines() if "failed" in line
            ]
            assert all(trial.state == TrialState.COMPLETE for trial in trials), failures
            parent = study.user_attrs[PARENT]
            runs = children(client, parent)
            assert sorted(run.info.run_id for run in runs) == sorted(t.system_attrs[RUN] for t in trials), (
                "each trial's run under the study's parent run, once"
            )
            for run in runs:
                assert run.info.status == "FINISHED", run.info
                steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "train/loss")]
                assert sorted(steps) == list(range(STEPS)), "every step recorded, once"
    finally:
        end(server)
        postgres.stop(database)


def running(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "attributes.status = 'RUNNING'")
    return [run for run in runs if TAG_PARENT in run.data.tags]


def children(client: MlflowClient, parent: str) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{TAG_PARENT}` = '{parent}'")


def said(seed: int, home: Path) -> str:
    """What sweep ``seed`` printed."""
    return (home / f"sweep-{seed}.log").read_text()
