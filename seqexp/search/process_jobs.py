"""The joblib launcher's jobs (``hydra/launcher=parallel``, ``per_core``), one at a time: each job a
process of the pool of loky workers that ``joblib.Parallel`` uses (joblib's memmapping executor, so
that a ``joblib.Parallel`` in the same process finds the pool it expects), started as Hydra's joblib
launcher starts it, its outcome a future."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future

import joblib
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from joblib._parallel_backends import LokyBackend
from joblib.executor import get_memmapping_executor

log = logging.getLogger(__name__)
IDLE_WORKER_TIMEOUT_S = 300
"""How long an idle worker waits for the next job before it exits (joblib's default)."""


class ProcessJobs:
    """Jobs of a set-up ``JoblibLauncher`` in ``hydra.launcher.n_jobs`` worker processes (-1: one
    per CPU), with the thread limits joblib gives its workers; the launcher's other joblib settings
    (batching, pre-dispatch, memmapping) concern ``joblib.Parallel`` and do not apply."""

    def __init__(self, launcher: JoblibLauncher) -> None:
        assert launcher.config is not None and launcher.hydra_context is not None, "setup() first"
        self.launcher = launcher
        self.workers = joblib.effective_n_jobs(launcher.joblib.get("n_jobs", -1))
        self.pool = {
            "timeout": IDLE_WORKER_TIMEOUT_S,
            "env": LokyBackend()._prepare_worker_env(n_jobs=self.workers),
        }
        self.executor = get_memmapping_executor(self.workers, **self.pool)

    def submit(self, overrides: Sequence[str], job_idx: int) -> Future[JobReturn]:
        log.info("Launching job #%d: %s", job_idx, " ".join(filter_overrides(overrides)))
        launcher = self.launcher
        self.executor = get_memmapping_executor(self.workers, **self.pool)  # a fresh one if a worker died
        return self.executor.submit(
            execute_job,
            job_idx,
            overrides,
            launcher.hydra_context,
            launcher.config,
            launcher.task_function,
            Singleton.get_state(),
        )

    def stop(self) -> None:
        self.executor.shutdown(wait=False, kill_workers=True)
