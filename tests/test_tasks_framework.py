"""The long-range tasks through the whole framework: configs, learning a small fixed batch,
what a run records, and the experiment sweeps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.commands.train import train
from seqexp.config.build import build_model, build_task
from seqexp.tasks.agreement import AgreementTask
from seqexp.tasks.copy import CopyTask
from seqexp.tasks.digits import DigitsTask
from seqexp.tasks.reber import ReberTask
from seqexp.tasks.temporal_order import TemporalOrderTask

CONF = Path(__file__).parents[1] / "conf"
TASKS = {
    "copy": CopyTask,
    "temporal_order": TemporalOrderTask,
    "agreement": AgreementTask,
    "digits": DigitsTask,
    "reber": ReberTask,
}
EXPERIMENTS = ("vanishing", "copy_memory", "agreement", "peephole_order", "permuted_digits")
"""The long-range experiments: each sweeps cells over lengths (other experiments are tested elsewhere)."""
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]
EVERY_TASK = sorted(path.stem for path in (CONF / "task").glob("*.yaml"))


@pytest.mark.parametrize("name", EVERY_TASK)
def test_a_tasks_data_is_a_function_of_its_seed(name: str, compose) -> None:
    task = build_task(compose(f"task={name}", *(["task.corpus_sentences=400"] if name == "lm" else [])))
    a, b, c = task.generate(64, 2), task.generate(64, 2), task.generate(64, 4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", TASKS)
def test_each_task_config_builds_its_task_with_its_length(name: str, compose) -> None:
    cfg = compose(f"task={name}")
    task = build_task(cfg)
    assert type(task) is TASKS[name] and cfg.task.name == name
    assert task.seq_len == cfg.task.seq_len
    assert (task.train_size, task.val_size) == (cfg.task.train_size, cfg.task.val_size)
    inputs, targets = task.generate(4, seed=0)
    model = build_model(cfg, task)
    prediction = model(inputs)
    assert set(task.metrics(prediction, targets)) >= {task.spec.metric}
    assert task.loss(prediction, targets).ndim == 0


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("copy", "task.seq_len=0", r"task.seq_len must be >= 1"),
        ("temporal_order", "task.num_markers=5", r"task.num_markers must be one of \[2, 3\]"),
        ("agreement", "task.seq_len=1", r"task.seq_len must be >= 3"),
        ("digits", "task.seq_len=32", r"task.seq_len must be 64 \(pixel by pixel\) or 8"),
        ("reber", "task.seq_len=5", r"task.seq_len must be >= 8"),
    ],
)
def test_a_bad_knob_fails_before_training_naming_the_key(name, bad, message, outputs, compose) -> None:
    with pytest.raises(ConfigError, match=message):
        train(compose(*TINY, f"task={name}", bad), outputs)
    assert not (outputs / "mlflow.db").exists()


FIT = {
    # task overrides, steps, and the loss of chance (copy: of the memoryless strategy, the baseline)
    "copy": (["task.seq_len=4", "task.num_symbols=3", "task.categories=4"], 200, 3 * math.log(4) / 10),
    "temporal_order": (["task.seq_len=12"], 100, math.log(4)),
    "agreement": (["task.seq_len=6"], 100, math.log(2)),
    "digits": (["task.seq_len=8"], 100, math.log(10)),
    "reber": (["task.seq_len=10"], 200, math.log(7)),
}


def small_run(
    compose: Callable[..., DictConfig], name: str, *overrides: str, steps: int, size: int, run_dir: Path
) -> tuple[dict, object]:
    cfg = compose(
        *QUIET,
        f"task={name}",
        *overrides,
        f"task.train_size={size}",
        "task.val_size=32",
        "data.batch_size=32",
        "model.hidden_size=32",
        "model.embedding_size=8",
        "optimizer.lr=0.01",
        f"trainer.max_steps={steps}",
        f"data.batches_per_epoch={steps}",
    )
    return train(cfg, run_dir).metrics, build_task(cfg).spec


@pytest.mark.parametrize("name", FIT)
def test_a_small_model_fits_a_small_fixed_batch_through_the_framework(
    name: str, tmp_path: Path, compose
) -> None:
    """One batch of 32 examples, every step: the training loss falls far below chance's, and
    the run logs the task's metric, its baseline and the solved flag."""
    overrides, steps, chance = FIT[name]
    metrics, spec = small_run(compose, name, *overrides, steps=steps, size=32, run_dir=tmp_path)
    assert metrics["train/loss"] < 0.2 * chance
    value = metrics[f"val/{spec.metric}"]
    assert metrics[f"val/{spec.metric}_baseline"] == pytest.approx(spec.baseline)
    assert metrics["val/solved"] == float(spec.solved(value))
    if name != "reber":  # even 32 examples carry over to new data (reber: next test)
        assert value > spec.baseline if spec.higher_is_better else value < spec.baseline


