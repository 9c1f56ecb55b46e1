"""seqexp's Optuna sweeper on tiny tasks: a stored study with a child run per trial under one
parent, resumed after a kill without losing or repeating a trial, failures recorded, and
hopeless trials pruned while they train."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import TrialState
from sizes import TINY

from seqexp.search.plugin import register_sweeper
from seqexp.search.trials import RETRY_OF, RUN

SWEEP = ["hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0", *TINY]
LR = "optimizer.lr"


class KillOnce(pl.Callback):
    """Kills its own process (SIGKILL, as a machine going away would) at the first validation of
    the job that finds the count in ``marker`` at 0, and removes the marker; the jobs before it
    count it down."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)
        self.armed = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.marker.exists():
            count = int(self.marker.read_text())
            self.armed = count == 0
            self.marker.write_text(str(count - 1))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.armed and not trainer.sanity_checking:
            self.marker.unlink()
            os.kill(os.getpid(), signal.SIGKILL)


def study(outputs: Path) -> optuna.Study:
    """The one study stored under ``outputs``."""
    url = f"sqlite:///{outputs / 'optuna.db'}"
    [name] = optuna.get_all_study_names(url)
    return optuna.load_study(study_name=name, storage=url)


def runs(records: MlflowClient) -> tuple[Run, list[Run]]:
    """The sweep's parent run and its children (every run must be one of them)."""
    found = records.search_runs([e.experiment_id for e in records.search_experiments()])
    [parent] = [r for r in found if "seqexp.headline" not in r.data.tags]
    children = [r for r in found if r is not parent]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    return parent, children


def by_trial(study: optuna.Study, children: list[Run]) -> dict[int, Run]:
    """Each trial's MLflow run, by trial number (a run per trial, and no run without its trial)."""
    run_of = {run.info.run_id: run for run in children}
    linked = {
        trial.number: run_of[trial.system_attrs[RUN]] for trial in study.trials if RUN in trial.system_attrs
    }
    assert len(linked) == len(children)
    return linked


def test_a_study_is_stored_with_a_child_run_per_trial_the_best_config_and_plots(
    outputs, run_seqexp, records
) -> None:
    run_seqexp(
        "-m",
        *SWEEP,
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=6",
        f"{LR}=tag(log, interval(1e-3, 3e-2))",
    )

    stored = study(outputs)
    assert [t.state for t in stored.trials] == [TrialState.COMPLETE] * 6
    parent, children = runs(records)
    assert parent.info.status == "FINISHED" and len(children) == 6
    for number, run in by_trial(stored, children).items():
        trial = stored.trials[number]
        assert float(run.data.params[LR]) == pytest.approx(trial.params[LR])
        assert run.data.tags["seqexp.optuna_trial"] == f"{stored.study_name}#{number}"
        assert run.info.status == "FINISHED"
    assert parent.data.tags["seqexp.optuna_study"] == stored.study_name

    artifacts = {a.path for a in records.list_artifacts(parent.info.run_id, "optuna")}
    expected = {
        "best_trial.yaml",
        "best_config.yaml",
        "trials.csv",
        "optimization_history.png",
        "param_importances.png",
    }
    assert artifacts == {f"optuna/{name}" for name in expected}
    best = yaml.safe_load(
        Path(records.download_artifacts(parent.info.run_id, "optuna/best_config.yaml")).read_text()
    )
    assert best["optimizer"]["lr"] == pytest.approx(stored.best_params[LR])
    assert "optuna_trial" not in best["callbacks"]  # the config to run again, without the trial's link
    assert stored.best_value == min(t.value for t in stored.trials)


