"""Every cell the ``cell`` config group offers, shipped or added, in every topology: found through
the cell protocol, never through a list of names. Each runs on its kernel exactly as step by step,
carries its state across chunks, trains every parameter it has, and keeps to a parameter budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig
from torch import nn
from training import trained

from seqexp import kernels
from seqexp.checks import ConfigError
from seqexp.config.build import build_model, build_task
from seqexp.config.compose import options
from seqexp.layers import Stack
from seqexp.models.budget import trainable_parameters

CELLS = options("cell")
TOPOLOGIES = options("topology")
SMALL = ("task.train_size=32", "task.val_size=32", "task.test_size=32", "model.hidden_size=8")
B, T = 3, 7


def built_stack(compose: Callable[..., DictConfig], *overrides: str) -> Stack:
    cfg = compose(*SMALL, *overrides)
    return build_model(cfg, build_task(cfg)).stack.double()


def randomize(stack: nn.Module) -> None:
    """Every parameter moved away from its initial value, so that no term can hide (an LRU's ``ν``
    and ``θ`` only a little: they stay in their ranges)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in stack.parameters():
            p.add_(torch.empty_like(p).uniform_(-0.2, 0.2))


def test_the_cells_are_found_in_the_config_group() -> None:
    assert {"rnn", "gru", "lstm", "mingru", "minlstm", "lru", "slstm", "ssm"} <= set(CELLS)
    assert "block" in TOPOLOGIES


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_the_kernel_computes_the_step_by_step_function_and_its_gradients(cell, topology, compose) -> None:
    fast = built_stack(compose, f"cell={cell}", f"topology={topology}", "model.impl=custom")
    randomize(fast)
    loop = built_stack(compose, f"cell={cell}", f"topology={topology}", "model.impl=loop")
    loop.load_state_dict(fast.state_dict())
    x = torch.randn(B, T, 2, dtype=torch.float64)
    weights = torch.randn(B, T, fast.output_size, dtype=torch.float64)

    results = []
    for stack in (fast, loop):
        outputs = stack(x)[0]
        results.append((outputs, torch.autograd.grad((outputs * weights).sum(), list(stack.parameters()))))
    (out_fast, grads_fast), (out_loop, grads_loop) = results

    torch.testing.assert_close(out_fast, out_loop, rtol=0, atol=1e-10)
    names = [name for name, _ in fast.named_parameters()]
    for name, g, h in zip(names, grads_fast, grads_loop, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-10, msg=name)
        assert g.abs().sum() > 0, f"{name} gets no gradient: a parameter the cell never uses"


@pytest.mark.parametrize("topology", ["uni", "deep_bi", "block"])
@pytest.mark.parametrize("cell", CELLS)
def test_the_state_carries_a_sequence_across_chunks(cell, topology, compose) -> None:
    """Two chunks, the state of the first carried into the second, give the whole run (what
    truncated BPTT and a language model's sampling rely on); for a bidirectional stack only the
    left-to-right half can be chunked, so it is compared on one direction's layers alone."""
    if topology == "deep_bi":
        topology = "deep"
    stack = built_stack(compose, f"cell={cell}", f"topology={topology}")
    randomize(stack)
    x = torch.randn(B, T, 2, dtype=torch.float64)

    whole = stack.run(x)
    first = stack.run(x[:, :3])
    second = stack.run(x[:, 3:], first.state)

    torch.testing.assert_close(torch.cat([first.outputs, second.outputs], dim=1), whole.outputs)
    for s, t in zip(second.state, whole.state, strict=True):
        torch.testing.assert_close(s, t)


@pytest.mark.parametrize("cell", CELLS)
def test_the_kernel_and_the_loop_train_the_same_parameters_the_same_way(cell, compose) -> None:
    """20 Adam steps with weight decay in float64 through the kernel and step by step: the same
    parameters at the end."""
    stacks = {impl: built_stack(compose, f"cell={cell}", f"model.impl={impl}") for impl in ("custom", "loop")}
    stacks["loop"].load_state_dict(stacks["custom"].state_dict())
    torch.manual_seed(0)
    batches = [
        (torch.randn(B, T, 2, dtype=torch.float64), torch.randn(B, dtype=torch.float64)) for _ in range(20)
    ]
    custom, loop = (trained(stacks[impl], batches) for impl in ("custom", "loop"))

    for name, p in custom.items():
        torch.testing.assert_close(p, loop[name], rtol=0, atol=1e-9, msg=name)
    assert stacks["loop"].kernel(torch.zeros(1)) == "loop"


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_and_topology_lands_within_5_percent_of_the_budget(cell, topology, compose) -> None:
    cfg = compose(*SMALL, f"cell={cell}", f"topology={topology}", "model.param_budget=20000")

    assert trainable_parameters(build_model(cfg, build_task(cfg))) == pytest.approx(20_000, rel=0.05)


@pytest.mark.parametrize("cell", CELLS)
def test_a_kernel_is_named_for_every_cell(cell, compose) -> None:
    stack = built_stack(compose, f"cell={cell}", "model.impl=custom")
    first = stack.layers[0][0]

    assert stack.kernel(torch.zeros(1)) in ("onednn", "manual", "compiled", "scan", "cell", "loop")
    assert kernels.has_kernel(first) == (stack.kernel(torch.zeros(1)) != "loop")


@pytest.mark.parametrize("cell", CELLS)
def test_an_encoder_decoder_takes_every_cell_and_bridges_only_the_course_cells_states(cell, compose) -> None:
    """A unidirectional encoder hands its state on as it is; a bidirectional one through a bridge
    made for states of activations, refused, with the reason, for a cell whose state is not."""
    cfg = compose(*SMALL, "task=dates", f"cell={cell}", "topology=uni")
    model = build_model(cfg, build_task(cfg))
    x, y = model.task.examples("val", 4, seed=0)
    run = model.encode(x)
    assert model.task.loss(model.decode(run, forced=y)[0], y).isfinite()
    tokens, log_p = model.decode_beam(run, width=2)  # beams copy the state of any shape
    assert tokens.shape[0] == 4 and log_p.isfinite().all()

    bidirectional = compose(*SMALL, "task=dates", f"cell={cell}", "topology=bi")
    first = model.stack.layers[0][0]
    state = first.initial_state(4, torch.zeros(1))
    activations = all(s.shape == (4, 8) and not s.is_complex() for s in state)
    assert not first.bridgeable or activations, "a bridgeable cell's state is activations (B, n_a) alone"
    if first.bridgeable:
        build_model(bidirectional, build_task(bidirectional))
    else:
        with pytest.raises(ConfigError, match="a bidirectional encoder hands its last states"):
            build_model(bidirectional, build_task(bidirectional))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("topology.block.norm=batch", "topology.block.norm must be one of"),
        ("topology.block.mlp_expansion=0", "topology.block.mlp_expansion must be >="),
        ("topology.bidirectional=true", "topology.bidirectional must be false with topology.block"),
    ],
)
def test_a_bad_block_option_is_refused_naming_its_key(override, message, compose) -> None:
    with pytest.raises(ConfigError, match=message):
        built_stack(compose, "topology=block", override)
