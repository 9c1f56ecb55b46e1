"""The ``seqexp`` command: one training run (or, with ``-m``, a sweep) from the Hydra config.

The heavy libraries (torch, Lightning, MLflow) are imported when a run starts, not with this
module: ``seqexp --help`` and ``seqexp --cfg job`` answer at once."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from seqexp.checks import ConfigError
from seqexp.commands.isolation import keeps_process_state
from seqexp.config.location import CONF
from seqexp.config.renamed import renamed_overrides, with_keys_moved
from seqexp.search.plugin import register_sweeper

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from seqexp.models.data import TaskData
    from seqexp.models.sequence import TaskModule
    from seqexp.tasks import Task

log = logging.getLogger(__name__)
console = Console()


@dataclass(frozen=True)
class RunResult:
    metrics: dict[str, float]
    """The last logged value of every metric, ``test/…`` (of the selected checkpoint) among them."""
    headline: str
    """The task's headline metric, e.g. ``val/mse``."""
    run_id: str | None
    """The MLflow run, if one was recorded."""
    selected: dict[str, float] = field(default_factory=dict)
    """The validation metrics of the selected checkpoint (the best on ``val/loss``); empty if none
    was selected."""


class RunFailed(RuntimeError):
    """Training raised or diverged; the run is recorded as FAILED with the reason."""

    def __init__(self, reason: str, run_id: str | None) -> None:
        super().__init__(reason)
        self.run_id = run_id


@keeps_process_state
def train(
    cfg: DictConfig, run_dir: Path, *, resume_run: str | None = None, tags: dict[str, str] | None = None
) -> RunResult:
    """Check and build everything the config describes, train, and return the final metrics.

    ``resume_run`` continues that MLflow run from the last checkpoint in ``run_dir``. A key that
    moved (:mod:`seqexp.config.renamed`, e.g. a record's ``cell.impl``) is read where it is now.
    """
    import pytorch_lightning as pl
    import torch
    import torch.utils.deterministic

    from seqexp.commands.terminal import StepProgressBar, no_advertisements
    from seqexp.config.build import build_data, build_model, build_task, trainer_options
    from seqexp.config.checking import build_errors, check_config, instantiate
    from seqexp.config.memory import check_fits
    from seqexp.diagnostics.solved import SolvedStep
    from seqexp.models.data import DATA_SCHEME
    from seqexp.tracking.checkpoints import (
        LAST,
        EndsWithValidation,
        ExactResume,
        best_checkpoint,
        checkpoint_dir,
        last_checkpoint,
    )
    from seqexp.tracking.phases import PhaseClock
    from seqexp.tracking.runs import (
        TAG_DATA_SCHEME,
        TAG_FAILURE,
        TAG_HEADLINE,
        RunRecorder,
        log_config,
        make_logger,
        system_metrics,
    )

    clock = PhaseClock()
    cfg = with_keys_moved(cfg)

    def task_and_model() -> tuple[Task, TaskModule]:
        task = build_task(cfg)
        check_fits(cfg, task)
        return task, build_model(cfg, task)

    check_config(cfg, trial=task_and_model)  # with a bad value, a build error is listed with it
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task, model = task_and_model()
    data = build_data(cfg, task)
    headline = f"val/{task.spec.metric}"
    outputs = Path(cfg.paths.outputs)
    best = best_checkpoint(run_dir)
    callbacks = [best, last_checkpoint(run_dir), ExactResume(cfg.seed), SolvedStep(), EndsWithValidation()]
    callbacks.append(clock)
    with build_errors("callbacks.*"):
        callbacks += [instantiate(node, drop=()) for node in cfg.callbacks.values() if node is not None]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StepProgressBar())
    with build_errors("trainer.* (the keyword arguments of Lightning's Trainer)"), no_advertisements():
        trainer = pl.Trainer(
            **trainer_options(cfg), logger=False, callbacks=callbacks, default_root_dir=run_dir
        )
    # Everything is built, so the config can run: only now is the run recorded.
    logger = make_logger(cfg, outputs, run_dir, resume_run) if cfg.logger.name == "mlflow" else None
    trainer.loggers = [logger] if logger else []
    if logger:
        model.recorder = RunRecorder(logger)
    # Deterministic mode also fills every torch.empty with NaN, a debugging aid that cost 15% of an
    # nn.LSTM step on CPU; seqexp's kernels write every buffer before they read it.
    torch.utils.deterministic.fill_uninitialized_memory = False
    if logger and not resume_run:
        logger.experiment.set_tag(logger.run_id, TAG_HEADLINE, headline)
        logger.experiment.set_tag(logger.run_id, TAG_DATA_SCHEME, DATA_SCHEME)
        for key, value in (tags or {}).items():
            logger.experiment.set_tag(logger.run_id, key, value)
        log_config(logger, cfg, run_dir)
    last = checkpoint_dir(run_dir) / LAST if resume_run else None
    try:
        with no_advertisements(), system_metrics(cfg, logger, outputs):
            trainer.fit(model, datamodule=data, ckpt_path=last, weights_only=True)
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            tested = report_test(trainer, model, data, best.best_model_path)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        if logger:
            logger.experiment.set_tag(logger.run_id, TAG_FAILURE, reason[:5000])
        raise RunFailed(reason, logger.run_id if logger else None) from error
    if logger and cfg.logger.log_model and best.best_model_path:  # none if val/loss was never finite
        logger.experiment.log_artifact(logger.run_id, best.best_model_path, "checkpoints")
    if logger:
        clock.record(logger)
    selected = model.selected_validation if tested else {}
    result = RunResult(metrics | tested, headline, logger.run_id if logger else None, selected)
    report(result, cfg, outputs)
    return result


