"""Running the ``seqexp`` command in-process, on tiny sizes, in a temporary outputs dir."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton's kernels then run in its interpreter, on CPU (tests/test_kernels.py). Triton reads
    # this when it is first imported, which Lightning does.
    os.environ.setdefault("TRITON_INTERPRET", "1")
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from seqexp.commands import train

CONF = Path(__file__).parents[1] / "conf"
ONE_BATCH = [
    "task.train_size=32",
    "task.val_size=32",
    "data.batch_size=32",
    "model.hidden_size=32",
    "model.embedding_size=8",
]
"""A token model small enough to fit one batch of 32 examples in a few hundred steps."""
TINY = [
    "threads=1",  # tiny models run fastest on one thread, and parallel jobs then don't oversubscribe
    "task.seq_len=6",
    "task.train_size=64",
    "task.val_size=32",
    "data.batch_size=16",
    "model.hidden_size=8",
    "trainer.max_steps=6",
    "data.batches_per_epoch=3",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]


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


def seqexp(*args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``seqexp ARGS`` as the console script runs it, in this process."""
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["seqexp", *args])
    try:
        train.main()
    finally:
        GlobalHydra.instance().clear()


def config(*overrides: str) -> DictConfig:
    """The config ``seqexp OVERRIDES`` would run, composed without running it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def experiment(name: str) -> tuple[DictConfig, list[list[str]]]:
    """Experiment ``name``'s config, and its sweep's axes: for each swept key, one override per value."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return cfg, [[f"{o.key_or_group}={v}" for v in o.sweep_string_iterator()] for o in parsed]


def client(outputs: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
