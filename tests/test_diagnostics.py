"""Gradient diagnostics measure what they claim: ∂L/∂a<t> per step, group norms, clipping, NaN guard."""

from __future__ import annotations

import math
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from mlflow import MlflowClient
from sizes import TINY
from torch import Tensor, nn

from seqexp.cells import LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell, SelectiveSSMCell, State
from seqexp.commands.train import train
from seqexp.diagnostics.flow_plots import FlowHistory
from seqexp.diagnostics.gradients import (
    Diverged,
    NonFiniteGuard,
    group_norms,
    parameter_groups,
    step_gradient_norms,
)
from seqexp.layers.recurrent import RecurrentStack
from seqexp.models.sequence import GradientClipping, SequenceModel
from seqexp.tasks.adding import AddingTask

T, B = 7, 5


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def adding_model(stack: RecurrentStack) -> SequenceModel:
    return SequenceModel(AddingTask(T), stack, nn.Identity(), optimizer=torch.optim.SGD).double()


def adding_batch(seq_len: int = T) -> tuple[Tensor, Tensor]:
    x, y = AddingTask(seq_len).generate(B, seed=3)
    return x.double(), y.double()


def state_after(stack: RecurrentStack, h: Tensor, steps: int) -> State:
    """The state after the first ``steps`` steps of a one-layer stack, on its own kernel."""
    return tuple(s[0] for s in stack.run(h[:, :steps]).state)


def last_output_from(stack: RecurrentStack, h: Tensor, state: State) -> Tensor:
    """``a<T>`` of a one-layer stack run over ``h`` from ``state``, on its own kernel."""
    return stack.run(h, tuple(s[None] for s in state)).outputs[:, -1]


def direct_norms(model: SequenceModel, x: Tensor, y: Tensor) -> Tensor:
    """``‖∂L/∂a<t>‖`` the long way: for each t, ``a<t>`` made a leaf and the rest of the sequence
    run again from it by the stack's own kernel (torch.nn's for native)."""
    norms = []
    for t in range(1, T + 1):
        a, *rest = (s.detach() for s in state_after(model.stack, x, t))
        a.requires_grad_()
        last = a if t == T else last_output_from(model.stack, x[:, t:], (a, *rest))
        (grad,) = torch.autograd.grad(model.task.loss(model.head(last), y), a)
        norms.append(grad.norm())
    return torch.stack(norms)


@pytest.mark.parametrize("impl", ["custom", "native"])
@pytest.mark.parametrize("make_cell", [partial(RNNCell, nonlinearity="tanh"), LSTMCell], ids=["rnn", "lstm"])
def test_per_step_gradient_norms_equal_a_direct_autograd_computation(make_cell, impl) -> None:
    model = adding_model(RecurrentStack(make_cell, 2, 4, impl=impl))
    x, y = adding_batch()

    measured = step_gradient_norms(model, x, y)

    assert list(measured) == ["l0"]
    torch.testing.assert_close(measured["l0"], direct_norms(model, x, y), rtol=1e-10, atol=0)


@pytest.mark.parametrize("impl", ["custom", "native"])
def test_under_truncated_bptt_the_flow_is_the_truncated_gradient(impl: str) -> None:
    """Many-to-one with chunks of 3 over 7 steps: only the last chunk gets a gradient, the same as
    full BPTT gives it there (the forward pass is the same); every earlier step gets exactly 0."""
    full = adding_model(RecurrentStack(LSTMCell, 2, 4, impl=impl))
    truncated = SequenceModel(
        AddingTask(T), full.stack, full.encoder, optimizer=torch.optim.SGD, tbptt_steps=3
    )
    truncated.head = full.head
    x, y = adding_batch()

    measured = step_gradient_norms(truncated, x, y)["l0"]

    last_chunk = 6  # chunks: steps 1-3, 4-6, 7
    assert (measured[:last_chunk] == 0).all()
    assert (measured[last_chunk:] > 0).all()
    torch.testing.assert_close(measured[last_chunk:], step_gradient_norms(full, x, y)["l0"][last_chunk:])


class LinearCell(RecurrentCell):
    """``a<t> = W_a a<t-1> + W_x x<t> + b``: no nonlinearity, so ``∂a<t>/∂a<t-1> = W_a``."""

    blocks = ("a",)

    def step(self, wx_t: Tensor, state: State) -> State:
        return (wx_t + state[0] @ self.W_a.T,)


@pytest.mark.parametrize("w", [0.5, 0.9, 1.1])
def test_on_a_linear_rnn_with_recurrent_weight_w_the_ratio_is_w_to_the_t_minus_1(w: float) -> None:
    seq_len = 20
    stack = RecurrentStack(LinearCell, 2, 3)
    model = SequenceModel(AddingTask(seq_len), stack, nn.Identity(), optimizer=torch.optim.SGD).double()
    with torch.no_grad():
        stack.layers[0][0].W_a.copy_(w * torch.eye(3, dtype=torch.float64))

    curve = step_gradient_norms(model, *adding_batch(seq_len))["l0"]

    assert (curve[0] / curve[-1]).item() == pytest.approx(w ** (seq_len - 1), rel=1e-12)
    torch.testing.assert_close(curve[:-1] / curve[1:], torch.full((seq_len - 1,), w, dtype=torch.float64))


