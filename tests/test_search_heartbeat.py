"""Trials left running by a sweeper on another machine: abandoned once their heartbeats stop (failed,
their parameters tried again), left alone while they go on."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from sizes import TINY

from seqexp.search.sweeper import StudySweeper
from seqexp.search.trials import OWNER, RETRY_OF, heartbeats, storage

LR = "optimizer.lr"


def test_a_trial_whose_heartbeats_stopped_is_tried_again_and_one_still_beating_is_left(
    run_seqexp, outputs: Path
) -> None:
    outputs.mkdir(parents=True)
    database = outputs / "optuna.db"  # the sweeper's default storage
    store = storage(f"sqlite:///{database}", heartbeat_s=5)
    study = optuna.create_study(study_name="shared", storage=store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna prefers heartbeats under Study.optimize
        gone, alive = (study.ask({LR: FloatDistribution(1e-3, 3e-2, log=True)}) for _ in range(2))
    for trial in (gone, alive):
        store.set_trial_system_attr(trial._trial_id, OWNER, "another-machine:4242")
        store.record_heartbeat(trial._trial_id)
    with sqlite3.connect(database) as db:  # gone's machine went away an hour ago
        db.execute(
            "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour') WHERE trial_id = ?",
            (gone._trial_id,),
        )

    with heartbeats(store, [alive._trial_id]):  # alive's sweeper, elsewhere, still beats for it
        run_seqexp(
            "-m",
            *TINY,
            "hydra/sweeper=optuna",
            "hydra/sweeper/sampler=random",
            "hydra/sweeper/pruner=none",
            "hydra.sweeper.study_name=shared",
            "hydra.sweeper.heartbeat_s=5",
            "hydra.sweeper.n_trials=3",
            f"{LR}=tag(log, interval(1e-3, 3e-2))",
        )

    after = optuna.load_study(study_name="shared", storage=f"sqlite:///{database}")
    states = [trial.state for trial in after.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE, TrialState.COMPLETE]
    abandoned, retried = after.trials[0], after.trials[2]
    assert retried.user_attrs[RETRY_OF] == 0 and retried.params == abandoned.params
    assert RETRY_OF not in after.trials[3].user_attrs  # alive is not tried again
    with sqlite3.connect(database) as db:  # the sweeper beat for the trials it ran
        beaten = {trial_id for (trial_id,) in db.execute("SELECT trial_id FROM trial_heartbeats")}
    assert {after.trials[2]._trial_id, after.trials[3]._trial_id} <= beaten


@pytest.mark.parametrize(
    ("heartbeat_s", "refused"), [(0, True), (-5, True), (1.5, True), (None, False), (30, False)]
)
def test_heartbeat_s_is_a_positive_whole_number_of_seconds_or_null(heartbeat_s, refused) -> None:
    settings = {
        "sampler": OmegaConf.create({"_target_": "optuna.samplers.RandomSampler"}),
        "direction": "minimize",
        "storage": None,
        "study_name": None,
        "n_trials": 1,
        "n_jobs": 1,
        "params": None,
        "heartbeat_s": heartbeat_s,
    }
    if refused:
        with pytest.raises(ValueError, match="hydra.sweeper.heartbeat_s must be a positive integer"):
            StudySweeper(**settings)
    else:
        assert StudySweeper(**settings).heartbeat_s == heartbeat_s
