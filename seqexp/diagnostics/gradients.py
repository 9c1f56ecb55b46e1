"""Gradient diagnostics as Lightning callbacks: how much gradient reaches each time step, how big
the gradients of each parameter group are and how often clipping acts, and a guard that stops a
run at the first non-finite loss or gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from seqexp.cells import Recurrence
from seqexp.checks import at_least
from seqexp.diagnostics.flow_plots import FlowHistory, plot_history
from seqexp.models.recording import recorder_of
from seqexp.models.sequence import SequenceModel, writes_logs

FLOW_FILES = ("gradient_flow.png", "gradient_flow.json")


class Diverged(RuntimeError):
    """Training met a non-finite loss or gradient; ``step`` is Lightning's ``global_step`` (the
    number of optimizer steps already taken), ``tensor`` names what was not finite."""

    def __init__(self, step: int, tensor: str, detail: str) -> None:
        super().__init__(
            f"diverged at training step {step}: {tensor} {detail}. Try a lower optimizer.lr, "
            "gradient clipping (trainer.gradient_clip_val), another init.scheme or a gated cell."
        )
        self.step = step
        self.tensor = tensor


def step_gradient_norms(model: SequenceModel, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """``‖∂L/∂a[l]<t>‖`` (T,) per layer and direction, for the model's loss ``L`` on ``(x, y)``.

    The derivative is the one the optimizer uses: with respect to the activation the recurrence
    used, through every later step and layer, or under truncated BPTT only within its chunk (0
    where no loss reaches), whatever kernel the stack trains on (the measurement runs the same
    parameters step by step). Parameters' ``.grad`` are left alone."""
    T = x.shape[1]
    with torch.enable_grad():
        if getattr(model, "tbptt_steps", None):
            chunks = list(model.truncated_runs(x, keep_steps=True))
            shares = [model.chunk_loss(run, y, steps, T) for steps, run in chunks]
            loss = sum(share for share in shares if share is not None)
            runs = [run for _, run in chunks]
        else:
            run = model.encode(x, keep_steps=True)
            loss, runs = model.task.loss(model.read_out(run), y), [run]
        names = list(runs[0].steps or {})
        activations = [a for name in names for run in runs for a in (run.steps or {})[name]]
        differentiable = [a for a in activations if a.requires_grad]
        grads = iter(torch.autograd.grad(loss, differentiable, allow_unused=True, materialize_grads=True))
        full = [next(grads) if a.requires_grad else torch.zeros_like(a) for a in activations]
    return {
        name: torch.linalg.vector_norm(torch.stack(full[i * T : (i + 1) * T]).flatten(1), dim=1)
        for i, name in enumerate(names)
    }


def parameter_groups(model: nn.Module) -> dict[str, str]:
    """Each parameter's group: ``head``, ``input`` (the encoder), ``other`` (a parameter of no cell,
    e.g. an attention layer's or a block's norm), or the group its cell gives it
    (:attr:`Recurrence.gradient_groups`: ``input``, ``recurrent``, ``bias``, ...)."""
    groups = {name: "other" for name, _ in model.named_parameters()}
    for prefix, module in model.named_modules():
        if prefix in ("head", "encoder"):
            groups |= {
                f"{prefix}.{name}": "head" if prefix == "head" else "input"
                for name, _ in module.named_parameters()
            }
        if isinstance(module, Recurrence):
            for name, _ in module.named_parameters(recurse=False):
                groups[f"{prefix}.{name}"] = module.gradient_groups.get(name, "other")
    return groups


def group_norms(model: SequenceModel) -> dict[str, Tensor]:
    """Gradient norms per :func:`parameter_groups` group, per block of the cells' stacked weights
    (``block_u``, ``block_f``, ``block_c``, ``block_o``: the course's gates and candidate) and in
    ``total``."""
    squares: dict[str, Tensor] = {}

    def add(key: str, value: Tensor) -> None:
        squares[key] = squares.get(key, 0) + value

    groups = parameter_groups(model)
    for name, p in model.named_parameters():
        if p.grad is not None:
            add(groups[name], p.grad.detach().square().sum())
    for cell in model.modules():
        if not isinstance(cell, Recurrence) or len(cell.blocks) < 2:
            continue
        rows = len(cell.blocks) * cell.hidden_size
        for p in cell.parameters(recurse=False):
            if p.grad is not None and p.grad.shape[0] == rows:
                for block, part in zip(cell.blocks, p.grad.detach().chunk(len(cell.blocks)), strict=True):
                    add(f"block_{block}", part.square().sum())
    total = sum(v for k, v in squares.items() if not k.startswith("block_"))
    return {k: v.sqrt() for k, v in (squares | {"total": total}).items()}