def test_parameter_groups_come_from_the_cells() -> None:
    model = adding_model(RecurrentStack(PeepholeLSTMCell, 2, 4, num_layers=2))
    groups = parameter_groups(model)

    assert groups["stack.layers.0.0.W_x"] == "input"
    assert groups["stack.layers.1.0.W_a"] == "recurrent"
    assert groups["stack.layers.0.0.p_f"] == "recurrent"
    assert groups["stack.layers.0.0.b"] == "bias"
    assert groups["head.weight"] == groups["head.bias"] == "head"
    assert set(groups) == {name for name, _ in model.named_parameters()}


def test_a_cell_of_its_own_names_its_groups() -> None:
    model = adding_model(RecurrentStack(SelectiveSSMCell, 2, 4))
    groups = parameter_groups(model)

    assert groups["stack.layers.0.0.A_log"] == "recurrent"
    assert groups["stack.layers.0.0.W_B"] == "selection"
    assert groups["stack.layers.0.0.W_u"] == "input"


@pytest.mark.parametrize("impl", ["custom", "native"])
def test_group_norms_split_the_gradient_by_group_and_by_gate(impl: str) -> None:
    model = adding_model(RecurrentStack(LSTMCell, 2, 4, impl=impl))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    norms = {k: v.item() for k, v in group_norms(model).items()}

    n_a, n_x, gates = 4, 2, 4
    assert norms["input"] == pytest.approx((gates * n_a * n_x) ** 0.5)
    assert norms["recurrent"] == pytest.approx((gates * n_a * n_a) ** 0.5)
    assert norms["bias"] == pytest.approx((gates * n_a) ** 0.5)
    assert norms["head"] == pytest.approx((n_a + 1) ** 0.5)
    for block in "ufco":
        assert norms[f"block_{block}"] == pytest.approx((n_a * (n_x + n_a + 1)) ** 0.5)
    assert norms["total"] ** 2 == pytest.approx(
        sum(norms[g] ** 2 for g in ("input", "recurrent", "bias", "head"))
    )


def test_the_guard_names_the_step_and_the_first_non_finite_loss_or_gradient() -> None:
    model = adding_model(RecurrentStack(LSTMCell, 2, 4))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    guard = NonFiniteGuard()
    step = partial(guard.on_before_optimizer_step, pl_module=model, optimizer=None)

    guard.on_before_backward(None, model, torch.tensor(0.5))
    step(SimpleNamespace(global_step=6))  # all finite: no error
    model.head.weight.grad.fill_(1e200)
    guard.on_before_backward(None, model, torch.tensor(0.5))
    step(SimpleNamespace(global_step=6))  # finite, though too large for their norm: no error
    model.head.weight.grad.zero_()
    model.stack.layers[0][0].W_a.grad[1, 2] = torch.nan
    model.head.weight.grad[0, 0] = torch.inf
    with pytest.raises(Diverged, match=r"step 7: the gradient of stack.layers.0.0.W_a is not") as error:
        step(SimpleNamespace(global_step=7))
    assert "(1 nan, 0 inf of 64)" in str(error.value) and error.value.step == 7
    for loss in (0.5, torch.inf, torch.nan):  # two chunks of truncated BPTT, and a third
        guard.on_before_backward(None, model, torch.tensor(loss))
    with pytest.raises(Diverged, match=r"step 8: the training loss is inf"):
        step(SimpleNamespace(global_step=8))


def diverged(error: BaseException) -> Diverged:
    """The :class:`Diverged` that ended a run, however train() wrapped it."""
    while not isinstance(error, Diverged):
        assert error.__cause__ is not None, f"not a Diverged: {error!r}"
        error = error.__cause__
    return error


def test_a_run_forced_to_explode_stops_at_the_first_non_finite_step_and_is_marked_failed(
    outputs, compose, records
) -> None:
    cfg = compose(
        *TINY,
        "cell=rnn",
        "cell.nonlinearity=relu",
        "topology=deep",
        "topology.num_layers=2",
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "trainer.gradient_clip_val=null",
        "callbacks.gradient_flow.every_n_steps=1",
    )
    with pytest.raises(Exception) as raised:
        train(cfg, outputs / "run")
    error = diverged(raised.value)

    assert f"diverged at training step {error.step}: {error.tensor}" in str(error)
    [run] = records.search_runs([records.get_experiment_by_name("adding").experiment_id])
    assert run.info.status == "FAILED"
    losses = records.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == list(range(error.step)), "every step before it was logged"
    assert all(math.isfinite(m.value) for m in losses), "and it was the first non-finite one"
    flow = {
        name: records.get_metric_history(run.info.run_id, name)
        for name in ("grad/flow_ratio", "grad/flow_ratio/l0", "grad/flow_ratio/l1")
    }
    for history in flow.values():
        assert [m.step for m in history] == list(range(error.step + 1)), "up to the weights that diverged"
    assert flow["grad/flow_ratio"][0].value == flow["grad/flow_ratio/l1"][0].value, "the top layer's"
    artifacts = {a.path for a in records.list_artifacts(run.info.run_id)}
    assert {"gradient_flow.png", "gradient_flow.json"} <= artifacts, "the flow so far is kept"


