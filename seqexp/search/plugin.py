"""Making Hydra find seqexp's sweeper. Hydra 1.3 finds plugins by scanning the ``hydra_plugins``
namespace package, which misses a package installed in editable mode (hydra issue #2359);
registering the class makes it found either way."""

from __future__ import annotations

from hydra.core.plugins import Plugins


def register_sweeper() -> None:
    """Register ``hydra_plugins.seqexp_sweeper.optuna_sweeper.OptunaSweeper`` (a no-op if Hydra's
    scan found it already)."""
    from hydra_plugins.seqexp_sweeper.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)
