"""seqexp's Optuna sweeper: the search space of the upstream Hydra plugin, on a stored study that
survives a kill, with pruning from inside the jobs and one MLflow parent run for the study."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from seqexp.checks import ConfigError
from seqexp.config.build import build_task
from seqexp.search.jobs import Jobs, asynchronous, outcome
from seqexp.search.report import report_study
from seqexp.search.space import SearchSpace, search_space
from seqexp.search.trials import (
    OWNER,
    PARENT,
    PRUNED,
    PRUNER,
    RETRY_OF,
    RUN,
    TRIAL_CALLBACK,
    build_pruner,
    built,
    default_storage,
    heartbeats,
    owner,
    owner_is_dead,
    storage,
)
from seqexp.tracking.runs import PARENT_RUN_FILE, PatientClient, patient_client, tracking_uri

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")
REPORTER = "seqexp.search.pruning.TrialReporter"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
"""Trials that spend the budget: finished (an interrupted one excepted: it is tried again) or
running elsewhere."""


def study_name(overrides: Sequence[str], direction: str) -> str:
    """A study's name derived from the sweep: the same command names the same study."""
    digest = hashlib.sha1("\n".join([direction, *overrides]).encode()).hexdigest()[:12]
    return f"seqexp-{digest}"


def check_direction(config: DictConfig, direction: str) -> None:
    """Refuse to minimise a task's metric that is better higher (an accuracy), or the reverse."""
    spec = build_task(config).spec
    if (direction == "maximize") != spec.higher_is_better:
        wanted = "maximize" if spec.higher_is_better else "minimize"
        raise ConfigError(
            f"hydra.sweeper.direction={direction}, but task {config.task.name}'s val/{spec.metric} is better "
            f"{'higher' if spec.higher_is_better else 'lower'}: set hydra.sweeper.direction={wanted}"
        )


def spent(study: optuna.Study) -> int:
    """The trials of ``study`` that count against its budget: an interrupted one is replaced by its
    retry."""
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs[RETRY_OF] for trial in trials if RETRY_OF in trial.user_attrs}
    return sum(trial.state in COUNTED and trial.number not in retried for trial in trials)


