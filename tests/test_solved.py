"""``val/solved_step`` and stopping once solved (or on a plateau), on validations scripted to be
solved when a test says, and through the ``seqexp`` command."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from sizes import TINY
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqexp.commands.train import train
from seqexp.config.build import build_model, build_task
from seqexp.diagnostics.solved import SolvedStep, StopOnceSolved
from seqexp.models.budget import trainable_parameters
from seqexp.tasks import TaskSpec

STEPS_PER_VALIDATION = 3
MSE = TaskSpec(input_size=1, output_size=1, shape="many_to_one", metric="mse", baseline=0.17, solved_at=0.01)
ACCURACY = TaskSpec(
    input_size=1,
    output_size=2,
    shape="many_to_one",
    metric="accuracy",
    baseline=0.5,
    solved_at=0.95,
    higher_is_better=True,
)


class Scripted(pl.LightningModule):
    """Validation ``k`` reports ``values[k]`` as the headline metric, and ``val/solved`` as the
    task's spec judges it (as seqexp's modules do); the sanity check before training, a solved value."""

    def __init__(self, spec: TaskSpec, values: list[float]) -> None:
        super().__init__()
        self.task = SimpleNamespace(spec=spec)
        self.values = values
        self.validations = 0
        self.weight = nn.Parameter(torch.zeros(()))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.weight**2

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # solved, as if by chance: it must not count
            value = 1.0 if self.task.spec.higher_is_better else 0.0
        else:
            value = self.values[self.validations]
            self.validations += 1
        self.log(f"val/{self.task.spec.metric}", value)
        self.log("val/solved", float(self.task.spec.solved(value)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(Logger):
    """Every ``log_metrics`` call, as ``(step, metrics)``."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict[str, float]]] = []

    name = "recorder"
    version = 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def values(self, name: str) -> list[tuple[int, float]]:
        return [(step, metrics[name]) for step, metrics in self.logged if name in metrics]


def fit(
    spec: TaskSpec, values: list[float], *callbacks: pl.Callback, max_steps: int | None = None
) -> tuple[pl.Trainer, Recorder]:
    """Train ``Scripted`` for as many validations as there are ``values`` (unless ``max_steps``
    says fewer), one every :data:`STEPS_PER_VALIDATION` steps."""
    recorder = Recorder()
    trainer = pl.Trainer(
        max_steps=STEPS_PER_VALIDATION * len(values) if max_steps is None else max_steps,
        logger=recorder,
        callbacks=[SolvedStep(), *callbacks],
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    batches = DataLoader(TensorDataset(torch.zeros(STEPS_PER_VALIDATION, 1)), batch_size=1)
    trainer.fit(Scripted(spec, values), train_dataloaders=batches, val_dataloaders=batches)
    return trainer, recorder


def test_solved_step_is_the_step_of_the_first_solved_validation_logged_once() -> None:
    trainer, recorder = fit(MSE, [0.2, 0.05, 0.005, 0.02, 0.001])

    assert recorder.values("val/solved_step") == [(3 * STEPS_PER_VALIDATION, 3.0 * STEPS_PER_VALIDATION)]
    assert trainer.global_step == 5 * STEPS_PER_VALIDATION  # without early stopping, to the end


def test_a_run_that_is_never_solved_has_no_solved_step() -> None:
    trainer, recorder = fit(ACCURACY, [0.5, 0.9, 0.94, 1.0], max_steps=3 * STEPS_PER_VALIDATION)
    trainer.validate(trainer.lightning_module, trainer.val_dataloaders, verbose=False)

    assert [v for _, v in recorder.values("val/solved")] == [0.0, 0.0, 0.0, 1.0]
    assert recorder.values("val/solved_step") == []


@pytest.mark.parametrize(
    ("spec", "values"), [(MSE, [0.2, 0.05, 0.005, 0.02]), (ACCURACY, [0.5, 0.9, 0.96, 1.0])]
)
def test_stop_once_solved_stops_at_the_first_solved_validation(spec, values) -> None:
    trainer, recorder = fit(spec, values, StopOnceSolved())

    assert trainer.global_step == 3 * STEPS_PER_VALIDATION
    assert recorder.values("val/solved_step") == [(trainer.global_step, float(trainer.global_step))]


def test_a_plateau_stops_the_run_after_patience_validations_without_improvement() -> None:
    # best 0.1 at validation 2; 0.1 - 0.099 < min_delta: no improvement; nor 0.2, 0.1
    values = [0.3, 0.1, 0.099, 0.2, 0.1, 0.05, 0.04]
    trainer, _ = fit(MSE, values, StopOnceSolved(when_solved=False, patience=3, min_delta=0.01))

    assert trainer.global_step == 5 * STEPS_PER_VALIDATION


def test_a_plateau_in_a_metric_that_grows_is_judged_in_its_direction() -> None:
    trainer, _ = fit(ACCURACY, [0.5, 0.6, 0.7, 0.7, 0.7, 0.8], StopOnceSolved(patience=2))

    assert trainer.global_step == 5 * STEPS_PER_VALIDATION


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"when_solved": False}, "stops on nothing"),
        ({"patience": 0}, "callbacks.early_stopping.patience must be >= 1"),
        ({"min_delta": -1.0}, "callbacks.early_stopping.min_delta must be >= 0"),
    ],
)
def test_stopping_options_that_cannot_work_are_refused_naming_the_key(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        StopOnceSolved(**options)


def test_solved_step_survives_a_resume() -> None:
    callback = SolvedStep()
    callback.step = 750
    resumed = SolvedStep()
    resumed.load_state_dict(callback.state_dict())

    assert resumed.step == 750


def test_a_run_logs_its_size_and_stops_on_the_configured_plateau(outputs, compose, records) -> None:
    """``callbacks.early_stopping`` from the config: a plateau (no validation improves the adding
    task's MSE by 10) after the first validation; ``model/params`` is what the optimizer trains."""
    overrides = [*TINY, "trainer.max_steps=12"]
    stop = "_target_:seqexp.diagnostics.solved.StopOnceSolved,patience:1,min_delta:10"
    early = f"callbacks.early_stopping={{{stop}}}"
    cfg = compose(*overrides, early)
    train(cfg, outputs / "run")

    [run] = records.search_runs([records.get_experiment_by_name("adding").experiment_id])
    validations = records.get_metric_history(run.info.run_id, "val/mse")
    assert len(validations) == 2  # stopped at the second validation (step 6), not at step 12's fourth
    model = build_model(compose(*overrides), build_task(compose(*overrides)))
    # an LSTM: 4 blocks × 8 units × (8 + 2 inputs) weights, 4 × 8 biases; the head: 8 + 1
    assert run.data.metrics["model/params"] == trainable_parameters(model) == 4 * 8 * 10 + 4 * 8 + 9
    assert run.data.metrics["model/hidden_size"] == 8
    assert run.data.tags["seqexp.higher_is_better"] == "False"
