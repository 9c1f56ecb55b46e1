"""The remedies as config: initialisers, truncated BPTT and input dropout do what they claim."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from sizes import TINY
from torch import Tensor, nn
from torch.nn import functional as F

from seqexp.cells import GRUCell, LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell, SimpleGRUCell
from seqexp.checks import ConfigError
from seqexp.config.build import build_data, build_model, build_task, trainer_options
from seqexp.layers.initialization import IRNN_INPUT_STD, initialize
from seqexp.layers.recurrent import RecurrentStack
from seqexp.models.sequence import SequenceModel
from seqexp.tasks import Task, TaskSpec
from seqexp.tasks.adding import AddingTask

CELLS = {
    "rnn": RNNCell,
    "gru_simple": SimpleGRUCell,
    "gru": GRUCell,
    "gru_reset_after": partial(GRUCell, reset_after=True),
    "lstm": partial(LSTMCell, forget_bias=2.5),
    "peephole": partial(PeepholeLSTMCell, forget_bias=-1.0),
}


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def blocks(cell: RecurrentCell, weight: Tensor) -> list[Tensor]:
    return [cell.block(weight, name) for name in cell.blocks]


def fans(cell: RecurrentCell, n_x: int, n_a: int) -> list[tuple[Tensor, int]]:
    """Every block of ``W_x`` and ``W_a`` with its fan-in."""
    return [(W, n_x) for W in blocks(cell, cell.W_x)] + [(W, n_a) for W in blocks(cell, cell.W_a)]


def check_other_parameters(cell: RecurrentCell) -> None:
    """Biases zero except an LSTM's forget gate, which keeps ``forget_bias``."""
    for name in cell.blocks:
        expected = cell.forget_bias if isinstance(cell, LSTMCell) and name == "f" else 0.0
        assert torch.equal(cell.block(cell.b, name), torch.full((cell.hidden_size,), expected))
    for name, p in cell.named_parameters():
        if name not in ("W_x", "W_a", "b"):
            assert not p.any(), f"{name} is zero"


@pytest.mark.parametrize("cell", CELLS)
def test_orthogonal_makes_every_recurrent_block_orthogonal(cell: str) -> None:
    c = initialize(CELLS[cell](16, 32), "orthogonal")
    eye = torch.eye(32)
    for W in blocks(c, c.W_a):
        torch.testing.assert_close(W @ W.T, eye, atol=1e-5, rtol=0)
        torch.testing.assert_close(W.T @ W, eye, atol=1e-5, rtol=0)
    bound = (6 / (16 + 32)) ** 0.5
    assert all(W.abs().max() <= bound for W in blocks(c, c.W_x)), "W_x is Glorot-uniform"
    check_other_parameters(c)


@pytest.mark.parametrize("cell", CELLS)
def test_identity_makes_every_recurrent_block_the_identity(cell: str) -> None:
    c = initialize(CELLS[cell](64, 32), "identity")
    assert all(torch.equal(W, torch.eye(32)) for W in blocks(c, c.W_a))
    assert c.W_x.std().item() == pytest.approx(IRNN_INPUT_STD, rel=0.1)
    check_other_parameters(c)


@pytest.mark.parametrize("cell", CELLS)
def test_xavier_and_he_draw_each_block_with_its_own_fan(cell: str) -> None:
    n_x, n_a = 96, 128
    xavier = initialize(CELLS[cell](n_x, n_a), "xavier")
    for W, fan_in in fans(xavier, n_x, n_a):
        bound = (6 / (fan_in + n_a)) ** 0.5
        assert W.abs().max() <= bound
        assert W.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    check_other_parameters(xavier)
    he = initialize(CELLS[cell](n_x, n_a), "he")
    for W, fan_in in fans(he, n_x, n_a):
        assert W.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    check_other_parameters(he)


def test_default_leaves_the_cell_as_torch_initialises_it() -> None:
    torch.manual_seed(1)
    plain = LSTMCell(3, 4, forget_bias=2.0)
    torch.manual_seed(1)
    default = initialize(LSTMCell(3, 4, forget_bias=2.0), "default")
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), default.parameters(), strict=True))


@pytest.mark.parametrize("impl", ["custom", "native"])
def test_the_config_initialises_both_stacks(impl: str, compose) -> None:
    cfg = compose(*TINY, "cell=rnn", "cell.nonlinearity=relu", "init.scheme=identity", f"model.impl={impl}")
    stack = build_model(cfg, build_task(cfg)).stack
    assert stack.impl == impl
    assert torch.equal(stack.layers[0][0].W_a, torch.eye(8))


