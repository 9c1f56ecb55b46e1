"""The Ray launcher's jobs (``hydra/launcher=ray``): each job a Ray task with its CPUs and GPUs, on
the cluster the launcher names, started as Hydra's joblib launcher starts a job, its outcome a
future. A job whose node dies is not run again: its MLflow run is recorded FAILED with the reason
and the sweep goes on (a run again would leave the first attempt's run behind)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.seqexp_sweeper.ray_launcher import RayLauncher

from seqexp.checks import ConfigError
from seqexp.tracking.connection import PATIENCE_ENV
from seqexp.tracking.sweep import fail_lost_job

log = logging.getLogger(__name__)
PASSED_ENV = ("MLFLOW_TRACKING_URI", PATIENCE_ENV, "SEQEXP_TRUSTED_MODULES")
"""What a job takes from the sweep's environment (a Ray worker has its node's, not the sweep's)."""


def ray_module() -> ModuleType:
    """Ray, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "hydra/launcher=ray needs Ray: pip install 'seqexp[cluster]' (or pip install ray)"
        ) from None
    return ray


def job_env(outputs: Path) -> dict[str, str]:
    """The environment a job needs from the sweep: where its outputs go (absolute: a worker's working
    directory is its node's) and the tracking server."""
    return {"SEQEXP_OUTPUTS": str(outputs.resolve())} | {
        key: os.environ[key] for key in PASSED_ENV if key in os.environ
    }


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` set in this process while the block runs, and as it was after it."""
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_job(env: Mapping[str, str], *job: Any) -> JobReturn:
    """One job in a Ray worker, in the sweep's environment (``job``: Hydra's joblib ``execute_job``'s
    arguments)."""
    with environment(env):
        return execute_job(*job)


LOOPBACK = "127.0.0.1"
"""The driver's address unless ``hydra.launcher.init`` names another (``_node_ip_address``)."""


def init_arguments(settings: Any, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``ray.init``'s arguments from the launcher's settings: the cluster's ``address`` (else
    ``RAY_ADDRESS``), its ``init``, and the driver's address :data:`LOOPBACK` unless ``init`` names
    one. seqexp joins a cluster someone started and never starts a Ray of its own: a Ray node
    listens on every network interface (its GCS, raylet and agents, whatever its node address; Ray
    2.60), so where it runs is for whoever starts it to decide (seqexp/CLUSTER.md)."""
    address = settings.get("address") or environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError(
            "hydra/launcher=ray runs the jobs on a Ray cluster already started: set "
            "hydra.launcher.address=HOST:PORT (or RAY_ADDRESS) to its head (seqexp/CLUSTER.md). seqexp "
            "does not start Ray itself, because a Ray node listens on every network interface; on one "
            "machine, hydra/launcher=per_core runs the jobs side by side"
        )
    init = {"_node_ip_address": LOOPBACK, **(settings.get("init") or {})}
    return {"address": address, "log_to_driver": False, **init}


class RayJobs:
    """Jobs of a set-up :class:`RayLauncher` as Ray tasks of ``hydra.launcher.num_cpus`` CPUs and
    ``num_gpus`` GPUs each, on the cluster at ``hydra.launcher.address``; as many run at once as the
    cluster's resources hold when the sweep starts."""

    def __init__(self, launcher: RayLauncher) -> None:
        assert launcher.config is not None and launcher.hydra_context is not None, "setup() first"
        ray = ray_module()
        settings = launcher.settings
        if not ray.is_initialized():
            ray.init(**init_arguments(settings))  # joins a running cluster: never starts one
        self.launcher = launcher
        self.ray = ray
        cpus, gpus = float(settings.get("num_cpus") or 0), float(settings.get("num_gpus") or 0)
        self.task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        held = ray.cluster_resources()
        fits = [held.get(name, 0.0) // need for name, need in (("CPU", cpus), ("GPU", gpus)) if need]
        self.workers = max(1, int(min(fits, default=held.get("CPU", 1))))
        self.env = job_env(Path(launcher.config.paths.outputs))
        self.running: dict[int, Any] = {}

    def submit(self, overrides: Sequence[str], job_idx: int) -> Future[JobReturn]:
        log.info("Launching job #%d on Ray: %s", job_idx, " ".join(filter_overrides(overrides)))
        launcher = self.launcher
        ref = self.task.remote(
            self.env,
            job_idx,
            list(overrides),
            launcher.hydra_context,
            launcher.config,
            launcher.task_function,
            Singleton.get_state(),
        )
        self.running[job_idx] = ref
        ended: Future[JobReturn] = Future()

        def settled(done: Future[JobReturn]) -> None:
            try:
                ended.set_result(self.settle(done, job_idx, overrides))
            except Exception as error:  # recording the loss failed: the sweep is told the job failed
                ended.set_exception(error)

        ref.future().add_done_callback(settled)
        return ended

    def settle(self, done: Future[JobReturn], job_idx: int, overrides: Sequence[str]) -> JobReturn:
        """A job's return; a job lost with its node or worker is recorded FAILED, with the reason,
        and returns no metric, as a failed run does (the sweep goes on)."""
        self.running.pop(job_idx, None)
        try:
            return done.result()
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [""])[0]
            reason = f"{type(error).__name__}: {first_line}"
            log.error("job #%d was lost: %s", job_idx, reason)
            fail_lost_job(self.launcher.config, job_idx, reason)
            return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=math.nan)

    def stop(self) -> None:
        for ref in list(self.running.values()):
            self.ray.cancel(ref, force=True)