def test_a_killed_sweep_run_again_continues_its_study_and_parent_run(
    outputs, tmp_path, run_seqexp, records
) -> None:
    marker = tmp_path / "kill"
    marker.write_text("1")  # the first trial finishes, the second is killed at its first validation
    command = [
        "-m",
        *SWEEP,
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=3",
        f"{LR}=tag(log, interval(1e-3, 3e-2))",
        f"+callbacks.kill_once={{_target_:{__name__}.KillOnce,marker:'{marker}'}}",
    ]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent)}
    killed = subprocess.run(["seqexp", *command], env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = study(outputs)
    assert [t.state for t in before.trials] == [TrialState.COMPLETE, TrialState.RUNNING]

    run_seqexp(*command)

    after = study(outputs)
    assert after.study_name == before.study_name
    assert [t.state for t in after.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    interrupted, retried = after.trials[1], after.trials[2]
    assert retried.user_attrs[RETRY_OF] == 1
    assert retried.params == interrupted.params
    assert after.trials[0].value == before.trials[0].value  # kept, not run again
    lrs = [after.trials[n].params[LR] for n in (0, 2, 3)]
    assert len(set(lrs)) == 3  # none drawn twice (the seeded sampler is reseeded on resuming)

    parent, children = runs(records)  # one parent: the first run's, reopened and finished
    assert parent.info.status == "FINISHED"
    statuses = {number: run.info.status for number, run in by_trial(after, children).items()}
    assert statuses == {0: "FINISHED", 1: "KILLED", 2: "FINISHED", 3: "FINISHED"}


def test_a_trial_that_raises_is_recorded_failed_and_the_study_goes_on(
    outputs, monkeypatch, run_seqexp, records
) -> None:
    adam_step = torch.optim.Adam.step
    learning_rates: list[float] = []

    def failing_step(self: torch.optim.Adam, closure: Any = None) -> Any:
        """The second trial's training steps raise."""
        lr = self.param_groups[0]["lr"]
        if closure is not None and lr not in learning_rates:
            learning_rates.append(lr)
        if closure is not None and learning_rates.index(lr) == 1:
            raise RuntimeError("a failing step")
        return adam_step(self, closure)

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    run_seqexp("-m", *SWEEP, "hydra.sweeper.n_trials=3", f"{LR}=interval(1e-3, 3e-2)")

    stored = study(outputs)
    assert [t.state for t in stored.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    parent, children = runs(records)
    failed = by_trial(stored, children)[1]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["seqexp.failure"].startswith("RuntimeError: a failing step")
    assert parent.info.status == "FINISHED"


def planned_study(outputs: Path, name: str, learning_rates: tuple[float, ...]) -> None:
    """Study ``name`` under ``outputs``, its first trials enqueued with these learning rates."""
    outputs.mkdir(parents=True)
    planned = optuna.create_study(study_name=name, storage=f"sqlite:///{outputs / 'optuna.db'}")
    for lr in learning_rates:
        planned.enqueue_trial({LR: lr})


def test_a_diverging_trial_is_recorded_failed_and_the_study_goes_on(outputs, run_seqexp, records) -> None:
    planned_study(outputs, "planned", (1e6, 0.01))
    diverging = ["cell=rnn", "cell.nonlinearity=relu", "optimizer=sgd", "trainer.gradient_clip_val=null"]
    run_seqexp(
        "-m", *SWEEP, *diverging, "hydra.sweeper.study_name=planned", "hydra.sweeper.n_trials=2",
        f"{LR}=tag(log, interval(1e-3, 1e6))",
    )  # fmt: skip

    stored = study(outputs)
    assert [t.state for t in stored.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    parent, children = runs(records)
    diverged = by_trial(stored, children)[0]
    assert diverged.info.status == "FAILED" and diverged.data.tags["seqexp.failure"].startswith("Diverged")
    assert parent.info.status == "FINISHED"


def test_a_hopeless_trial_is_pruned_while_it_trains(outputs, run_seqexp, records) -> None:
    planned_study(outputs, "planned", (0.03, 0.03, 1e-9))  # two that learn, then one that cannot
    run_seqexp(
        "-m",
        *SWEEP,
        "hydra.sweeper.study_name=planned",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner.n_startup_trials=2",
        f"{LR}=tag(log, interval(1e-9, 0.1))",
        "trainer.max_steps=12",
    )

    stored = study(outputs)
    assert [t.state for t in stored.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    _, children = runs(records)
    runs_of = by_trial(stored, children)
    steps = {
        n: max(m.step for m in records.get_metric_history(run.info.run_id, "val/mse"))
        for n, run in runs_of.items()
    }
    assert steps[2] < steps[0] == steps[1]  # stopped at its first validation, the others trained on
    assert runs_of[2].data.tags["seqexp.pruned"] == "3" and runs_of[2].info.status == "FINISHED"


def test_hydra_finds_the_sweeper_from_this_install() -> None:
    """Where the package is installed editable, Hydra's scan misses the plugin (hydra issue #2359):
    seqexp's main registers it; it is installed from seqexp/search/hydra_plugin."""
    import hydra_plugins.seqexp_sweeper.optuna_sweeper as plugin

    register_sweeper()
    assert plugin.OptunaSweeper in Plugins.instance().discover(Sweeper)
    assert Path(plugin.__file__).parent.parts[-3:] == ("seqexp", "search", "hydra_plugin")


def test_a_direction_against_the_tasks_metric_is_refused_before_a_trial(outputs, capsys, run_seqexp) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_seqexp(
            "-m",
            *SWEEP,
            "task=reber",
            "task.seq_len=10",
            f"{LR}=interval(1e-3, 3e-2)",
        )

    assert stopped.value.code == 2
    assert "set hydra.sweeper.direction=maximize" in capsys.readouterr().err
    assert not optuna.get_all_study_names(f"sqlite:///{outputs / 'optuna.db'}")
