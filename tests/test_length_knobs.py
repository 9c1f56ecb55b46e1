"""Every task's length knob (``Task.length_key``, what ``seqexp-horizon`` varies) lengthens the
dependency its model must bridge, measured on the data it generates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hydra
import pytest
import torch
from torch import Tensor

from seqexp.config.build import build_task
from seqexp.config.location import CONF
from seqexp.tasks import Task
from seqexp.tasks.reber import PAD
from seqexp.tasks.tagging import INDEX, NAME_CUES, THING_CUES
from seqexp.tasks.temporal_order import END, X, Y


def adding(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first marked value to the second."""
    marked = inputs[..., 1].nonzero()[:, 1].view(-1, 2)
    return (marked[:, 1] - marked[:, 0]).float()


def agreement(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the subject (the second word) to the last, where the verb's number is predicted."""
    return torch.full((len(inputs),), float(inputs.shape[1] - 1 - 1))


def copy(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first symbol read to the step that writes it out."""
    written = (targets != task.blank).float().argmax(1)  # type: ignore[attr-defined]
    return written.float()


def reber(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the outer symbol (the second) to its return (the second-to-last of ``steps + 1``)."""
    steps = (inputs != PAD).sum(1)
    return (steps - 1 - 1).float()


def tagging(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the ambiguous word to the word that decides it."""
    ambiguous = targets[..., 1].float().argmax(1)
    cues = torch.tensor([INDEX[w] for w in (*NAME_CUES, *THING_CUES)])
    cue = torch.isin(inputs, cues).float().argmax(1)
    return (cue - ambiguous).float()


def temporal_order(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first relevant symbol to the end, where the order is classified."""
    first = ((inputs == X) | (inputs == Y)).float().argmax(1)
    end = (inputs == END).float().argmax(1)
    return (end - first).float()


DISTANCES: dict[str, tuple[list[str], Callable[[Task, Tensor, Tensor], Tensor]]] = {
    "adding": ([], adding),
    "agreement": ([], agreement),
    "copy": (["task.num_symbols=3"], copy),
    "reber": (["task.lengths=exact"], reber),
    "tagging": ([], tagging),
    "temporal_order": ([], temporal_order),
}
"""Each task whose length knob sets a dependency: the overrides it needs, and the distance each
example makes its model bridge."""
NO_KNOB = {"dates": "pads the source", "digits": "64 pixels or 8 rows", "lm": "a context window"}
"""Tasks whose lengths set no dependency distance."""


def test_every_task_is_checked() -> None:
    tasks = {path.stem for path in (CONF / "task").glob("*.yaml")}
    assert tasks == set(DISTANCES) | set(NO_KNOB)


@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_a_longer_length_knob_means_a_longer_dependency(name: str, compose) -> None:
    overrides, distance = DISTANCES[name]
    measured = []
    for length in (12, 24, 48):
        cfg = compose(f"task={name}", *overrides)
        key = build_task(cfg).length_key
        assert key is not None and key.startswith("task.") and key.removeprefix("task.") in cfg.task
        cfg = compose(f"task={name}", *overrides, f"{key}={length}")
        task = build_task(cfg)
        inputs, targets = task.generate(400, seed=length)
        measured.append(distance(task, inputs, targets).mean().item())
    assert measured[0] < measured[1] < measured[2], measured
    assert measured[2] - measured[0] >= (48 - 12) / 4, f"the distance grows with the length: {measured}"


def test_tagging_and_reber_distances_are_their_lengths_exactly(compose) -> None:
    tagging_task = build_task(compose("task=tagging", "task.lookahead=17"))
    assert tagging_task.length_key == "task.lookahead"
    assert set(tagging(tagging_task, *tagging_task.generate(200, seed=0)).tolist()) == {17.0}
    reber_task = build_task(compose("task=reber", "task.lengths=exact", "task.seq_len=40"))
    assert set(reber(reber_task, *reber_task.generate(200, seed=0)).tolist()) == {40.0 - 2}


@pytest.mark.parametrize("name", sorted(NO_KNOB))
def test_tasks_without_a_dependency_length_have_no_knob(name: str, compose) -> None:
    assert hydra.utils.get_class(compose(f"task={name}").task._target_).length_key is None


def test_classic_reber_sets_no_dependency_length(compose) -> None:
    """Its seq_len only bounds the grammar's lengths: the horizon needs task.lengths=exact."""
    assert build_task(compose("task=reber")).length_key is None
    assert Path(CONF / "task" / "reber.yaml").read_text().count("lengths: classic") == 1
