"""Making Hydra find seqexp's sweeper and Ray launcher. Hydra 1.3 finds plugins by scanning the
``hydra_plugins`` namespace package, which misses a package installed in editable mode (hydra issue
#2359); registering the classes makes them found either way."""

from __future__ import annotations

from hydra.core.plugins import Plugins


def register_sweeper() -> None:
    """Register ``hydra_plugins.seqexp_sweeper``'s ``OptunaSweeper`` and ``RayLauncher`` (a no-op
    for each that Hydra's scan found already)."""
    from hydra_plugins.seqexp_sweeper.optuna_sweeper import OptunaSweeper
    from hydra_plugins.seqexp_sweeper.ray_launcher import RayLauncher

    Plugins.instance().register(OptunaSweeper)
    Plugins.instance().register(RayLauncher)
