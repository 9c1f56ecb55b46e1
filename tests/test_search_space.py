"""The Optuna sweeper's search space: the syntax of Hydra's upstream Optuna plugin, parsed to the
distributions that plugin makes (its Optuna 2 classes written as today's: IntUniformDistribution(a,
b, step) is IntDistribution(a, b, step=step), LogUniformDistribution(a, b) is FloatDistribution(a,
b, log=True), DiscreteUniformDistribution(a, b, q) is FloatDistribution(a, b, step=q), ...)."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from seqexp.search.space import search_space


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # upstream's own table (its tests/test_optuna_sweeper_plugin.py)
        ("x=choice(1,2)", CategoricalDistribution([1, 2])),
        ("x=choice(true, false)", CategoricalDistribution([True, False])),
        ("x=choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
        ("x=range(1,3)", IntDistribution(1, 3)),  # upstream includes the stop
        ("x=interval(1, 5)", FloatDistribution(1, 5)),  # Hydra's interval is over floats...
        ("x=int(interval(1, 5))", IntDistribution(1, 5)),  # ...unless cast
        ("x=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
        ("x=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
        ("x=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1)),
        # and seqexp's own uses
        ("x=range(0, 10, 2)", IntDistribution(0, 10, step=2)),
        ("x=tag(log, interval(1e-4, 3e-2))", FloatDistribution(1e-4, 3e-2, log=True)),
        ("x=choice(rnn, gru, 3)", CategoricalDistribution(["rnn", "gru", 3])),
    ],
)
def test_a_sweep_parses_to_the_distribution_upstream_makes(override: str, expected: object) -> None:
    assert search_space([override]).distributions == {"x": expected}


def test_shuffled_range_is_a_choice() -> None:
    [dist] = search_space(["x=shuffle(range(1,3))"]).distributions.values()
    assert isinstance(dist, CategoricalDistribution) and sorted(dist.choices) == [1, 2]  # as upstream


def test_plain_values_are_fixed_and_a_later_override_of_a_key_wins() -> None:
    space = search_space(["optimizer.lr=interval(0.001, 0.1)", "cell=gru", "+x=3", "optimizer.lr=0.01"])
    assert space.distributions == {}
    assert space.fixed == {"cell": "gru", "+x": "3", "optimizer.lr": "0.01"}
    assert space.overrides({"seed": 2}) == ["seed=2", "cell=gru", "+x=3", "optimizer.lr=0.01"]


def test_a_sweep_the_sampler_cannot_draw_from_is_named() -> None:
    with pytest.raises(ValueError, match=r"x=glob\(\*\).*interval, range and choice"):
        search_space(["x=glob(*)"])
