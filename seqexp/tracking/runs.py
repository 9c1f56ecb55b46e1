"""Where runs are recorded (MLflow), and what each record holds."""

from __future__ import annotations

import fcntl
import functools
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only
from sqlalchemy.engine import make_url

import seqexp
from seqexp.checks import ConfigError
from seqexp.config.checking import chosen_options
from seqexp.tracking.connection import guard, patience_s, unanswered_for
from seqexp.tracking.records import CORPUS_FILE, CORPUS_TAG, corpus_digest

CONFIG_ARTIFACT = "config.yaml"
PARENT_RUN_FILE = "mlflow_parent_run"
"""In a sweep's directory: the id of the sweep's parent run."""

TAG_DATA_SCHEME = "seqexp.data_scheme"
"""The version of seqexp's data scheme the run drew its data by (``seqexp.models.data.DATA_SCHEME``)."""
TAG_FAILURE = "seqexp.failure"
TAG_HEADLINE = "seqexp.headline"
TAG_OVERRIDES = "seqexp.overrides"
TAG_RAY_NODE = "seqexp.ray_node"
"""The Ray node a job ran on (``hydra/launcher=ray``)."""
TAG_RUN_DIR = "seqexp.run_dir"
TAG_SWEEP_ID = "seqexp.sweep_id"
TAG_PARENT = "mlflow.parentRunId"
REACH_TIMEOUT_S = 10.0
"""How long seqexp waits for a tracking server's first answer before it says the server is down."""
LOCKED = "database is locked"
LOCK_PATIENCE_S = 300.0
"""How long a job keeps retrying a write that another job's lock on the sqlite store holds up."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
"""The kind of seqexp's experiments: MLflow 3's UI opens them on their runs, not on its GenAI overview."""


def tracking_uri(outputs: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite file in the outputs dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{outputs.resolve() / 'mlflow.db'}"


def artifact_location(outputs: Path) -> str | None:
    """Artifacts of a local store go beside it; a tracking server keeps its own."""
    return None if os.environ.get("MLFLOW_TRACKING_URI") else (outputs.resolve() / "artifacts").as_uri()


def experiment_id(client: MlflowClient | PatientClient, name: str, outputs: Path) -> str:
    """Experiment ``name``'s id, created if need be (by this process or, racing it, by another), as a
    model-training experiment (one made without a kind, by an older seqexp, is marked one)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return experiment.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location(outputs), tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
        )
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_parent_run(
    client: PatientClient,
    experiment: str,
    outputs: Path,
    name: str,
    overrides: list[str],
    options: dict[str, Any],
    tags: dict[str, str] | None = None,
) -> str:
    """A parent run for what a command trains (a comparison, a horizon search): named, tagged with
    the command's overrides, its ``options`` as params."""
    from mlflow.entities import Param

    run_id = client.create_run(
        experiment_id(client, experiment, outputs),
        run_name=name,
        tags={TAG_OVERRIDES: " ".join(overrides), **(tags or {})},
    ).info.run_id
    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in options.items()])
    return run_id


@contextmanager
def ends_run(client: PatientClient, run_id: str) -> Iterator[None]:
    """Run the block; then end ``run_id`` FINISHED, or FAILED if the block raised."""
    try:
        yield
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri``, on this machine only."""
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"


def run_name(cfg: DictConfig) -> str:
    """E.g. ``lstm-uni-adding-T50-seed0`` (no ``T…`` for a task without ``seq_len``, e.g. parity)."""
    length = cfg.task.get("seq_len")
    task = cfg.task.name if length is None else f"{cfg.task.name}-T{length}"
    return f"{cfg.cell.name}-{cfg.topology.name}-{task}-seed{cfg.seed}"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The chosen group options (``cell``, ``task``, ...) and the whole resolved config, dotted."""
    return chosen_options(cfg) | flatten(OmegaConf.to_container(cfg, resolve=True))


def run_tags(run_dir: Path) -> dict[str, str]:
    """Version, git state, run dir and, inside a Hydra app, its overrides and sweep position."""
    source = Path(seqexp.__file__).parent
    tags = {"seqexp.version": seqexp.__version__, TAG_RUN_DIR: str(run_dir.resolve())} | git_tags(source)
    tags |= ray_tags()
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        tags[TAG_OVERRIDES] = " ".join(hydra_cfg.overrides.task)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
            tags |= {"seqexp.sweep_dir": str(sweep_dir), "seqexp.job": str(hydra_cfg.job.num)}
            parent = sweep_dir / PARENT_RUN_FILE
            if parent.exists():
                tags |= {TAG_PARENT: parent.read_text().strip(), TAG_SWEEP_ID: parent.read_text().strip()}
    return tags


