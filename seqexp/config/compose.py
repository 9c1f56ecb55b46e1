"""The configs a command that drives ``seqexp`` works with (``seqexp-compare``, ``seqexp-horizon``,
the bench): the config ``seqexp OVERRIDES`` would run, one override list per combination of a
sweep's values, and a config group's options. Hydra loads when they are called, not on import
(``--help`` stays fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqexp.config.location import CONF
from seqexp.config.renamed import OVERRIDE

if TYPE_CHECKING:
    from omegaconf import DictConfig


def composed(overrides: list[str]) -> DictConfig:
    """The config ``seqexp OVERRIDES`` would run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def options(group: str) -> list[str]:
    """The options of config group ``group`` (``task``: ``adding``, ``copy``, ...), sorted, as Hydra
    finds them: a file ``conf/<group>/<name>.yaml`` is one, with nothing else to list it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    finally:
        GlobalHydra.instance().clear()


def override_key(override: str) -> str:
    """The key an override sets (``+callbacks.x={...}`` -> ``callbacks.x``)."""
    match = OVERRIDE.match(override)
    return match[2] if match else override


def combinations(overrides: list[str]) -> list[tuple[str, list[str]]]:
    """One ``(label, overrides)`` per combination of the swept values (``cell=rnn,gru``), in Hydra's
    order, labelled by its swept overrides (by all of them when nothing is swept)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    return [
        (" ".join(o for o in job if override_key(o) in swept) or " ".join(job) or "config", job)
        for job in jobs
    ]