class NonFiniteGuard(pl.Callback):
    """Ends the run with :class:`Diverged` at the first non-finite training loss or gradient,
    before the optimizer step could spread it into the weights.

    Losses are checked with the gradients, after backward: every process of a distributed run
    then sees the non-finite (all-reduced) gradients and stops, none waits for the others."""

    def __init__(self) -> None:
        self.losses: list[Tensor] = []

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self.losses.append(loss.detach())

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        losses, self.losses = self.losses, []
        # One fused norm over all gradients: finite exactly when they all are, unless they are
        # finite but so large that their norm overflows, which the search below tells apart.
        # Only that search needs the parameters' names.
        total = torch.nn.utils.get_total_norm(p.grad for p in pl_module.parameters() if p.grad is not None)
        if torch.stack([*losses, total]).isfinite().all():
            return
        checked = [("the training loss", loss) for loss in losses]
        named = pl_module.named_parameters()
        checked += [(f"the gradient of {name}", p.grad) for name, p in named if p.grad is not None]
        first = next(((what, t) for what, t in checked if not torch.isfinite(t).all()), None)
        if first is None:
            return
        what, t = first
        if t.numel() == 1:
            detail = f"is {t.item()}"
        else:
            detail = f"is not finite ({int(t.isnan().sum())} nan, {int(t.isinf().sum())} inf of {t.numel()})"
        raise Diverged(trainer.global_step, what, detail)


class GradientNorms(pl.Callback):
    """Logs ``grad/norm_<group>`` (see :func:`group_norms`) of the unclipped gradients on the
    steps whose metrics Lightning writes (:func:`~seqexp.models.sequence.writes_logs`), and
    ``grad/clipped_fraction``: the share of all steps so far where the module's clipping
    (:class:`~seqexp.models.sequence.GradientClipping`, in force in both training modes) changed them."""

    def __init__(self) -> None:
        self.steps = 0
        self.clipped: Tensor | int = 0

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: SequenceModel, optimizer: Any) -> None:
        total = torch.nn.utils.get_total_norm(p.grad for p in pl_module.parameters() if p.grad is not None)
        self.clipped = self.clipped + pl_module.clipping.acts(pl_module.parameters(), total)
        self.steps += 1
        if not writes_logs(trainer):
            return
        logged = {f"grad/norm_{k}": v.float() for k, v in group_norms(pl_module).items()}
        pl_module.log_dict(logged | {"grad/clipped_fraction": self.clipped / self.steps}, on_step=True)

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps, "clipped": int(self.clipped)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.steps, self.clipped = state_dict["steps"], state_dict["clipped"]


class GradientFlow(pl.Callback):
    """Every ``every_n_steps`` training steps (and at the start and the end), ``‖∂L/∂a[l]<t>‖``
    for every time step on a fixed validation batch (the first), in eval mode.

    Logs ``grad/flow_ratio``, ``‖∂L/∂a<1>‖ / ‖∂L/∂a<T>‖`` of the top layer's left-to-right
    direction (and ``grad/flow_ratio/<layer>`` per layer and direction when there are more);
    writes ``gradient_flow.png`` (heatmap of step × training progress, and the latest curve) and
    ``gradient_flow.json`` to the run dir, and gives them to the module's recorder (with MLflow:
    the run's artifacts)."""

    def __init__(self, every_n_steps: int = 100) -> None:
        at_least("callbacks.gradient_flow.every_n_steps", every_n_steps, 1)
        self.every_n_steps = every_n_steps
        self.history = FlowHistory()
        self.batch: tuple[Tensor, Tensor] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: SequenceModel) -> None:
        with torch.random.fork_rng(devices=[]):  # a loader's iterator draws a seed: leave training's RNG be
            x, y = next(iter(trainer.datamodule.val_dataloader()))
        self.batch = (x.to(pl_module.device), y.to(pl_module.device))
        self.measure(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: SequenceModel, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: SequenceModel) -> None:
        self.measure(trainer, pl_module)
        self.save(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: SequenceModel, exception: BaseException) -> None:
        if self.history.steps:
            self.save(trainer, pl_module)

    def measure(self, trainer: pl.Trainer, pl_module: SequenceModel) -> None:
        step = trainer.global_step
        if self.batch is None or step in self.history.steps or not trainer.is_global_zero:
            return
        training = pl_module.training
        pl_module.eval()
        norms = step_gradient_norms(pl_module, *self.batch)
        pl_module.train(training)
        self.history.add(step, {name: curve.tolist() for name, curve in norms.items()})
        metrics = {"grad/flow_ratio": self.history.ratios(self.history.headline)[-1]}
        if len(norms) > 1:
            metrics |= {f"grad/flow_ratio/{name}": self.history.ratios(name)[-1] for name in norms}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def save(self, trainer: pl.Trainer, pl_module: SequenceModel) -> None:
        if not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        png, data = (run_dir / name for name in FLOW_FILES)
        plot_history(self.history, png)
        self.history.save(data)
        for path in (png, data):
            recorder_of(pl_module).log_artifact(path)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.history.steps, "norms": self.history.norms}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = FlowHistory(**state_dict)
