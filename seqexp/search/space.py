"""The search space, written as the upstream Hydra Optuna sweeper reads it: each override of the
command line or of ``hydra.sweeper.params`` is either a distribution (``interval``, ``tag(log, …)``,
``choice``, ``range``) or a value every trial takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]
    """The searched keys, each with the distribution its values are drawn from."""
    fixed: dict[str, str]
    """Keys every trial sets to one value (``cell=gru``), as override values."""

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides: its drawn ``params`` and the fixed values."""
        return [f"{key}={value}" for key, value in (params | self.fixed).items()]


def choices(override: Override) -> list[CategoricalChoiceType]:
    """The values of a ``choice`` (or shuffled ``range``) sweep, each a plain value."""
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    for value in values:
        if not isinstance(value, str | int | float | bool | type(None)):
            allowed = "str, int, float, bool or null"
            raise ValueError(f"{override.input_line}: a choice takes {allowed}, not {type(value).__name__}")
    return values


def distribution(override: Override) -> BaseDistribution:
    """The distribution a sweep override describes, as the upstream plugin maps it: ``choice`` is
    categorical; ``range(a, b, step)`` is a stepped uniform from ``a`` to ``b`` (``b`` included, as
    upstream); ``interval(a, b)`` is uniform, over integers when both ends are; ``tag(log, …)``
    makes it log-uniform."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(choices(override))
    if isinstance(value, RangeSweep):
        if value.shuffle:
            return CategoricalDistribution(choices(override))
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise ValueError(
        f"{override.input_line}: the Optuna sweeper searches interval, range and choice sweeps only"
    )


def search_space(overrides: list[str]) -> SearchSpace:
    """The search space the overrides describe (a later override of a key replaces an earlier one)."""
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return SearchSpace(distributions, fixed)
