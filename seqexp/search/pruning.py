"""The trial's side in a job: a Lightning callback that links the job's run to its Optuna trial,
reports the validation metric at every validation, and stops the job once the pruner calls it
hopeless."""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
from optuna.trial import TrialState
from pytorch_lightning.loggers import MLFlowLogger

from seqexp.search.trials import PRUNED, RUN, trial

log = logging.getLogger(__name__)
TAG_TRIAL = "seqexp.optuna_trial"
"""An MLflow run's tag: ``<study>#<trial number>``, the trial it ran."""
TAG_PRUNED = "seqexp.pruned"
"""An MLflow run's tag: the step at which the pruner stopped it."""


class TrialReporter(pl.Callback):
    """Reports ``val/<task metric>`` (the metric the sweeper optimises) to trial ``trial_id`` of
    study ``study`` in ``storage`` after each validation; when the study's pruner says the trial
    is hopeless, the run stops there (gracefully: it is tested and recorded as usual, tagged
    ``seqexp.pruned``) and the sweeper records the trial as pruned.

    The sweeper adds this callback to every job it launches; a job run again outside its sweep
    (e.g. ``seqexp-rerun``) finds the trial finished and reports nothing.
    """

    def __init__(self, storage: str, study: str, trial_id: int, prune: bool = True) -> None:
        self.storage = storage
        self.study = study
        self.trial_id = trial_id
        self.prune = prune
        self.trial = None
        self.metric = "val/loss"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.metric = f"val/{pl_module.task.spec.metric}"
        found = trial(self.storage, self.study, self.trial_id)
        if found.storage.get_trial(self.trial_id).state != TrialState.RUNNING:
            log.warning("trial %s of study %s is not running: nothing reported", self.trial_id, self.study)
            return
        self.trial = found

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trial is None:
            return
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                self.trial.storage.set_trial_system_attr(self.trial_id, RUN, logger.run_id)
                logger.experiment.set_tag(logger.run_id, TAG_TRIAL, f"{self.study}#{self.trial.number}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if self.trial is None or trainer.sanity_checking or value is None or not math.isfinite(value):
            return
        step = trainer.global_step
        self.trial.report(float(value), step)
        if self.prune and self.trial.should_prune():
            self.trial.storage.set_trial_system_attr(self.trial_id, PRUNED, step)
            for logger in trainer.loggers:
                if isinstance(logger, MLFlowLogger):
                    logger.experiment.set_tag(logger.run_id, TAG_PRUNED, str(step))
            log.info("trial %s pruned at step %d: %s = %.4g", self.trial.number, step, self.metric, value)
            trainer.should_stop = True