def ray_tags() -> dict[str, str]:
    """In a Ray task (``hydra/launcher=ray``), the node it runs on; elsewhere nothing (Ray is not
    imported for it)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    return {TAG_RAY_NODE: ray.get_runtime_context().get_node_id()}


def git_tags(source: Path) -> dict[str, str]:
    """The commit the code came from, and whether the tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "seqexp.git_commit": git("rev-parse", "HEAD"),
            "seqexp.git_dirty": str(bool(git("status", "--porcelain"))),
        }
    except (OSError, subprocess.CalledProcessError):
        return {}


def locked(error: BaseException) -> bool:
    """Did the store refuse because another process held its lock (sqlite's "database is locked")?"""
    seen: BaseException | None = error
    while seen is not None:
        if LOCKED in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PatientClient:
    """An ``MlflowClient`` whose calls, while the store is locked by other jobs, are retried with
    exponential backoff (and jitter) for up to :data:`LOCK_PATIENCE_S`, instead of failing the job."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def patiently(*args: Any, **kwargs: Any) -> Any:
            waited, delay = 0.0, 0.25
            while True:
                try:
                    return attribute(*args, **kwargs)
                except Exception as error:
                    if not locked(error) or waited >= LOCK_PATIENCE_S:
                        raise
                pause = delay * random.uniform(0.5, 1.5)
                time.sleep(pause)
                waited, delay = waited + pause, min(2 * delay, 8.0)

        return patiently


def local_store(uri: str) -> Path | None:
    """The file (``sqlite:///…``) or directory (``file:…``, a path) of the local store at ``uri``;
    ``None`` for a tracking or database server, which guards its own schema, or an in-memory one."""
    scheme = urlsplit(uri).scheme
    if scheme == "sqlite":
        database = make_url(uri).database
        return Path(database) if database and database != ":memory:" else None
    if scheme == "file":
        return Path(url2pathname(urlsplit(uri).path))
    return Path(uri) if not scheme else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold, across processes, an exclusive lock on the local store at ``uri`` (``<store>.lock``,
    beside it) while the block runs. MLflow creates and migrates a store's schema when a process
    first opens it, and processes doing that at once break each other (``duplicate column name``)."""
    store = local_store(uri)
    if store is None:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{store}.lock", "a") as lock:  # closing the file releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def store_client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``, made under :func:`store_lock`: the first client in a process
    creates or migrates the store's schema (MLflow then reuses that store in the process)."""
    with store_lock(uri):
        return MlflowClient(uri)


def patient_client(uri: str) -> PatientClient:
    """A client of the store at ``uri`` (:func:`store_client`) that waits out other jobs' locks."""
    return PatientClient(store_client(uri))


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger, holding metrics back until a checkpoint is saved or the run ends.

    What a killed run logged after its last checkpoint was never written; a run resumed from that
    checkpoint computes it again, and skips what an interrupted (not killed) run did write, so
    that no value is lost or repeated. The store gets one write per epoch instead of one per step.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mlflow_client = PatientClient(self._mlflow_client)
        self.pending: list[Metric] = []
        self.written_up_to: dict[str, int] = {}
        """For a resumed run: the last step of each metric already in the store."""

    @rank_zero_only
    def resume(self) -> None:
        client, run = self.experiment, self.run_id
        self.written_up_to = {
            key: max(m.step for m in client.get_metric_history(run, key))
            for key in client.get_run(run).data.metrics
        }

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now, step = int(time.time() * 1000), step or 0
        self.pending += [
            Metric(k, float(v), now, step) for k, v in metrics.items() if step > self.written_up_to.get(k, -1)
        ]

    @rank_zero_only
    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):  # MLflow takes at most 1000 metrics a call
            self.experiment.log_batch(self.run_id, metrics=self.pending[start : start + 1000])
        self.pending = []

    def after_save_checkpoint(self, checkpoint_callback: Checkpoint) -> None:
        self.flush()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._initialized:
            self.flush()
        super().finalize(status)