def quoted(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Sweep:
    """The study a sweep works on, and what its trials' jobs need of it."""

    study: optuna.Study
    space: SearchSpace
    url: str
    """The storage's URL, which the jobs open."""
    store: RDBStorage
    client: PatientClient | None
    """The MLflow client of the sweep's parent run, if there is one."""


class StudySweeper(Sweeper):
    """Runs ``n_trials`` trials of a stored Optuna study (counting those of earlier runs of the same
    command), ``n_jobs`` at a time through the configured launcher, on the validation metric each
    job returns: a new trial as soon as any ends where the launcher can start one job at a time
    (seqexp.search.jobs), else (or with ``batches``) in batches of ``n_jobs``."""

    def __init__(
        self,
        sampler: DictConfig,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
        pruner: DictConfig | None = None,
        heartbeat_s: int | None = 60,
        batches: bool = False,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction must be one of {DIRECTIONS}, not {direction!r}")
        counts = {"n_trials": n_trials, "n_jobs": n_jobs}
        if heartbeat_s is not None:  # null: no heartbeats
            counts["heartbeat_s"] = heartbeat_s
        for key, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"hydra.sweeper.{key} must be a positive integer, not {value!r}")
        self.sampler = built(OmegaConf.to_container(sampler, resolve=True), "samplers")
        self.pruner_settings = OmegaConf.to_container(pruner, resolve=True) if pruner else {}
        build_pruner(self.pruner_settings)  # a bad pruner is named before any trial, not in each job
        self.direction = direction
        self.storage_url = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.heartbeat_s = heartbeat_s
        self.params = params
        self.batches = batches
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.outputs = Path(config.paths.outputs)

    def sweep(self, arguments: list[str]) -> None:
        overrides = [f"{key}={value}" for key, value in (self.params or {}).items()] + list(arguments)
        space = search_space(overrides)
        if "task" not in space.distributions:  # one task: its metric says which way is better
            try:
                check_direction(self.config, self.direction)
            except ConfigError as error:
                self.refuse(error)
        url = self.storage_url or default_storage(self.outputs)
        client = self.tracking()
        abandoned = functools.partial(self.interrupted, client=client)
        store = storage(url, self.heartbeat_s, on_abandoned=abandoned)
        study = optuna.create_study(
            study_name=self.study_name or study_name(overrides, self.direction),
            storage=store,
            sampler=self.sampler,
            direction=self.direction,
            load_if_exists=True,
        )
        study.set_user_attr(PRUNER, self.pruner_settings)
        parent = self.parent_run(study, client)
        log.info(
            "Optuna study %s in %s: %d of %d trials done", study.study_name, url, spent(study), self.n_trials
        )
        if study.get_trials(deepcopy=False):
            self.sampler.reseed_rng()  # a seeded sampler would draw again what it drew before
        work = Sweep(study, space, url, store, client)
        jobs = None if self.batches else asynchronous(self.launcher)
        slots = min(self.n_jobs, jobs.workers) if jobs else 1
        if jobs and slots > 1:
            if slots < self.n_jobs:
                log.info("hydra.sweeper.n_jobs=%d, but the launcher runs %d jobs at once", self.n_jobs, slots)
            self.as_they_end(work, jobs, slots)
        else:  # one at a time in batches of one is as fast, and runs the jobs as before
            self.in_batches(work)
        if client and parent:
            report_study(study, client, parent, Path(self.config.hydra.sweep.dir) / "optuna")

    def in_batches(self, sweep: Sweep) -> None:
        """Launch ``n_jobs`` trials at once and wait for all of them before the next ones (Hydra's
        way, and the only one of a launcher that cannot start one job at a time)."""
        while True:
            self.fail_abandoned(sweep.study, sweep.client)
            if (remaining := self.n_trials - spent(sweep.study)) <= 0:
                break
            trials = [self.ask(sweep.study, sweep.space) for _ in range(min(self.n_jobs, remaining))]
            jobs = [self.job(sweep, trial) for trial in trials]
            with heartbeats(sweep.store, [trial._trial_id for trial in trials]):
                returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, job in zip(trials, returns, strict=True):
                self.tell(sweep.study, trial, job)

    def as_they_end(self, sweep: Sweep, jobs: Jobs, slots: int) -> None:
        """Keep ``slots`` trials running: the next is asked for, and its job started, as soon as
        any running one ends (finished, pruned or failed)."""
        running: dict[Future[JobReturn], tuple[optuna.Trial, list[str]]] = {}
        beating: set[int] = set()
        try:
            with heartbeats(sweep.store, beating):
                while True:
                    self.fail_abandoned(sweep.study, sweep.client)
                    for _ in range(min(slots - len(running), self.n_trials - spent(sweep.study))):
                        trial = self.ask(sweep.study, sweep.space)
                        overrides = self.job(sweep, trial)
                        running[jobs.submit(overrides, self.job_idx)] = trial, overrides
                        beating.add(trial._trial_id)
                        self.job_idx += 1
                    if not running:
                        break
                    ended, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in sorted(ended, key=lambda future: running[future][0].number):
                        trial, overrides = running.pop(future)
                        self.tell(sweep.study, trial, outcome(future, overrides))
                        beating.discard(trial._trial_id)
        except BaseException:
            jobs.stop()  # an interrupted sweep leaves no job behind; its trials are tried again
            raise

    def job(self, sweep: Sweep, trial: optuna.Trial) -> list[str]:
        """The overrides of ``trial``'s job: its parameters, and its link to the trial."""
        return sweep.space.overrides(trial.params) + [self.reporter(sweep.url, sweep.study, trial)]

    def refuse(self, error: ConfigError) -> NoReturn:
        """Stop on a bad config before any trial, the sweep's (empty) parent run deleted."""
        if client := self.tracking():
            client.delete_run((Path(self.config.hydra.sweep.dir) / PARENT_RUN_FILE).read_text().strip())
        print(f"seqexp: bad config: {error}", file=sys.stderr)
        sys.exit(2)

    def fail_abandoned(self, study: optuna.Study, client: PatientClient | None) -> None:
        """Fail the running trials whose sweeper is gone, and try their parameters again: one of
        this machine whose process is dead, or one of any machine whose heartbeats stopped."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if owner_is_dead(trial.system_attrs.get(OWNER)):
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                self.interrupted(study, trial, client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # the storage calls self.interrupted for each

    def ask(self, study: optuna.Study, space: SearchSpace) -> optuna.Trial:
        with warnings.catch_warnings():  # the sweeper, not Study.optimize, beats for its trials
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = study.ask(space.distributions)
        study._storage.set_trial_system_attr(trial._trial_id, OWNER, owner())
        for key, value in space.fixed.items():
            trial.set_user_attr(key, value)
        return trial

    @staticmethod
    def reporter(url: str, study: optuna.Study, trial: optuna.Trial) -> str:
        """The override that gives a job its trial: the pruning callback, pointed at it."""
        node = {"_target_": REPORTER, "storage": quoted(url), "study": quoted(study.study_name)}
        fields = ",".join(f"{key}:{value}" for key, value in (node | {"trial_id": trial._trial_id}).items())
        return f"+callbacks.{TRIAL_CALLBACK}={{{fields}}}"

    @staticmethod
    def tell(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> None:
        """Record a job's outcome: its validation metric, pruned, or failed (it raised, or it has no
        finite metric because it diverged)."""
        try:
            value = float(job.return_value)
        except Exception as error:
            log.warning("trial %d failed: %s: %s", trial.number, type(error).__name__, error)
            study.tell(trial, state=TrialState.FAIL)
            return
        if PRUNED in study._storage.get_trial(trial._trial_id).system_attrs:
            study.tell(trial, state=TrialState.PRUNED)
        elif math.isfinite(value):
            study.tell(trial, value)
        else:
            log.warning("trial %d failed: no finite validation metric", trial.number)
            study.tell(trial, state=TrialState.FAIL)

    @staticmethod
    def interrupted(study: optuna.Study, trial: FrozenTrial, client: PatientClient | None) -> None:
        """A trial failed because its sweeper died while it ran: its MLflow run KILLED, and its
        parameters enqueued to be tried again (the retry takes its place in the budget)."""
        log.warning("trial %d was interrupted: its parameters are tried again", trial.number)
        if client and RUN in trial.system_attrs:
            client.set_terminated(trial.system_attrs[RUN], "KILLED")
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number}, skip_if_exists=False)

    def tracking(self) -> PatientClient | None:
        """The MLflow client of the sweep's parent run, if there is one."""
        parent_file = Path(self.config.hydra.sweep.dir) / PARENT_RUN_FILE
        if self.config.logger.name != "mlflow" or not parent_file.exists():
            return None
        return patient_client(tracking_uri(self.outputs))

    def parent_run(self, study: optuna.Study, client: PatientClient | None) -> str | None:
        """The study's MLflow parent run: the one this sweep opened, or, when the study was begun
        by an earlier run of the command, that run's (reopened; the new one is deleted)."""
        if client is None:
            return None
        parent_file = Path(self.config.hydra.sweep.dir) / PARENT_RUN_FILE
        opened = parent_file.read_text().strip()
        earlier = study.user_attrs.get(PARENT)
        if earlier and earlier != opened and self.exists(client, earlier):
            client.set_terminated(opened, "KILLED")
            client.delete_run(opened)
            client.update_run(earlier, status="RUNNING")
            parent_file.write_text(earlier)
            log.info("continuing MLflow parent run %s", earlier)
            return earlier
        study.set_user_attr(PARENT, opened)
        client.set_tag(opened, "seqexp.optuna_study", study.study_name)
        return opened

    @staticmethod
    def exists(client: PatientClient, run_id: str) -> bool:
        try:
            return client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:  # deleted for good, or another store
            return False
