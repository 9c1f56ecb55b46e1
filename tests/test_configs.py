"""Every option of every config group, and every experiment, composes, passes seqexp's checks and
builds its task and model (the anchors' test_configs: a config that only breaks when chosen is found
here, not by a user)."""

from __future__ import annotations

import pytest

from seqexp.config.build import build_model, build_task
from seqexp.config.checking import check_config
from seqexp.config.location import CONF

GROUPS = ("cell", "topology", "task", "optimizer", "scheduler", "trainer", "logger")
SMALL = ("model.hidden_size=4", "model.embedding_size=4")
NEEDS = {"task=dates": ("topology=uni",), "task=lm": ("topology=uni", "task.corpus_sentences=100")}
"""Options that need another choice to make sense (an LM reads one way; dates' default is fine)."""


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def test_every_group_has_options() -> None:
    assert all(options(group) for group in GROUPS)


@pytest.mark.parametrize("override", [f"{g}={o}" for g in GROUPS for o in options(g)])
def test_every_option_composes_passes_the_checks_and_builds(override: str, compose) -> None:
    cfg = compose(override, *SMALL, *NEEDS.get(override, ()))
    check_config(cfg)
    task = build_task(cfg)
    assert build_model(cfg, task) is not None
    group, option = override.split("=")
    assert cfg[group].get("name", option) == option


@pytest.mark.parametrize("name", [p.stem for p in sorted((CONF / "experiment").glob("*.yaml"))])
def test_every_experiment_composes_and_passes_the_checks(name: str, compose) -> None:
    cfg = compose(f"+experiment={name}")
    check_config(cfg)
    assert cfg.logger.experiment == name