def report_test(trainer: pl.Trainer, model: TaskModule, data: TaskData, checkpoint: str) -> dict[str, float]:
    """Test the selected checkpoint, once, on the test set: its ``test/…`` metrics (none if no
    checkpoint was selected, because ``val/loss`` was never finite, or if training was
    interrupted). Loading it gives ``model`` the validation metrics it was selected with."""
    if not checkpoint or trainer.interrupted:
        return {}
    [metrics] = trainer.test(model, datamodule=data, ckpt_path=checkpoint, weights_only=True, verbose=False)
    return {k: float(v) for k, v in metrics.items()}


def report(result: RunResult, cfg: DictConfig, outputs: Path) -> None:
    """Print the final metrics, where the run is recorded and how to look at it."""
    from seqexp.tracking.runs import patient_client, tracking_uri
    from seqexp.tracking.ui import run_hint

    table = Table("metric", "final value", title="seqexp run")
    for name, value in sorted(result.metrics.items()):
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    if result.run_id:
        uri = tracking_uri(outputs)
        console.print(
            f"MLflow run {result.run_id} in experiment '{cfg.logger.experiment}' at {uri}", soft_wrap=True
        )
        console.print(run_hint(patient_client(uri), uri, result.run_id), soft_wrap=True)


def run_job(cfg: DictConfig) -> float:
    """One job of the ``seqexp`` command; returns the headline metric of the selected checkpoint
    (validation, never test), which sweepers minimise.

    A bad config stops the command (exit 2). A failed run stops a single run (exit 1); in a sweep
    it is recorded as FAILED and the sweep goes on.
    """
    hydra_cfg = HydraConfig.get()
    try:
        result = train(cfg, Path(hydra_cfg.runtime.output_dir))
    except ConfigError as error:
        console.print(f"[bold red]seqexp: bad config:[/] {error}", soft_wrap=True)
        sys.exit(2)
    except RunFailed as failure:
        log.error("run %s failed: %s", failure.run_id or "(not recorded)", failure)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(1)
        return math.nan
    return result.selected.get(result.headline, math.nan)


app = hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")(run_job)
"""The Hydra app. (``run_job`` stays a plain module-level function, so that parallel launchers can
send it to their worker processes by name.)"""


def main() -> None:
    """The ``seqexp`` command: the Hydra app, with seqexp's Optuna sweeper made known to Hydra, and
    the keys that moved (:mod:`seqexp.config.renamed`) read where they are now on its command line."""
    sys.argv[1:] = renamed_overrides(sys.argv[1:])
    register_sweeper()
    app()
