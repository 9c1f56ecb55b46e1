"""How the sweeper starts one job at a time: the seam between it and the launchers that can run
jobs asynchronously (one job submitted, its outcome a future), so that a trial starts as soon as
any other ends instead of waiting for the slowest of a batch.

A launcher plugs in either by having the methods of :class:`Jobs` itself, or through an adapter
named in :data:`ADAPTERS` (the joblib launcher's, which seqexp does not own; seqexp's Ray launcher,
whose plugin module stays light because Hydra imports it whenever it scans for plugins).
A launcher with neither runs the sweep's jobs in batches, through Hydra's ``Launcher.launch``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

ADAPTERS = {
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": (
        "seqexp.search.process_jobs.ProcessJobs"
    ),
    "hydra_plugins.seqexp_sweeper.ray_launcher.RayLauncher": "seqexp.search.ray_jobs.RayJobs",
}
"""A launcher class (module.Class) -> the :class:`Jobs` adapter (module.Class) that runs its jobs one
at a time; the adapter is built from the launcher, after its ``setup``."""


@runtime_checkable
class Jobs(Protocol):
    """Runs jobs of a sweep one at a time, asynchronously."""

    workers: int
    """How many jobs run at once; more submitted wait for a free worker."""

    def submit(self, overrides: Sequence[str], job_idx: int) -> Future[JobReturn]:
        """Start job ``job_idx`` with ``overrides``; its future holds its ``JobReturn``."""
        ...

    def stop(self) -> None:
        """Stop the jobs still running (the sweep is ending on an error or an interrupt)."""
        ...


def asynchronous(launcher: Launcher) -> Jobs | None:
    """``launcher``'s jobs, run one at a time; None for a launcher that can only run batches."""
    if isinstance(launcher, Jobs):
        return launcher
    kind = type(launcher)
    adapter = ADAPTERS.get(f"{kind.__module__}.{kind.__qualname__}")
    if adapter is None:
        return None
    module, _, name = adapter.rpartition(".")
    jobs: Jobs = getattr(importlib.import_module(module), name)(launcher)
    return jobs


def outcome(future: Future[JobReturn], overrides: Sequence[str]) -> JobReturn:
    """The job's return; a job whose worker died (killed, out of memory) returns its error as a
    failed job does."""
    try:
        return future.result()
    except Exception as error:
        log.warning("a job's worker died: %s: %s", type(error).__name__, error)
        return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=error)