@contextmanager
def tracking_env_kept() -> Iterator[None]:
    """Undo what ``mlflow.set_tracking_uri`` (which Lightning's logger calls) does to
    ``MLFLOW_TRACKING_URI``: it would send this process's later runs, and every process it starts,
    to this run's store, as if the user had named a tracking server."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


class TrackingUnreachable(ConfigError):
    """The tracking server named by ``MLFLOW_TRACKING_URI`` does not answer: nothing was recorded."""


def check_reachable(uri: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """One short request of seqexp's own to an HTTP tracking server, before any run is created (MLflow's
    own client retries for minutes, and its retry settings are the whole process's), asked again for
    ``SEQEXP_TRACKING_PATIENCE_S`` seconds (a server restarting). Any HTTP answer, even an error
    status, means the server is there."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    if (reason := unanswered_for(uri, patience_s(), timeout_s)) is None:
        return
    raise TrackingUnreachable(
        f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) cannot be reached ({reason}); "
        "nothing was recorded. Start it (e.g. mlflow server --host 127.0.0.1 --port <port>), point "
        "MLFLOW_TRACKING_URI at a running one, unset it to record to <outputs>/mlflow.db, or run "
        "with logger=none"
    )


def make_logger(cfg: DictConfig, outputs: Path, run_dir: Path, resume_run: str | None = None) -> RunLogger:
    """An MLflow logger for this run: a new run with its params and tags, or ``resume_run`` again."""
    uri = tracking_uri(outputs)
    check_reachable(uri)
    with tracking_env_kept():
        if resume_run:
            patient_client(uri).update_run(resume_run, status="RUNNING")
            logger = RunLogger(tracking_uri=uri, run_id=resume_run)
            guard(logger, outputs)
            logger.resume()
            return logger
        experiment_id(patient_client(uri), cfg.logger.experiment, outputs)  # of its kind, not Lightning's
        logger = RunLogger(
            experiment_name=cfg.logger.experiment,
            run_name=run_name(cfg),
            tracking_uri=uri,
            tags=run_tags(run_dir),
            artifact_location=artifact_location(outputs),
        )
        guard(logger, outputs)
        logger.log_hyperparams(run_params(cfg))  # creates the run
        return logger


def log_config(logger: MLFlowLogger, cfg: DictConfig, run_dir: Path) -> None:
    """Save the resolved config beside the run and as an artifact: enough to rerun it. A language
    model's corpus file is recorded by its digest (a tag, and a file beside the config)."""
    path = run_dir / CONFIG_ARTIFACT
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger.experiment.log_artifact(logger.run_id, str(path))
    if digest := corpus_digest(cfg):
        (run_dir / CORPUS_FILE).write_text(digest)
        logger.experiment.set_tag(logger.run_id, CORPUS_TAG, digest)


class RunRecorder:
    """The models' and diagnostics' :class:`~seqexp.models.recording.Recorder` for an MLflow run:
    what they record beside their metrics goes to the logger's run (from the main process only)."""

    def __init__(self, logger: MLFlowLogger) -> None:
        self.logger = logger

    @rank_zero_only
    def set_tags(self, tags: dict[str, str]) -> None:
        for name, value in tags.items():
            self.logger.experiment.set_tag(self.logger.run_id, name, value)

    @rank_zero_only
    def log_text(self, text: str, path: str) -> None:
        self.logger.experiment.log_text(self.logger.run_id, text, path)

    @rank_zero_only
    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        self.logger.experiment.log_artifact(self.logger.run_id, str(path), directory)


@contextmanager
def system_metrics(cfg: DictConfig, logger: MLFlowLogger | None, outputs: Path) -> Iterator[None]:
    """With ``logger.system_metrics: true``, MLflow's own sampler records ``system/…`` (CPU, memory,
    disk, network, GPU) into the run every ``logger.system_metrics_interval_s`` seconds while the
    block runs (from the main process; it needs ``psutil``)."""
    if logger is None or not cfg.logger.get("system_metrics", False) or rank_zero_only.rank != 0:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        logger.run_id,
        sampling_interval=cfg.logger.get("system_metrics_interval_s", 10),
        resume_logging=True,
        tracking_uri=tracking_uri(outputs),
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


@contextmanager
def quiet_artifact_downloads() -> Iterator[None]:
    """MLflow's artifact-download progress bars off while the block runs (they would print in
    front of a command's own output), and back as they were after it."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
