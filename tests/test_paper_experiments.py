"""The experiments that reproduce a published figure (``conf/experiment/paper/``): each composes,
passes seqexp's checks and builds, records the figure (or the paper's finding) and where it was
published, and has its section, with its deviations, on the experiments' page."""

from __future__ import annotations

import pytest

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
