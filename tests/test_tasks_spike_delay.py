"""Measuring spike delays: the targets are the delays, a hand-set timer solves it, the data are a
function of (seed, step), and the paper's experiment pairs its two cells on the same data and weights."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor

from seqexp.config.build import build_model, build_task
from seqexp.models.data import FreshBatches
from seqexp.tasks.spike_delay import IGNORE, TOLERANCE, SpikeDelayTask


def timer(inputs: Tensor, min_delay: int) -> Tensor:
    """The hand-set rule: at every step, the steps since the last spike before it, minus ``min_delay``."""
    spikes = inputs.squeeze(-1)
    since = torch.zeros_like(spikes)
    count = torch.zeros(len(spikes))
    for t in range(spikes.shape[1]):
        count = count + 1
        since[:, t] = count
        count = torch.where(spikes[:, t] > 0, torch.zeros_like(count), count)
    return (since - min_delay).unsqueeze(-1)


def test_each_target_is_the_delay_since_the_spike_before_beyond_the_shortest() -> None:
    task = SpikeDelayTask(min_delay=5, max_delay=9, intervals=3)
    inputs, targets = task.generate(500, seed=1)
    assert inputs.shape == (500, 4 * 9, 1) and targets.shape == (500, 4 * 9)
    for row, target in zip(inputs.squeeze(-1), targets, strict=True):
        spikes = row.nonzero().flatten()
        assert set(row.tolist()) == {0.0, 1.0} and len(spikes) == 4 and spikes[0] < 9
        scored = (target != IGNORE).nonzero().flatten()
        assert torch.equal(scored, spikes[1:]), "scored at every spike after the first, nowhere else"
        assert torch.equal(target[scored], (spikes.diff() - 5).float())
    delays = targets[targets != IGNORE]
    assert set(delays.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}


def test_a_hand_set_timer_solves_it_and_the_best_constant_scores_the_baseline() -> None:
    task = SpikeDelayTask(min_delay=20, max_delay=24, intervals=2)
    inputs, targets = task.generate(2000, seed=0)

    rule = task.metrics(timer(inputs, 20), targets)
    assert rule["accuracy"] == 1.0 and rule["mse"] == 0.0 and task.loss(timer(inputs, 20), targets) == 0.0
    assert task.spec.solved(rule["accuracy"].item())
    off_by_one = task.metrics(timer(inputs, 20) + 1, targets)
    assert off_by_one["accuracy"] == 0.0 and off_by_one["mse"] == 1.0
    for constant in (0.0, 2.0, 4.0):
        guess = task.metrics(torch.full_like(inputs, constant), targets)["accuracy"].item()
        assert guess == pytest.approx(task.spec.baseline, abs=0.03) and not task.spec.solved(guess)
    assert task.spec.baseline == 1 / 5 and TOLERANCE == 0.49


def test_steps_that_are_not_scored_change_neither_loss_nor_metrics() -> None:
    task = SpikeDelayTask()
    inputs, targets = task.generate(64, seed=2)
    prediction = timer(inputs, task.min_delay) + 0.3
    noisy = prediction.masked_fill((targets == IGNORE).unsqueeze(-1), 1e6)
    assert task.loss(noisy, targets) == pytest.approx(0.09)
    assert task.metrics(noisy, targets) == task.metrics(prediction, targets)


def test_the_data_are_a_function_of_the_seed_and_fresh_at_every_step() -> None:
    task = SpikeDelayTask()
    a, b, c = task.generate(64, 7), task.generate(64, 7), task.generate(64, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])

    def stream(seed: int) -> FreshBatches:
        return FreshBatches(task, 16, 4, seed, position=lambda: (0, 0), avoid=set())

    first, again, other = stream(3).batch(5), stream(3).batch(5), stream(4).batch(5)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], stream(3).batch(6)[0]), "a new batch at every step"


def test_a_longer_max_delay_is_a_longer_dependency() -> None:
    assert SpikeDelayTask.length_key == "task.max_delay"
    gaps = []
    for longest in (12, 24, 48):
        inputs, _ = SpikeDelayTask(min_delay=10, max_delay=longest).generate(400, seed=0)
        gaps.append(inputs.squeeze(-1).nonzero()[:, 1].view(-1, 2).diff().float().mean().item())
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] - gaps[0] > 15


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_delay": 0}, "task.min_delay must be >= 1"),
        ({"min_delay": 10, "max_delay": 10}, "task.max_delay must be >= 11, two delays at least"),
        ({"intervals": 0}, "task.intervals must be >= 1"),
        ({"solved_at": 1.0}, r"task.solved_at must be in \[chance 0.2, 1\)"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        SpikeDelayTask(**options)


def test_the_paper_experiment_pairs_its_cells_on_the_same_data_and_initial_weights(compose) -> None:
    """The same seed draws the same sequences for both cells and the same initial weights; the
    peepholes start at zero, so at step 0 both cells compute the same function."""
    built = {}
    for cell in ("lstm", "peephole"):
        cfg = compose("+experiment=paper/gers2002_timing", f"cell={cell}", "seed=3")
        pl.seed_everything(cfg.seed, verbose=False)
        task = build_task(cfg)
        built[cell] = task, build_model(cfg, task), task.examples("val", 8, 2 * cfg.seed + 1)
    (_, lstm, lstm_val), (_, peephole, peephole_val) = built["lstm"], built["peephole"]
    assert all(torch.equal(x, y) for x, y in zip(lstm_val, peephole_val, strict=True))
    shared = dict(lstm.named_parameters())
    own = {name: p for name, p in peephole.named_parameters() if name not in shared}
    assert sorted(name.rsplit(".", 1)[-1] for name in own) == ["p_f", "p_o", "p_u"]
    assert all(torch.equal(p, dict(peephole.named_parameters())[name]) for name, p in shared.items())
    assert all((p == 0).all() for p in own.values())
    with torch.no_grad():
        assert torch.allclose(lstm(lstm_val[0]), peephole(peephole_val[0]), atol=1e-6)
