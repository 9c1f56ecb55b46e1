"""The Ray launcher as Hydra finds it (``hydra/launcher=ray``); the work is done by
seqexp.search.ray_jobs.RayJobs, imported only when a sweep launches its jobs (Hydra imports this
module whenever it scans for plugins, so it imports no Ray)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RayLauncher(Launcher):
    """Runs a sweep's jobs as Ray tasks on a Ray cluster, each with its own CPUs (and GPUs)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from seqexp.search.jobs import outcome
        from seqexp.search.ray_jobs import RayJobs

        jobs = RayJobs(self)
        futures = [jobs.submit(overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
        return [outcome(future, overrides) for future, overrides in zip(futures, job_overrides, strict=True)]
