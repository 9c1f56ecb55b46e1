"""A sweep is one record: a parent MLflow run, with every job's run nested under it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seqexp.tracking.report import console, report_sweep, sweep_runs
from seqexp.tracking.runs import (
    PARENT_RUN_FILE,
    TAG_FAILURE,
    TAG_OVERRIDES,
    TAG_PARENT,
    TrackingUnreachable,
    check_reachable,
    experiment_id,
    patient_client,
    tracking_uri,
)
from seqexp.tracking.ui import sweep_pages, with_ui

log = logging.getLogger(__name__)


def sweep_overrides(config: DictConfig) -> list[Override]:
    """The sweep's overrides: its sweeper's ``params`` (an experiment's), then the command line's."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    return OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])


def swept_keys(config: DictConfig) -> list[str]:
    """The keys the sweep gives several values (``cell``, ``optimizer.lr``, ``seed``), in order."""
    keys = [override.key_or_group for override in sweep_overrides(config) if override.is_sweep_override()]
    return list(dict.fromkeys(keys))


def job_experiments(config: DictConfig) -> set[str]:
    """The MLflow experiments the sweep's jobs record to (one per task, unless a job names its own),
    from the jobs' configs as Hydra's basic sweeper composes them: one per combination of the swept
    group options and ``logger.*``/``task.name`` values (the other swept values take their first,
    since they do not name experiments). Where that cannot be done (another sweeper), the sweep's own
    experiment, and the jobs create any other."""
    try:
        loader = GlobalHydra.instance().config_loader()
        groups = set(loader.list_groups(""))
        parser = OverridesParser.create()
        lines = []
        for override in sweep_overrides(config):
            key = override.key_or_group
            if (
                not override.is_sweep_override()
                or key in groups
                or key.startswith("logger.")
                or key == "task.name"
            ):
                lines.append(override.input_line)
            else:
                lines.append(f"{override.get_key_element()}={next(override.sweep_string_iterator())}")
        jobs = [
            job
            for batch in BasicSweeper.split_arguments(parser.parse_overrides(lines), None)
            for job in batch
        ]
        configs = [loader.load_sweep_config(config, list(job)) for job in jobs]
    except Exception:  # no jobs to compose here: the jobs create what they need, as before
        return {config.logger.experiment}
    return {job.logger.experiment for job in configs if job.logger.name == "mlflow"}


def fail_lost_job(config: DictConfig, job_num: int, reason: str) -> None:
    """Record job ``job_num`` of the sweep, lost with its worker or node (it could not record its own
    end): its run FAILED, ``reason`` in its ``seqexp.failure`` tag. A job lost before it made its run
    is only logged."""
    parent_file = Path(config.hydra.sweep.dir) / PARENT_RUN_FILE
    if config.logger.name != "mlflow" or not parent_file.exists():
        return
    client = patient_client(tracking_uri(Path(config.paths.outputs)))
    parent = parent_file.read_text().strip()
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    found = client.search_runs(
        experiments, f"tags.`{TAG_PARENT}` = '{parent}' and tags.`seqexp.job` = '{job_num}'"
    )
    for run in found:
        client.set_tag(run.info.run_id, TAG_FAILURE, reason)
        client.set_terminated(run.info.run_id, "FAILED")
    if not found:
        log.warning("job #%d was lost before it made its MLflow run: %s", job_num, reason)


class SweepRun(Callback):
    """Hydra callback: opens the parent run when a multirun starts (or, if it cannot, stops the
    sweep before any job runs), and closes it, with the sweep's report (tables and plots) as
    artifacts, when it ends.

    Jobs find the parent's id in a file in the sweep directory, so they can run in other
    processes or on other machines (joblib, SLURM) that share that directory.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.logger.name != "mlflow":
            return
        outputs = Path(config.paths.outputs)
        uri = tracking_uri(outputs)
        try:
            check_reachable(uri)
        except TrackingUnreachable as error:
            raise SystemExit(f"seqexp: {error}") from None
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            parent = self.open_parent(config, uri, outputs, sweep_dir)
        except Exception as error:  # Hydra would only warn, and the jobs would run unlinked
            cause = (str(error).strip().splitlines() or [""])[0]
            raise SystemExit(
                f"seqexp: the sweep's parent run could not be made in the MLflow store at {uri} "
                f"({type(error).__name__}: {cause}); no job was run"
            ) from error
        (sweep_dir / PARENT_RUN_FILE).write_text(parent)

    @staticmethod
    def open_parent(config: DictConfig, uri: str, outputs: Path, sweep_dir: Path) -> str:
        """The id of a new parent run for the sweep in ``sweep_dir``, its jobs' experiments made."""
        client = patient_client(uri)
        for name in sorted(job_experiments(config)):  # before the jobs race to create them
            experiment_id(client, name, outputs)
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # not the store's fault: say so (SystemExit passes the caller's except)
            raise SystemExit(
                f"seqexp: the sweep's directory cannot be made ({error.strerror}): {sweep_dir}; "
                "choose another hydra.sweep.dir; no job was run"
            ) from None
        run = client.create_run(
            experiment_id(client, config.logger.experiment, outputs),
            run_name=f"sweep-{sweep_dir.name}",
            tags={
                "seqexp.sweep_dir": str(sweep_dir.resolve()),
                TAG_OVERRIDES: " ".join(config.hydra.overrides.task),
            },
        )
        return run.info.run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        parent_file = Path(config.hydra.sweep.dir) / PARENT_RUN_FILE
        if config.logger.name != "mlflow" or not parent_file.exists():
            return
        client = patient_client(tracking_uri(Path(config.paths.outputs)))
        parent = parent_file.read_text().strip()
        try:
            report_sweep(client, parent, Path(config.hydra.sweep.dir) / "report")
        finally:
            client.set_terminated(parent, "FINISHED")
        uri = tracking_uri(Path(config.paths.outputs))
        pages = sweep_pages(client, uri, parent, sweep_runs(client, parent), swept_keys(config))
        for name, page in pages.items():
            console.print(f"the sweep's runs in experiment '{name}': {with_ui(uri, page)}", soft_wrap=True)
