"""The experiments that reproduce a published figure (``conf/experiment/paper/``): each composes,
passes seqexp's checks and builds, records the figure (or the paper's finding) and where it was
published, and has its section, with its deviations, on the experiments' page."""

from __future__ import annotations

import math

import pytest
import torch

from seqexp.config.build import build_model, build_task
from seqexp.config.checking import check_config
from seqexp.config.location import CONF

PAPERS = sorted((CONF / "experiment" / "paper").glob("*.yaml"))
PAGE = CONF / "experiment" / "paper" / "README.md"


@pytest.mark.parametrize("path", PAPERS, ids=[p.stem for p in PAPERS])
def test_every_paper_experiment_builds_records_its_figure_and_has_its_section(path, compose) -> None:
    cfg = compose(f"+experiment=paper/{path.stem}")
    check_config(cfg)
    build_model(cfg, build_task(cfg))

    assert cfg.logger.experiment == f"paper_{path.stem}"
    assert cfg.paper.citation
    published = cfg.paper.get("sequences_to_solve")
    assert (published is not None and published > 0) or cfg.paper.get("finding"), (
        "it records the paper's figure, or, where the paper gives no count that could be checked, its finding"
    )
    assert f"`paper/{path.stem}`" in PAGE.read_text(), "its results and deviations are on the page"


def test_6a_is_the_papers_set_up_where_seqexp_can_express_it(compose) -> None:
    """Lengths 100-110, X/Y at 10-20 and 50-60, 4 classes, 2000 test sequences all right, and the
    1997 LSTM of 2 blocks of 2 cells: 8 gated rows per input (4 cells, 2 input and 2 output gates)."""
    cfg = compose("+experiment=paper/hochreiter1997_6a")
    task = build_task(cfg)
    model = build_model(cfg, task)

    assert (task.min_len, task.seq_len, task.windows) == (100, 110, [(10, 20), (50, 60)])
    assert task.spec.output_size == 4 and task.val_size == 2000 and not task.spec.solved(1999 / 2000)
    [[cell]] = model.stack.layers
    assert type(cell).__name__ == "LSTM1997Cell" and (cell.hidden_size, cell.block_size) == (4, 2)
    assert cell.W_a.shape == (4 + 2 + 2, 4)


def test_gers2002_is_the_papers_timing_comparison_paired_over_ten_seeds(compose, experiment_axes) -> None:
    """Both cells at the same ten seeds (the data and initial weights are the seed's:
    tests/test_tasks_spike_delay.py), delays F + I(n) with I(n) in {0..4}, every answer right."""
    cfg, axes = experiment_axes("paper/gers2002_timing")
    assert sorted(map(sorted, axes)) == [
        ["cell=lstm", "cell=peephole"],
        sorted(f"seed={seed}" for seed in range(10)),
    ]
    task = build_task(cfg)
    assert (task.min_delay, task.max_delay, task.spec.baseline) == (20, 24, 1 / 5)
    assert not task.spec.solved(0.998) and task.spec.solved(0.9995)


def test_arjovsky2016_copy_is_the_papers_task_and_its_loss_is_the_one_the_baseline_assumes(
    compose, experiment_axes
) -> None:
    """10 symbols of 8 categories, T = 100 blanks, length T + 20; the loss is the cross-entropy
    averaged over all T + 20 outputs, so the memoryless strategy (blanks, then uniform over the 8
    categories) scores exactly 10 ln 8 / (T + 20) = 0.173, the paper's baseline. LSTM of 40 units,
    tanh RNN of 80, RMSProp 1e-3 with decay 0.9, batches of 20, elementwise clipping at 1."""
    cfg, axes = experiment_axes("paper/arjovsky2016_copy")
    assert sorted(map(sorted, axes)) == [["cell=lstm", "cell=rnn"], sorted(f"seed={s}" for s in range(5))]
    task = build_task(cfg)
    assert (task.seq_len, task.num_symbols, task.categories, task.length) == (100, 10, 8, 120)
    assert task.spec.baseline == pytest.approx(10 * math.log(8) / 120)
    assert round(task.spec.baseline, 3) == 0.173

    _, targets = task.generate(64, seed=0)
    memoryless = torch.full((64, task.length, task.spec.output_size), -1e4)
    memoryless[:, :-10, task.blank] = 0.0  # blanks, certain, until the recall
    memoryless[:, -10:, : task.categories] = 0.0  # then uniform over the 8 categories
    assert task.loss(memoryless, targets).item() == pytest.approx(task.spec.baseline, rel=1e-5)

    for cell, hidden_size, nonlinearity in (("lstm", 40, None), ("rnn", 80, "tanh")):
        cfg = compose("+experiment=paper/arjovsky2016_copy", f"cell={cell}")
        model = build_model(cfg, build_task(cfg))
        assert model.stack.hidden_size == hidden_size
        assert cfg.cell.get("nonlinearity") == nonlinearity
    assert (cfg.optimizer.lr, cfg.optimizer.alpha, cfg.data.batch_size) == (0.001, 0.9, 20)
    assert (cfg.trainer.gradient_clip_val, cfg.trainer.gradient_clip_algorithm) == (1.0, "value")


@pytest.mark.parametrize(
    ("overrides", "cell", "nonlinearity", "scheme"),
    [
        ((), "rnn", "relu", "identity"),
        (("cell.nonlinearity=tanh", "init.scheme=default"), "rnn", "tanh", "default"),
        (("cell=lstm", "~cell.nonlinearity", "init.scheme=default"), "lstm", None, "default"),
    ],
    ids=["irnn", "tanh_rnn", "lstm"],
)
def test_le2015_runs_the_irnn_and_its_two_comparisons_at_100_units(
    compose, overrides, cell, nonlinearity, scheme
) -> None:
    """The config is the IRNN (ReLU, identity recurrent weights, zero biases); the page's two other
    commands give the tanh RNN and the LSTM; all 100 units, adding at T = 150, plain SGD, batches
    of 16, 1e5 training and 1e4 test sequences; the baseline of predicting 1 is 1/6 here."""
    cfg = compose("+experiment=paper/le2015_irnn_adding", *overrides)
    check_config(cfg)
    task = build_task(cfg)
    model = build_model(cfg, task)
    [[layer]] = model.stack.layers
    assert (cfg.cell.name, cfg.cell.get("nonlinearity"), cfg.init.scheme) == (cell, nonlinearity, scheme)
    assert model.stack.hidden_size == 100 and task.seq_len == 150
    assert (task.train_size, task.test_size, cfg.data.batch_size) == (100_000, 10_000, 16)
    assert (cfg.optimizer._target_, cfg.optimizer.momentum) == ("torch.optim.SGD", 0.0)
    assert task.spec.baseline == pytest.approx(1 / 6)
    if scheme == "identity":
        assert torch.equal(layer.W_a, torch.eye(100)) and not layer.b.any()
