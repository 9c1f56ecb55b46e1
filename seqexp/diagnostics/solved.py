"""When a run is solved: the step it first was (``val/solved_step``), and stopping there."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerFn

from seqexp.checks import at_least
from seqexp.models.recording import recorder_of

SOLVED = "val/solved"
SOLVED_STEP = "val/solved_step"
TAG_HIGHER_IS_BETTER = "seqexp.higher_is_better"
"""``True`` or ``False``: which way the run's headline metric improves (reports need it for verdicts)."""


class SolvedStep(pl.Callback):
    """Logs ``val/solved_step``, the global step of the first validation at which the run was
    solved (``val/solved``: the task's ``spec.solved`` on its headline metric), once; a run that
    never is has no ``val/solved_step``. Tags the run (through the module's recorder) with which way
    its headline improves."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        recorder_of(pl_module).set_tags({TAG_HIGHER_IS_BETTER: str(pl_module.task.spec.higher_is_better)})

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or self.step is not None:
            return  # a validation after training (of the selected checkpoint) is not the run's
        solved = trainer.callback_metrics.get(SOLVED)
        if solved is None or not bool(solved):
            return
        self.step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics({SOLVED_STEP: float(self.step)}, step=self.step)

    def state_dict(self) -> dict[str, int | None]:
        return {"step": self.step}

    def load_state_dict(self, state_dict: dict[str, int | None]) -> None:
        self.step = state_dict["step"]


class StopOnceSolved(EarlyStopping):
    """Lightning's early stopping on the task's headline metric (``val/<spec.metric>``, in the
    task's direction): at the first validation at which the run is solved (``when_solved``:
    ``spec.solved_at`` as the stopping threshold), and/or after ``patience`` validations in a row
    that improved on the best by less than ``min_delta`` (a plateau; ``None``: never).

    A non-finite metric does not stop the run here: a diverging run is the non-finite guard's
    (``callbacks.nan_guard``) to stop and record as failed."""

    def __init__(self, when_solved: bool = True, patience: int | None = None, min_delta: float = 0.0) -> None:
        if patience is not None:
            at_least("callbacks.early_stopping.patience", patience, 1)
        if not when_solved and patience is None:
            raise ValueError(
                "callbacks.early_stopping stops on nothing: set when_solved: true and/or a patience"
            )
        if min_delta < 0:
            raise ValueError(f"callbacks.early_stopping.min_delta must be >= 0 (got {min_delta})")
        self.when_solved = when_solved
        super().__init__(
            monitor="",  # the task's headline, known at setup
            patience=math.inf if patience is None else patience,  # type: ignore[arg-type]
            min_delta=min_delta,
            check_finite=False,
            check_on_train_epoch_end=False,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Monitor the task's headline in its direction (before a resumed run's state is loaded)."""
        if stage == "fit":
            spec = pl_module.task.spec
            self.monitor = f"val/{spec.metric}"
            self.mode = "max" if spec.higher_is_better else "min"
            self.stopping_threshold = spec.solved_at if self.when_solved else None
            self.min_delta = abs(self.min_delta) * (1 if spec.higher_is_better else -1)
            self.best_score = torch.tensor(-torch.inf if spec.higher_is_better else torch.inf)
        super().setup(trainer, pl_module, stage)