def test_an_unknown_scheme_is_refused_naming_the_key(compose) -> None:
    cfg = compose(*TINY, "init.scheme=kaiming")
    with pytest.raises(ConfigError, match=r"init.scheme must be one of \['default', 'xavier', 'he', "):
        build_model(cfg, build_task(cfg))


class EveryStep(Task):
    """A many-to-many task: at every step, the running sum of the values so far."""

    spec = TaskSpec(
        input_size=1, output_size=1, shape="many_to_many", metric="mse", baseline=1.0, solved_at=0.0
    )

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        x = torch.rand(n, self.seq_len, 1, generator=torch.Generator().manual_seed(seed))
        return x, x.cumsum(1)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"mse": self.loss(prediction, target)}


T = 9


def tbptt_model(task: Task, impl: str, k: int | None) -> SequenceModel:
    torch.manual_seed(0)
    stack = RecurrentStack(LSTMCell, task.spec.input_size, 5, num_layers=2, impl=impl)
    return SequenceModel(task, stack, nn.Identity(), optimizer=torch.optim.SGD, tbptt_steps=k).double()


TASKS = {"many_to_one": AddingTask(T), "many_to_many": EveryStep(T, 4, 4)}


def batch(task: Task) -> tuple[Tensor, Tensor]:
    x, y = task.generate(4, seed=1)
    return x.double().requires_grad_(), y.double()


def gradients(model: SequenceModel, losses: list[Tensor] | Tensor) -> list[Tensor]:
    return torch.autograd.grad(sum(losses) if isinstance(losses, list) else losses, list(model.parameters()))