def test_an_lstm_learns_the_embedded_reber_grammar_and_its_long_range_symbol(tmp_path: Path, compose) -> None:
    metrics, spec = small_run(compose, "reber", "task.seq_len=20", steps=300, size=512, run_dir=tmp_path)
    assert metrics["val/string_accuracy"] == metrics["val/recall_accuracy"] == 1.0 > spec.baseline
    assert metrics["val/solved"] == 1.0
    assert metrics["val/loss"] < 0.5 < math.log(7), "near the grammar's own entropy per step"


def sweep(
    experiment_axes: Callable[[str], tuple[DictConfig, list[list[str]]]], name: str
) -> tuple[DictConfig, list[list[str]]]:
    """An experiment's config, and the overrides of every job its sweep declares, but for the seed
    (the seeds of a job build the same model)."""
    cfg, axes = experiment_axes(name)
    axes = [axis for axis in axes if not axis[0].startswith("seed=")]
    return cfg, [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_an_experiment_builds_and_records_to_the_experiments_name(
    name: str, compose, experiment_axes
) -> None:
    cfg, jobs = sweep(experiment_axes, name)
    assert cfg.logger.experiment == name and cfg.trainer.enable_progress_bar is False and cfg.threads == 1
    assert len(jobs) >= 4, "a question needs a sweep"
    assert any(job[0].startswith(("cell=", "cell.")) for job in jobs), "it sweeps cells, or a cell's knob"
    for job in jobs:
        job_cfg = compose(f"+experiment={name}", *job)
        task = build_task(job_cfg)
        model = build_model(job_cfg, task)
        assert model(task.generate(2, seed=0)[0]).shape[0] == 2
        assert job_cfg.logger.experiment == name
    lengths = {job_cfg for job in jobs for job_cfg in job if job_cfg.startswith("task.seq_len=")}
    assert len(lengths) >= 2, "each experiment sweeps the length"


def test_the_questions_have_their_experiments(experiment_axes) -> None:
    assert all((CONF / "experiment" / f"{name}.yaml").exists() for name in EXPERIMENTS)
    assert sweep(experiment_axes, "vanishing")[0].task.name == "adding"
    assert sweep(experiment_axes, "copy_memory")[0].task.name == "copy"
    order, axes = experiment_axes("peephole_order")
    assert order.task.name == "temporal_order" and order.cell.name == "lstm"
    swept = [axis[0].partition("=")[0] for axis in axes]
    assert swept == ["cell.forget_bias", "task.seq_len", "seed"], "forget bias here; peepholes: gers2002"


def test_an_experiment_job_leaves_an_mlflow_run_with_the_tasks_metrics(run_seqexp, records) -> None:
    """``seqexp -m +experiment=copy_memory`` narrowed to one tiny job on the command line."""
    run_seqexp(
        "-m",
        "+experiment=copy_memory",
        "hydra/launcher=basic",  # one job: no worker processes to start (or to leave behind)
        *TINY,
        "cell=lstm",
        "task.seq_len=4",
        "seed=0",
        "model.hidden_size=8",
    )
    experiment = records.get_experiment_by_name("copy_memory")
    [run] = [r for r in records.search_runs([experiment.experiment_id]) if "cell" in r.data.params]
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("lstm-uni-copy-T4-seed0")
    assert run.data.params["task.seq_len"] == "4" and run.data.params["task.num_symbols"] == "10"
    metrics = run.data.metrics
    assert {"val/xent", "val/recall_accuracy", "val/xent_baseline", "val/solved"} <= metrics.keys()
    assert metrics["val/xent_baseline"] == pytest.approx(10 * math.log(8) / 24)
    assert metrics["val/solved"] == float(metrics["val/xent"] < metrics["val/xent_baseline"] / 10)
