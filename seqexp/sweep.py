"""A sweep is one record: a parent MLflow run, with every job's run nested under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from omegaconf import DictConfig

from seqexp.report import report_sweep
from seqexp.tracking import (
    PARENT_RUN_FILE,
    TAG_OVERRIDES,
    TrackingUnreachable,
    check_reachable,
    experiment_id,
    tracking_uri,
)


class SweepRun(Callback):
    """Hydra callback: opens the parent run when a multirun starts, and closes it, with the
    sweep's report (tables and plots) as artifacts, when it ends.

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
        client = MlflowClient(uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        run = client.create_run(
            experiment_id(client, config.logger.experiment, outputs),
            run_name=f"sweep-{sweep_dir.name}",
            tags={
                "seqexp.sweep_dir": str(sweep_dir.resolve()),
                TAG_OVERRIDES: " ".join(config.hydra.overrides.task),
            },
        )
        (sweep_dir / PARENT_RUN_FILE).write_text(run.info.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        parent_file = Path(config.hydra.sweep.dir) / PARENT_RUN_FILE
        if config.logger.name != "mlflow" or not parent_file.exists():
            return
        client = MlflowClient(tracking_uri(Path(config.paths.outputs)))
        parent = parent_file.read_text().strip()
        report_sweep(client, parent, Path(config.hydra.sweep.dir) / "report")
        client.set_terminated(parent, "FINISHED")
