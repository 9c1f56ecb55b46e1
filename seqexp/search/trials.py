"""Where a trial lives: its study's storage, and the marks seqexp leaves on its trials."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy.exc import IntegrityError, ProgrammingError

OWNER = "seqexp:owner"
"""A trial's system attribute: ``host:pid`` of the sweeper that asked for it."""
RUN = "seqexp:mlflow_run"
"""A trial's system attribute: the MLflow run its job records to."""
PRUNED = "seqexp:pruned_at"
"""A trial's system attribute: the step at which its job stopped as hopeless."""
RETRY_OF = "seqexp:retry_of"
"""An enqueued trial's user attribute: the number of the trial it repeats, which failed because its
sweeper died while it ran (so only the repeat counts against the budget)."""
PARENT = "seqexp:mlflow_parent"
"""A study's user attribute: the MLflow parent run of the sweep that works on it."""
PRUNER = "seqexp:pruner"
"""A study's user attribute: the pruner's config (``_target_`` under ``optuna.pruners``), which
the jobs build to judge their own trial."""
TRIAL_CALLBACK = "optuna_trial"
"""The key, under ``callbacks``, of the job's link to its trial (seqexp.search.pruning.TrialReporter)."""
SQLITE_TIMEOUT_S = 300
"""How long a writer waits for another process's sqlite lock (parallel jobs report at once)."""
SCHEMA_TRIES = 3
"""How often a storage is opened while other processes make its schema (sweeps started together on a
fresh PostgreSQL database: one's ``CREATE TABLE`` fails on the other's; the next try finds the tables)."""


def default_storage(outputs: Path) -> str:
    """The study database when none is named: sqlite beside the runs, in ``outputs``."""
    return f"sqlite:///{(outputs / 'optuna.db').resolve()}"


def storage(
    url: str,
    heartbeat_s: int | None = None,
    on_abandoned: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> RDBStorage:
    """The RDB storage at ``url``; sqlite waits for other writers rather than failing at once. With
    ``heartbeat_s``, a running trial whose heartbeat is older than twice that is abandoned:
    ``optuna.storages.fail_stale_trials`` fails it and calls ``on_abandoned``."""
    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite:") else None

    def opened() -> RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=heartbeat_s,
                heartbeat_stale_trial_callback=on_abandoned,
            )

    for _ in range(SCHEMA_TRIES - 1):
        with contextlib.suppress(IntegrityError, ProgrammingError):  # another made the schema at that moment
            return opened()
    return opened()


@contextmanager
def heartbeats(store: RDBStorage, trial_ids: Collection[int]) -> Iterator[None]:
    """Record a heartbeat for each of ``trial_ids`` every ``store.heartbeat_interval`` seconds while
    the block runs: a sweeper on any machine that sees them stop takes the trials as abandoned. The
    block may add trials to ``trial_ids`` and remove them (each beat reads it anew)."""
    if store.heartbeat_interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in tuple(trial_ids):  # a copy made at once, under the GIL
                store.record_heartbeat(trial_id)
            if stop.wait(store.heartbeat_interval):
                return

    thread = threading.Thread(target=beat, name="seqexp-trial-heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def owner() -> str:
    """This process, as it marks the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(mark: str | None) -> bool:
    """Is the sweeper that marked a trial ``mark`` a dead process of this machine? (One of another
    machine is told dead by its heartbeats stopping.)"""
    host, _, pid = (mark or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) != os.getpid()


def built(settings: dict[str, Any] | None, kind: str) -> Any:
    """The sampler or pruner (``kind``: ``samplers``, ``pruners``) that ``settings`` describe: a config
    whose ``_target_`` is a class of ``optuna.<kind>``."""
    target = str((settings or {}).get("_target_", ""))
    if not target.startswith(f"optuna.{kind}."):
        raise ValueError(
            f"hydra.sweeper.{kind[:-1]}._target_ must name a class of optuna.{kind}, not {target!r}"
        )
    return hydra.utils.instantiate(settings)


def build_pruner(settings: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """The pruner ``settings`` describe; none: Optuna's ``NopPruner``."""
    return built(settings, "pruners") if settings else optuna.pruners.NopPruner()


def trial(storage_url: str, study_name: str, trial_id: int) -> optuna.Trial:
    """Trial ``trial_id`` of the stored study, as a job in another process reaches it, judged by
    the pruner the study's sweeper configured."""
    store = storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=store)
    study.pruner = build_pruner(study.user_attrs.get(PRUNER))
    return optuna.Trial(study, trial_id)