@pytest.mark.parametrize("impl", ["custom", "native"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("k", [T, T + 5])
def test_tbptt_with_chunks_as_long_as_the_sequence_is_full_bptt(task: str, impl: str, k: int) -> None:
    x, y = batch(TASKS[task])
    full = tbptt_model(TASKS[task], impl, None)
    truncated = tbptt_model(TASKS[task], impl, k)
    full_grads = gradients(full, full.task.loss(full(x), y))
    truncated_grads = gradients(truncated, list(truncated.truncated_losses(x, y)))
    assert all(torch.equal(g, h) for g, h in zip(full_grads, truncated_grads, strict=True))


@pytest.mark.parametrize("impl", ["custom", "native"])
def test_tbptt_carries_the_state_but_no_gradient_across_chunk_boundaries(impl: str) -> None:
    task, k = TASKS["many_to_many"], 4
    x, y = batch(task)
    model = tbptt_model(task, impl, k)
    losses = list(model.truncated_losses(x, y))

    full_loss = model.task.loss(model(x), y)
    assert len(losses) == 3
    torch.testing.assert_close(sum(losses), full_loss, rtol=1e-12, atol=0)
    for i, loss in enumerate(losses):
        (reach,) = torch.autograd.grad(loss, x)
        start, end = i * k, min((i + 1) * k, T)
        assert not reach[:, :start].any(), f"chunk {i}'s loss reaches no earlier step"
        assert reach[:, start:end].abs().sum(-1).all(), f"and every step of chunk {i}"


@pytest.mark.parametrize("impl", ["custom", "native"])
def test_tbptt_on_a_many_to_one_task_trains_only_the_last_chunk(impl: str) -> None:
    task, k = TASKS["many_to_one"], 4
    x, y = batch(task)
    model = tbptt_model(task, impl, k)
    [loss] = model.truncated_losses(x, y)
    (reach,) = torch.autograd.grad(loss, x)
    assert not reach[:, : T - T % k].any()
    assert reach[:, T - T % k :].abs().sum(-1).all()


def test_tbptt_refuses_a_bidirectional_topology(compose) -> None:
    cfg = compose(*TINY, "topology=bi", "training.tbptt_steps=3")
    with pytest.raises(ConfigError, match="training.tbptt_steps needs a one-directional topology"):
        build_model(cfg, build_task(cfg))


def fit(compose: Callable[..., DictConfig], *overrides: str) -> tuple[SequenceModel, dict[str, Tensor]]:
    """Train a model from the config for its max_steps on a bare Trainer; its weights before."""
    cfg = compose(*TINY, *overrides)
    pl.seed_everything(0, verbose=False)
    task = build_task(cfg)
    model = build_model(cfg, task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = pl.Trainer(
        **trainer_options(cfg) | {"logger": False, "enable_checkpointing": False, "limit_val_batches": 0}
    )
    trainer.fit(model, datamodule=build_data(cfg, task))
    return model, before


def test_tbptt_clips_with_the_trainer_config_and_steps_the_schedulers(compose) -> None:
    sgd = ["optimizer=sgd", "optimizer.lr=1.0", "optimizer.momentum=0.0", "trainer.max_steps=4"]
    clip = ["trainer.gradient_clip_val=1e-3", "scheduler=step", "scheduler.lr_scheduler.step_size=2"]
    model, before = fit(compose, *sgd, *clip, "training.tbptt_steps=2")

    moved = sum((model.state_dict()[k] - v).square().sum() for k, v in before.items()) ** 0.5
    assert 1e-3 < moved <= (1 + 1 + 0.5 + 0.5) * 1e-3, "each step moved at most lr * gradient_clip_val"
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == 0.25
    assert model.trainer.global_step == 4


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_the_module_clips_the_same_way_under_both_training_modes(algorithm: str, compose) -> None:
    """One owner: full BPTT (Lightning asks the module's ``configure_gradient_clipping``) and TBPTT
    in one chunk of the whole sequence (the module asks it itself) train to the same weights, and
    clipping acted (without it they land elsewhere); the Trainer clips nothing of its own."""
    sgd = ["optimizer=sgd", "optimizer.lr=1.0", "optimizer.momentum=0.0", "trainer.max_steps=3"]
    clip = ["trainer.gradient_clip_val=1e-3", f"trainer.gradient_clip_algorithm={algorithm}"]
    automatic, before = fit(compose, *sgd, *clip)
    manual, _ = fit(compose, *sgd, *clip, "training.tbptt_steps=6")  # TINY's task.seq_len
    unclipped, _ = fit(compose, *sgd, "trainer.gradient_clip_val=null")

    assert automatic.automatic_optimization and not manual.automatic_optimization
    assert automatic.trainer.gradient_clip_val is None, "the Trainer has no clipping of its own"
    weights = automatic.state_dict()
    assert all(torch.equal(manual.state_dict()[k], v) for k, v in weights.items())
    moved = [v - before[k] for k, v in weights.items()]
    bound = 3 * 1.0 * 1e-3 + 1e-6  # steps * lr * gradient_clip_val, and float32 rounding of the weights
    if algorithm == "value":
        assert max(m.abs().max() for m in moved) <= bound, "no element moved further than clipped"
    else:
        assert sum(m.square().sum() for m in moved) ** 0.5 <= bound, "no step longer than clipped"
    assert any(not torch.equal(unclipped.state_dict()[k], v) for k, v in weights.items())


def test_a_trainer_given_clipping_of_its_own_is_refused(compose) -> None:
    cfg = compose(*TINY, "trainer.max_steps=1")
    task = build_task(cfg)
    trainer = pl.Trainer(gradient_clip_val=0.5, logger=False, enable_checkpointing=False, limit_val_batches=0)
    with pytest.raises(ValueError, match="the module clips"):
        trainer.fit(build_model(cfg, task), datamodule=build_data(cfg, task))


@pytest.mark.parametrize("impl", ["custom", "native"])
def test_input_dropout_drops_the_input_of_the_first_layer_in_training_only(impl: str, compose) -> None:
    cfg = compose(*TINY, "topology.input_dropout=0.5", f"model.impl={impl}")
    stack = build_model(cfg, build_task(cfg)).stack
    x = torch.rand(4, 6, 2)

    torch.manual_seed(1)
    trained = stack.train()(x)[0]
    torch.manual_seed(1)
    dropped = F.dropout(x, 0.5, training=True)
    evaluated = stack.eval()(x)[0]

    torch.testing.assert_close(trained, stack(dropped)[0], rtol=0, atol=0)
    assert not torch.allclose(trained, evaluated)
    with pytest.raises(ConfigError, match=r"topology.input_dropout must be in \[0, 1\)"):
        build_model(compose(*TINY, "topology.input_dropout=1.0"), build_task(cfg))


def test_the_remedies_experiment_builds_what_it_names(compose, experiment_axes) -> None:
    cfg, choices = experiment_axes("remedies")
    assert len(list(itertools.product(*choices))) == 24 * 5  # five seeds
    assert cfg.logger.experiment == "remedies" and cfg.task.seq_len == 50

    for i in range(max(map(len, choices))):  # every value of every axis at least once
        job = [axis[i % len(axis)] for axis in choices]
        job_cfg = compose("+experiment=remedies", *job)
        model = build_model(job_cfg, build_task(job_cfg))
        cell = model.stack.layers[0][0]
        assert isinstance(cell, RNNCell) and cell.nonlinearity == job_cfg.cell.nonlinearity
        assert torch.equal(cell.W_a, torch.eye(64)) == (job_cfg.init.scheme == "identity")
        assert model.tbptt_steps == job_cfg.training.tbptt_steps
        assert model.automatic_optimization == (job_cfg.training.tbptt_steps is None)
        x = torch.rand(2, 50, 2)
        assert model(x).shape == (2, 1)
