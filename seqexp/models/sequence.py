"""The LightningModule: a recurrent stack and a head, trained on a task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from seqexp.layers import Stack
from seqexp.layers.recurrent import StackRun, StackState
from seqexp.models.budget import trainable_parameters
from seqexp.models.recording import NoRecorder, Recorder
from seqexp.tasks import Task

KERNEL_TAG = "seqexp.kernel"
VALIDATION_KEY = "seqexp_validation"
"""Where a checkpoint keeps the validation metrics it was saved after."""
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
CLIP_ALGORITHMS = ("norm", "value")


@dataclass(frozen=True)
class GradientClipping:
    """Clip the gradients to ``value`` (``None`` or 0: no clipping) by their total ``norm`` or
    each element's absolute ``value`` (the config's ``trainer.gradient_clip_val`` and
    ``trainer.gradient_clip_algorithm``)."""

    value: float | None = None
    algorithm: str = "norm"

    def __post_init__(self) -> None:
        if self.algorithm not in CLIP_ALGORITHMS:
            raise ValueError(
                f"trainer.gradient_clip_algorithm must be one of {list(CLIP_ALGORITHMS)} "
                f"(got {self.algorithm!r})"
            )

    def acts(self, parameters: Iterable[nn.Parameter], total_norm: Tensor) -> Tensor:
        """Whether clipping changes the gradients of ``parameters``: their norm (``total_norm``)
        or largest element is over the value. A boolean tensor, so that counting it forces no
        device sync."""
        if not self.value:
            return torch.zeros((), dtype=torch.bool, device=total_norm.device)
        if self.algorithm == "value":
            largest = torch.stack([p.grad.abs().max() for p in parameters if p.grad is not None]).max()
            return largest > self.value
        return total_norm > self.value

    def apply(self, parameters: Iterable[nn.Parameter]) -> None:
        """Clip the gradients of ``parameters`` in place, as Lightning does (for a loop without it)."""
        if not self.value:
            return
        if self.algorithm == "value":
            nn.utils.clip_grad_value_(parameters, self.value)
        else:
            nn.utils.clip_grad_norm_(parameters, self.value)


class TaskModule(pl.LightningModule):
    """What every seqexp model shares: its task, its optimizer and scheduler, its gradient
    clipping, the summary of each validation (the task's baseline and solved flag beside its
    metric), and a :class:`~seqexp.models.recording.Recorder` for what it records beside its
    metrics (``recorder``, set by the command that runs it; by default, none).

    The module clips (``clip_val``, ``clip_algorithm``) in both training modes: Lightning asks it
    through :meth:`configure_gradient_clipping` under automatic optimisation, truncated BPTT
    (manual optimisation) asks it itself. The Trainer is given no clipping of its own."""

    def __init__(
        self,
        task: Task,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_options: dict[str, Any] | None = None,
        clip_val: float | None = None,
        clip_algorithm: str = "norm",
    ) -> None:
        super().__init__()
        self.task = task
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.scheduler_options = scheduler_options or {}
        self.clipping = GradientClipping(clip_val, clip_algorithm)
        self.recorder: Recorder = NoRecorder()
        self.means: dict[str, dict[str, MeanMetric]] = {"val": {}, "test": {}}
        """Per split, the running mean of each of :meth:`evaluate`'s metrics over its examples."""
        self.selected_validation: dict[str, float] = {}
        """The validation metrics of the checkpoint last loaded (after a test: the selected one's)."""

    def evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> dict[str, Tensor]:
        """``loss`` and the task's metrics on a batch of ``stage`` (``train``, ``val`` or ``test``)."""
        raise NotImplementedError

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log_evaluation(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log_evaluation(batch, batch_idx, "test")

    def log_evaluation(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> None:
        """Add a batch's ``loss`` and task metrics to the split's means."""
        for name, value in self.evaluate(batch, batch_idx, stage).items():
            if name not in self.means[stage]:
                self.means[stage][name] = MeanMetric().to(value.device)
            self.means[stage][name].update(value, weight=len(batch[0]))

    def log_split(self, stage: str) -> None:
        """Log ``<stage>/loss`` and the task's metrics over the whole split (see
        :meth:`Task.from_means`), the baseline and the solved flag (0 or 1, by ``spec.solved``)
        beside them, so runs compare at a glance."""
        means = {name: mean.compute() for name, mean in self.means[stage].items()}
        for mean in self.means[stage].values():
            mean.reset()
        metrics = self.task.from_means(means)
        spec = self.task.spec
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, prog_bar=stage == "val")
        self.log(f"{stage}/{spec.metric}_baseline", spec.baseline)
        self.log(f"{stage}/solved", float(spec.solved(metrics[spec.metric])))

    def log_training_metrics(self, batch: tuple[Tensor, Tensor]) -> None:
        """On the steps whose metrics Lightning writes, ``train/<metric>`` for each of the task's
        metrics on the step's batch, measured as validation measures them (in eval mode, with the
        weights the step starts from), so that the training and the validation metric compare.
        Eval mode draws no random numbers: logging leaves training as it is."""
        if not writes_logs(self.trainer):
            return
        training = self.training
        self.eval()
        with torch.no_grad():
            metrics = self.task.from_means(self.evaluate(batch, 0, "train"))
        self.train(training)
        logged = {f"train/{k}": v.detach().cpu() for k, v in metrics.items() if k != "loss"}
        self.log_dict(logged, batch_size=len(batch[0]))

    def log_training_loss(self, loss: Tensor, batch_size: int) -> None:
        """Log ``train/loss`` on the steps whose metrics Lightning writes, and only on those (each
        ``self.log`` costs a fraction of a millisecond), as a value on the CPU: Lightning reads the
        progress bar's values back at every step, and from a GPU that read waits for the step's
        work to finish; this way the loss crosses once per logging step."""
        if writes_logs(self.trainer):
            self.log("train/loss", loss.detach().cpu(), prog_bar=True, batch_size=batch_size)

    def on_fit_start(self) -> None:
        """Tag the MLflow run with the kernel each recurrent stack runs on: ``seqexp.kernel`` for
        the stack, ``seqexp.kernel.<name>`` for another (a decoder), so that runs say which ran;
        log the model's :meth:`sizes`."""
        like = next(self.parameters())
        tags = {
            KERNEL_TAG + ("" if name == "stack" else f".{name}"): module.kernel(like)
            for name, module in self.named_children()
            if isinstance(module, Stack)
        }
        self.recorder.set_tags(tags)
        for logger in self.loggers:
            logger.log_metrics(self.sizes(), step=self.global_step)

    def sizes(self) -> dict[str, int]:
        """``model/params``, the parameters the optimizer trains, and ``model/hidden_size``, the
        encoder stack's (which ``model.param_budget`` may have chosen)."""
        return {"model/params": trainable_parameters(self), "model/hidden_size": self.stack.hidden_size}

    def on_validation_epoch_end(self) -> None:
        self.log_split("val")

    def on_test_epoch_end(self) -> None:
        self.log_split("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the validation metrics that the checkpoint was saved after (with a checkpoint
        selected on validation, these are what the run reports to a sweeper)."""
        metrics = self.trainer.callback_metrics
        checkpoint[VALIDATION_KEY] = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.selected_validation = checkpoint.get(VALIDATION_KEY, {})

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by the module's :attr:`clipping`, in both training modes (see the class). A Trainer
        given a clipping of its own would make two owners: refused."""
        if gradient_clip_val:
            raise ValueError(
                "the module clips (trainer.gradient_clip_val goes to the model); "
                "build the Trainer without gradient_clip_val"
            )
        if self.clipping.value:
            self.clip_gradients(optimizer, self.clipping.value, self.clipping.algorithm)

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.make_scheduler(optimizer), **self.scheduler_options}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class SequenceModel(TaskModule):
    """An input encoder, a recurrent stack and a dense head, shaped by the task's spec.

    Token inputs are embedded (``embedding_size``); real ones go in as they are. Many-to-many:
    ``ŷ<t> = W_y a<t> + b_y`` at every step; many-to-one: ``ŷ = W_y summary + b_y``, where the
    summary is the last state of each direction of the top layer.

    ``tbptt_steps = k`` trains by truncated backpropagation through time (manual optimisation);
    ``None`` is full BPTT (automatic optimisation). The module clips in both (see
    :class:`TaskModule`)."""

    def __init__(
        self,
        task: Task,
        stack: Stack,
        encoder: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_options: dict[str, Any] | None = None,
        tbptt_steps: int | None = None,
        clip_val: float | None = None,
        clip_algorithm: str = "norm",
    ) -> None:
        super().__init__(task, optimizer, scheduler, scheduler_options, clip_val, clip_algorithm)
        check_tbptt(tbptt_steps, stack.num_directions)
        self.encoder = encoder
        self.stack = stack
        self.head = nn.Linear(stack.output_size, task.spec.output_size)
        self.tbptt_steps = tbptt_steps
        self.automatic_optimization = tbptt_steps is None

    def forward(self, x: Tensor) -> Tensor:
        return self.read_out(self.encode(x))

    def encode(self, x: Tensor, keep_steps: bool = False) -> StackRun:
        """The stack's run over the input ``x`` (embedded, if it is tokens)."""
        return self.stack.run(self.encoder(x), keep_steps=keep_steps)

    def read_out(self, run: StackRun) -> Tensor:
        """``ŷ`` from a run of the stack: from its summary (many-to-one) or at every step."""
        return self.head(run.summary if self.task.spec.shape == "many_to_one" else run.outputs)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.log_training_metrics(batch)
        x, y = batch
        if self.automatic_optimization:
            loss = self.task.loss(self(x), y)
        else:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            losses = []
            for chunk_loss in self.truncated_losses(x, y):
                self.manual_backward(chunk_loss)
                losses.append(chunk_loss.detach())
            loss = torch.stack(losses).sum()
            optimizer.step()  # clipped in on_before_optimizer_step
            self.step_schedulers("step")
        self.log_training_loss(loss, len(x))
        return loss

    def truncated_losses(self, x: Tensor, y: Tensor) -> Iterator[Tensor]:
        """Truncated BPTT: each chunk's share of the loss (see :meth:`truncated_runs`);
        backpropagate it before taking the next one (its graph can then be freed)."""
        for steps, run in self.truncated_runs(x):
            share = self.chunk_loss(run, y, steps, x.shape[1])
            if share is not None:
                yield share

    def truncated_runs(self, x: Tensor, keep_steps: bool = False) -> Iterator[tuple[slice, StackRun]]:
        """The stack over ``x`` in chunks of ``tbptt_steps`` steps, the state carried from chunk to
        chunk and detached between them, so that no gradient crosses a chunk boundary; each chunk's
        steps and run. Many-to-one: only the last chunk is differentiable."""
        k, T = self.tbptt_steps, x.shape[1]
        many_to_one = self.task.spec.shape == "many_to_one"
        state: StackState | None = None
        for start in range(0, T, k):
            end = min(start + k, T)
            with torch.set_grad_enabled(end == T or not many_to_one):
                run = self.stack.run(self.encoder(x[:, start:end]), state, keep_steps)
            state = tuple(s.detach() for s in run.state)
            yield slice(start, end), run

    def chunk_loss(self, run: StackRun, y: Tensor, steps: slice, T: int) -> Tensor | None:
        """A chunk's share of the loss. Many-to-many: the chunk's loss weighted by its share of the
        steps, so the shares add up to the whole loss (of a loss that is a mean over steps);
        many-to-one: one share, from the last chunk (``None`` for the others)."""
        if self.task.spec.shape != "many_to_one":
            return self.task.loss(self.read_out(run), y[:, steps]) * ((steps.stop - steps.start) / T)
        return self.task.loss(self.read_out(run), y) if steps.stop == T else None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Under TBPTT, ask :meth:`configure_gradient_clipping` here: where Lightning asks it under
        automatic optimisation, after the callbacks' ``on_before_optimizer_step`` (which so see the
        unclipped gradients)."""
        if not self.automatic_optimization:
            self.configure_gradient_clipping(optimizer)

    def step_schedulers(self, interval: str) -> None:
        """Under TBPTT, step the schedulers as Lightning does under automatic optimisation."""
        count = self.trainer.global_step if interval == "step" else self.trainer.current_epoch + 1
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval or count % config.frequency:
                continue
            if not config.reduce_on_plateau:
                config.scheduler.step()
            elif (value := self.trainer.callback_metrics.get(config.monitor)) is not None:
                config.scheduler.step(value)

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self.step_schedulers("epoch")

    def evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> dict[str, Tensor]:
        x, y = batch
        prediction = self(x)
        return {"loss": self.task.loss(prediction, y)} | self.task.metrics(prediction, y)


def writes_logs(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes the logged metrics at the end of the current training step (one
    step in ``trainer.log_every_n_steps``): what is logged on other steps is overwritten unseen.
    Lightning's own test (``_LoggerConnector.should_update_logs``) is private; this is its rule."""
    every = trainer.log_every_n_steps
    return bool(every) and (trainer.global_step + 1) % every == 0


def check_tbptt(tbptt_steps: int | None, num_directions: int) -> None:
    if tbptt_steps is None:
        return
    if not isinstance(tbptt_steps, int) or tbptt_steps < 1:
        raise ValueError(f"training.tbptt_steps must be null or a positive integer (got {tbptt_steps!r})")
    if num_directions == 2:
        raise ValueError(
            "training.tbptt_steps needs a one-directional topology: a right-to-left pass has no "
            "state to carry into the next chunk (use topology=uni or deep)"
        )
