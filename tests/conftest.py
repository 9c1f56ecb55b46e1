"""Running the ``seqexp`` command in-process, on tiny sizes, in a temporary outputs dir."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

if not torch.cuda.is_available():
    # Triton's kernels then run in its interpreter, on CPU (tests/test_kernels.py). Triton reads
    # this when it is first imported, which Lightning does.
    os.environ.setdefault("TRITON_INTERPRET", "1")
import hydra
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from seqexp.commands import train
from seqexp.config.compose import composed
from seqexp.config.location import CONF


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and two threads stall when others share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh outputs dir; runs record to its sqlite file, never to a shared tracking server."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SEQEXP_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


@pytest.fixture
def run_seqexp(outputs: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``run_seqexp(*ARGS)`` runs ``seqexp ARGS`` as the console script does, in this process,
    recording under ``outputs``."""

    def run(*args: str) -> None:
        GlobalHydra.instance().clear()
        monkeypatch.setattr(sys, "argv", ["seqexp", *args])
        try:
            train.main()
        finally:
            GlobalHydra.instance().clear()

    return run


@pytest.fixture
def compose() -> Callable[..., DictConfig]:
    """``compose(*OVERRIDES)`` is the config ``seqexp OVERRIDES`` would run, composed, not run."""

    def compose_config(*overrides: str) -> DictConfig:
        return composed(list(overrides))

    return compose_config


@pytest.fixture
def experiment_axes() -> Callable[[str], tuple[DictConfig, list[list[str]]]]:
    """``experiment_axes(NAME)`` is experiment NAME's config and its sweep's axes: for each swept
    key, one override per value."""

    def axes(name: str) -> tuple[DictConfig, list[list[str]]]:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = hydra.compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
        params = OmegaConf.to_container(cfg.hydra.sweeper.params)
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        return cfg, [[f"{o.key_or_group}={v}" for v in o.sweep_string_iterator()] for o in parsed]

    return axes


class LazyClient:
    """An ``MlflowClient`` made on first use: sqlite creates the store when a client is made, and a
    test may need to see the run create it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client: MlflowClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self.client is None:
            self.client = MlflowClient(self.uri)
        return getattr(self.client, name)


@pytest.fixture
def records(outputs: Path) -> MlflowClient:
    """A client of the runs recorded under ``outputs`` (made when first used)."""
    return LazyClient(f"sqlite:///{outputs / 'mlflow.db'}")  # type: ignore[return-value]
