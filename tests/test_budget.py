"""``model.param_budget``: the hidden size that spends it (every cell and topology within 5%:
test_every_cell.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from seqexp.checks import ConfigError
from seqexp.config.build import build_model, build_task
from seqexp.models.budget import hidden_size_for_budget, trainable_parameters

SMALL_TASK = ("task.train_size=32", "task.val_size=32")


def build(compose: Callable[..., DictConfig], *overrides: str) -> torch.nn.Module:
    cfg = compose(*SMALL_TASK, *overrides)
    return build_model(cfg, build_task(cfg))


def test_a_cell_that_takes_only_multiples_gets_a_multiple(compose) -> None:
    """The sLSTM's heads split its units evenly: the budget searches multiples of the heads."""
    model = build(compose, "cell=slstm", "cell.num_heads=4", "topology=block", "model.param_budget=200000")

    assert model.stack.hidden_size % 4 == 0
    assert trainable_parameters(model) == pytest.approx(200_000, rel=0.05)


def test_a_budget_no_multiple_can_meet_says_so(compose) -> None:
    with pytest.raises(ConfigError, match=r"no hidden size \(a multiple of 8\) gives this model"):
        build(compose, "cell=slstm", "cell.num_heads=8", "topology=deep", "model.param_budget=20000")


@pytest.mark.parametrize(
    "overrides",
    [
        ("task=agreement", "cell=gru", "cell.reset_after=true"),  # tokens: the embedding counts too
        ("task=dates", "cell=lstm", "decoder.attention=true"),  # an encoder, a decoder and attention
    ],
    ids=["tokens", "encoder_decoder"],
)
def test_the_budget_counts_the_whole_model(overrides, compose) -> None:
    model = build(compose, *overrides, "model.param_budget=30000")

    assert trainable_parameters(model) == pytest.approx(30_000, rel=0.05)


def test_the_budget_chooses_the_model_a_fixed_hidden_size_gives_with_the_same_weights(compose) -> None:
    """Searching the size draws no random numbers: the model equals the same size asked for."""
    torch.manual_seed(0)
    budgeted = build(compose, "cell=gru", "model.param_budget=5000")
    hidden_size = budgeted.stack.hidden_size
    torch.manual_seed(0)
    fixed = build(compose, "cell=gru", f"model.hidden_size={hidden_size}")

    assert hidden_size != 64 and trainable_parameters(budgeted) == pytest.approx(5000, rel=0.05)
    for (name, p), q in zip(budgeted.named_parameters(), fixed.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (20, r"model.param_budget=20: no hidden size .* within 5% \(hidden_size=1 has"),
        (-5, "model.param_budget must be null or a positive integer"),
        ("big", "model.param_budget must be null or a positive integer"),
    ],
)
def test_an_impossible_budget_is_refused_naming_the_key(budget, message, compose) -> None:
    with pytest.raises(ConfigError, match=message):
        build(compose, "cell=lstm", f"model.param_budget={budget}")


def test_the_search_picks_the_nearest_size_and_refuses_gaps_over_the_tolerance() -> None:
    squares = lambda n: n * n  # noqa: E731

    assert hidden_size_for_budget(squares, 10_000) == 100
    assert hidden_size_for_budget(squares, 10_150) == 101  # 10,201 is nearer than 10,000
    assert hidden_size_for_budget(squares, 1) == 1
    with pytest.raises(ConfigError, match="hidden_size=1 has 100, hidden_size=2 has 200"):
        hidden_size_for_budget(lambda n: 100 * n, 150)
