"""The Optuna sweeper as Hydra finds it (``hydra/sweeper=optuna``); the work is done by
seqexp.search.sweeper.StudySweeper, imported only when a sweep starts."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.sweeper: Sweeper | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from seqexp.search.sweeper import StudySweeper

        self.sweeper = StudySweeper(**self.settings)
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.sweeper is not None, "setup() first"
        return self.sweeper.sweep(arguments)