@pytest.mark.parametrize(
    ("clipping", "fraction"),
    [
        (["trainer.gradient_clip_val=1e-6"], 1.0),
        (["trainer.gradient_clip_val=1e6"], 0.0),
        (
            [
                "trainer.gradient_clip_val=1e-6",
                "trainer.gradient_clip_algorithm=value",
                "training.tbptt_steps=2",
            ],
            1.0,
        ),
    ],
)
def test_the_clipped_fraction_shows_when_clipping_acts(clipping, fraction, outputs, compose) -> None:
    result = train(compose(*TINY, "logger=none", *clipping), outputs)
    assert result.metrics["grad/clipped_fraction"] == fraction


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_acts_by_the_modules_algorithm(algorithm: str) -> None:
    stack = RecurrentStack(LSTMCell, 2, 4)
    model = SequenceModel(
        AddingTask(T), stack, nn.Identity(), torch.optim.SGD, clip_val=0.5, clip_algorithm=algorithm
    )
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.1)
    total = group_norms(model)["total"]

    assert total > 0.5 > 0.1, "the norm is over the clip value, no element is"
    assert model.clipping.acts(model.parameters(), total) == (algorithm == "norm")
    assert not GradientClipping(None, algorithm).acts(model.parameters(), total), "no clip value: no clipping"


def test_a_run_records_gradient_norms_and_the_flow_of_every_layer(outputs, compose) -> None:
    deep = ["topology=deep", "topology.num_layers=2"]
    cfg = compose(*TINY, *deep, "logger=none", "callbacks.gradient_flow.every_n_steps=2")
    result = train(cfg, outputs / "run")

    groups = {"input", "recurrent", "bias", "head", "total", "block_u", "block_f", "block_c", "block_o"}
    assert {f"grad/norm_{g}" for g in groups} | {"grad/clipped_fraction"} <= result.metrics.keys()
    history = FlowHistory.load(outputs / "run" / "gradient_flow.json")
    assert history.steps == [0, 2, 4, 6] and list(history.norms) == ["l0", "l1"]
    assert all(len(curve) == 6 for curves in history.norms.values() for curve in curves), "T = 6"
    assert (outputs / "run" / "gradient_flow.png").stat().st_size > 1000


def test_the_diagnostics_leave_training_exactly_as_it_is_without_them(outputs, compose) -> None:
    overrides = [
        *TINY,
        "logger=none",
        "topology=deep",
        "topology.num_layers=2",
        "topology.dropout=0.3",
        "trainer.gradient_clip_val=0.1",
    ]
    off = [f"callbacks.{name}=null" for name in ("nan_guard", "gradient_norms", "gradient_flow")]
    watched = train(compose(*overrides, "callbacks.gradient_flow.every_n_steps=2"), outputs / "on")
    unwatched = train(compose(*overrides, *off), outputs / "off")
    for key in ("train/loss", "val/loss"):
        assert watched.metrics[key] == unwatched.metrics[key]
    assert "grad/norm_total" not in unwatched.metrics


def test_metrics_logged_every_few_steps_are_those_of_the_steps_they_are_recorded_at(outputs, compose) -> None:
    """With ``log_every_n_steps=3`` the loss and the gradient norms go to MLflow at steps 2 and 5,
    each with the value of its own step: the same as a run that records every step has there."""
    names = ("train/loss", "grad/norm_total", "grad/norm_recurrent")

    def history(every: int) -> dict[str, dict[int, float]]:
        run_outputs = outputs / f"every-{every}"
        train(
            compose(*TINY, f"trainer.log_every_n_steps={every}", f"paths.outputs={run_outputs}"),
            run_outputs / "run",
        )
        mlflow = MlflowClient(f"sqlite:///{run_outputs / 'mlflow.db'}")
        [run] = mlflow.search_runs([mlflow.get_experiment_by_name("adding").experiment_id])
        return {
            name: {m.step: m.value for m in mlflow.get_metric_history(run.info.run_id, name)}
            for name in names
        }

    every_step, every_third = history(1), history(3)
    for name in names:
        assert list(every_step[name]) == list(range(6))
        assert every_third[name] == {step: every_step[name][step] for step in (2, 5)}, name
