"""The course's four kinds of sequence problem: every cell in every shape, the topologies each
accepts, and the experiments that compare them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from seqexp.checks import ConfigError
from seqexp.config.build import build_model, build_task

CONF = Path(__file__).parents[1] / "conf"
CELLS = ("rnn", "gru_simple", "gru", "lstm", "peephole")
SHAPES = {  # task: (its shape, extra overrides that keep it tiny)
    "adding": ("many_to_one", ["task.seq_len=6"]),
    "tagging": ("many_to_many", ["task.seq_len=6", "task.lookahead=2"]),
    "lm": ("one_to_many", ["task.seq_len=6", "task.corpus_sentences=300"]),
    "dates": ("encoder_decoder", ["decoder.attention=true"]),
}
SMALL = ["model.hidden_size=8", "model.embedding_size=4"]


@pytest.mark.parametrize(("cell", "task"), itertools.product(CELLS, SHAPES))
def test_every_cell_works_in_every_shape(cell: str, task: str, compose) -> None:
    shape, overrides = SHAPES[task]
    cfg = compose(f"task={task}", f"cell={cell}", *overrides, *SMALL)
    built = build_task(cfg)
    assert built.spec.shape == shape
    x, y = built.generate(3, seed=0)
    model = build_model(cfg, built)
    loss = built.loss(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("task", ["adding", "tagging", "dates"])
@pytest.mark.parametrize("topology", ["bi", "deep_bi"])
def test_a_bidirectional_topology_is_accepted_for_classification_tagging_and_encoders(
    task: str, topology: str, compose
) -> None:
    cfg = compose(f"task={task}", f"topology={topology}", *SHAPES[task][1], *SMALL)
    built = build_task(cfg)
    model = build_model(cfg, built)
    assert model.stack.num_directions == 2
    assert model(built.generate(2, seed=0)[0]).shape[0] == 2
    if task == "dates":
        assert model.decoder.num_directions == 1, "the decoder is always one direction"
        assert len(model.decoder.layers) == cfg.topology.num_layers, "with the encoder's layers"


@pytest.mark.parametrize("topology", ["bi", "deep_bi"])
def test_a_bidirectional_language_model_is_refused_as_a_config_error(topology: str, compose) -> None:
    cfg = compose("task=lm", f"topology={topology}", *SHAPES["lm"][1], *SMALL)
    with pytest.raises(ConfigError, match=r"topology: a language model must be unidirectional.*topology=uni"):
        build_model(cfg, build_task(cfg))


def jobs(experiment_axes: Callable[[str], tuple[DictConfig, list[list[str]]]], name: str) -> list[list[str]]:
    """The overrides of every job of experiment ``name``'s sweep."""
    return [list(job) for job in itertools.product(*experiment_axes(name)[1])]


@pytest.mark.parametrize(
    ("name", "task", "swept"),
    [
        ("bidirectional", "tagging", {"topology", "task.lookahead"}),
        ("decoding", "dates", {"decoder.attention"}),
    ],
)
def test_every_job_of_the_experiments_builds(
    name: str, task: str, swept: set[str], compose, experiment_axes
) -> None:
    experiment_jobs = jobs(experiment_axes, name)
    assert len(experiment_jobs) >= 4
    assert swept <= {override.split("=")[0] for job in experiment_jobs for override in job}
    for job in experiment_jobs:
        cfg = compose(f"+experiment={name}", *job)
        assert cfg.task.name == task and cfg.logger.experiment == name
        assert cfg.trainer.enable_progress_bar is False
        built = build_task(cfg)
        assert build_model(cfg, built)(built.generate(2, seed=0)[0]).shape[0] == 2
