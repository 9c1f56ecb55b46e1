"""Every task's length knob (``Task.length_key``, what ``seqexp-horizon`` varies) lengthens the
dependency its model must bridge, measured on the data it generates. The tasks are the options of
the ``task`` config group, found as Hydra finds them: a task added as a YAML is checked with no edit
here (its dependency is measured where its class, or a class it derives from, has a measure)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor

from seqexp.config.build import build_task
from seqexp.config.compose import composed, options
from seqexp.config.location import CONF
from seqexp.tasks import Task
from seqexp.tasks.adding import AddingTask
from seqexp.tasks.adding1997 import Adding1997Task
from seqexp.tasks.agreement import AgreementTask
from seqexp.tasks.copy import CopyTask
from seqexp.tasks.dates import DatesTask
from seqexp.tasks.digits import DigitsTask
from seqexp.tasks.lm import LanguageModelTask
from seqexp.tasks.parity import PAD as PARITY_PAD
from seqexp.tasks.parity import ParityTask
from seqexp.tasks.reber import PAD, ReberTask
from seqexp.tasks.recall import IGNORE, RecallTask
from seqexp.tasks.selective_copy import SelectiveCopyTask
from seqexp.tasks.spike_delay import SpikeDelayTask
from seqexp.tasks.tagging import INDEX, NAME_CUES, THING_CUES, TaggingTask
from seqexp.tasks.temporal_order import END, TemporalOrderTask, X, Y

LENGTHS = (24, 48, 96)
CONFIGS = {name: (f"task={name}",) for name in options("task")} | {
    "reber_exact": ("task=reber", "task.lengths=exact"),
}
"""Every option of the ``task`` group, and the variants whose knob only an override turns on."""


@cache
def built(*overrides: str) -> Task:
    """The task ``seqexp OVERRIDES`` would train on (built once per module: lm reads a corpus)."""
    return build_task(composed(list(overrides)))


def adding(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first marked value to the second."""
    marked = inputs[..., 1].nonzero()[:, 1].view(-1, 2)
    return (marked[:, 1] - marked[:, 0]).float()


def adding1997(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first value marked 1 to the sequence's end (the last step: sequences are left-padded)."""
    first = (inputs[..., 1] == 1).float().argmax(1)
    return (inputs.shape[1] - 1 - first).float()


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


def parity(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first bit to the last, where the parity is read."""
    return (inputs != PARITY_PAD).sum(1).float()


def recall(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From each key's pair to its query, over the queries."""
    queried = (targets != IGNORE).nonzero()
    rows, steps = queried[:, 0], queried[:, 1]
    paired = (inputs[rows, : steps.min()] == inputs[rows, steps][:, None]).float().argmax(1)
    return (steps - paired).float()


def selective_copy(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From the first scattered token to the step that writes it out."""
    first = (inputs != task.blank).float().argmax(1)  # type: ignore[attr-defined]
    return (inputs.shape[1] - task.num_tokens - first).float()  # type: ignore[attr-defined]


def spike_delay(task: Task, inputs: Tensor, targets: Tensor) -> Tensor:
    """From each spike to the next, where its delay is read, over the delays."""
    spikes = inputs.squeeze(-1).nonzero()[:, 1].view(len(inputs), -1)
    return spikes.diff().flatten().float()


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


MEASURES: dict[type[Task], Callable[[Task, Tensor, Tensor], Tensor]] = {
    AddingTask: adding,
    Adding1997Task: adding1997,
    AgreementTask: agreement,
    CopyTask: copy,
    ParityTask: parity,
    RecallTask: recall,
    SelectiveCopyTask: selective_copy,
    SpikeDelayTask: spike_delay,
    ReberTask: reber,
    TaggingTask: tagging,
    TemporalOrderTask: temporal_order,
}
"""The distance each example makes its model bridge, by task class (a subclass is measured as the
class it derives from)."""
NO_KNOB = {
    DatesTask: "pads the source",
    DigitsTask: "64 pixels or 8 rows",
    LanguageModelTask: "a context window",
}
"""Tasks whose lengths set no dependency distance."""


def measure(task: Task) -> Callable[[Task, Tensor, Tensor], Tensor] | None:
    return next((MEASURES[cls] for cls in type(task).__mro__ if cls in MEASURES), None)


def test_every_task_yaml_is_an_option() -> None:
    assert options("task") == sorted(path.stem for path in (CONF / "task").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_length_knob_is_an_integer_task_key_that_changes_the_data(name: str, compose) -> None:
    cfg = compose(*CONFIGS[name])
    key = built(*CONFIGS[name]).length_key
    if key is None:
        return
    assert key.startswith("task.") and isinstance(OmegaConf.select(cfg, key), int), key
    inputs = [built(*CONFIGS[name], f"{key}={length}").generate(8, seed=0)[0] for length in LENGTHS]
    assert all(a.shape != b.shape or not torch.equal(a, b) for a, b in pairwise(inputs)), key


WITH_KNOB = sorted(name for name in CONFIGS if built(*CONFIGS[name]).length_key is not None)


@pytest.mark.parametrize("name", WITH_KNOB)
def test_a_longer_length_knob_means_a_longer_dependency(name: str) -> None:
    task = built(*CONFIGS[name])
    key, distance = task.length_key, measure(task)
    assert distance is not None, f"add a measure of {type(task).__name__}'s dependency to MEASURES"
    measured = []
    for length in LENGTHS:
        task = built(*CONFIGS[name], f"{key}={length}")
        inputs, targets = task.generate(400, seed=length)
        measured.append(distance(task, inputs, targets).mean().item())
    assert measured[0] < measured[1] < measured[2], measured
    growth = (LENGTHS[-1] - LENGTHS[0]) / 4
    assert measured[2] - measured[0] >= growth, f"the distance grows with the length: {measured}"


def test_tagging_and_reber_distances_are_their_lengths_exactly(compose) -> None:
    tagging_task = build_task(compose("task=tagging", "task.lookahead=17"))
    assert tagging_task.length_key == "task.lookahead"
    assert set(tagging(tagging_task, *tagging_task.generate(200, seed=0)).tolist()) == {17.0}
    reber_task = build_task(compose("task=reber", "task.lengths=exact", "task.seq_len=40"))
    assert set(reber(reber_task, *reber_task.generate(200, seed=0)).tolist()) == {40.0 - 2}


@pytest.mark.parametrize("task_class", NO_KNOB, ids=lambda cls: cls.__name__)
def test_tasks_without_a_dependency_length_have_no_knob(task_class: type[Task]) -> None:
    assert task_class.length_key is None, NO_KNOB[task_class]


def test_classic_reber_sets_no_dependency_length(compose) -> None:
    """Its seq_len only bounds the grammar's lengths: the horizon needs task.lengths=exact."""
    assert build_task(compose("task=reber")).length_key is None
    assert Path(CONF / "task" / "reber.yaml").read_text().count("lengths: classic") == 1
