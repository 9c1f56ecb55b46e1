"""A run's data: fresh training batches, kept apart from a validation and a test set, the same again
on a resumed run; the test split reported on the selected checkpoint; the data scheme recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig

from seqexp.commands import train as train_module
from seqexp.commands.rerun import data_scheme_change
from seqexp.commands.train import RunResult, run_job, train
from seqexp.config.build import build_model, build_task
from seqexp.models.data import DATA_SCHEME, TaskData, derived_seed, example_keys, kept_apart
from seqexp.models.sequence import VALIDATION_KEY
from seqexp.tasks.copy import CopyTask
from seqexp.tasks.lm import LanguageModelTask
from seqexp.tasks.reber import ReberTask

FRESH = {
    "adding": ["task.seq_len=8"],
    "copy": ["task.seq_len=5"],
    "temporal_order": ["task.seq_len=20"],
    "agreement": ["task.seq_len=8"],
    "reber": ["task.seq_len=12"],
    "tagging": ["task.seq_len=5"],
}
"""The tasks that draw a fresh training batch at every step, at small sizes."""
LARGE_SPACE = ("adding", "copy", "temporal_order", "agreement", "tagging")
"""Those whose inputs, at these sizes, are too many for a few hundred examples to repeat."""
QUIET = ["threads=1", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]
RUN = [
    *QUIET,
    "task.seq_len=6",
    "task.val_size=32",
    "task.test_size=48",
    "data.batch_size=16",
    "model.hidden_size=8",
    "trainer.max_steps=6",
    "data.batches_per_epoch=2",
]
"""A tiny run on fresh data: three validations, three checkpoints."""


def set_up(compose: Callable[..., DictConfig], name: str, seed: int = 0, size: int = 64) -> TaskData:
    cfg = compose(f"task={name}", *FRESH[name], "task.val_size=200", "task.test_size=200")
    data = TaskData(build_task(cfg), batch_size=size, batches_per_epoch=4, seed=seed)
    data.setup("fit")
    return data


def same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", FRESH)
def test_a_fresh_batch_is_a_function_of_seed_step_and_rank(name: str, compose) -> None:
    data, again, other = set_up(compose, name), set_up(compose, name), set_up(compose, name, seed=1)
    assert build_task(compose(f"task={name}")).train_size is None, "fresh data is the default"
    assert data.train is None and data.fresh is not None
    batch = data.fresh.batch(3)
    assert same(batch, again.fresh.batch(3)), "the same seed and step: the same batch"
    assert batch[0].shape[0] == 64
    assert not same(batch, data.fresh.batch(4)), "another step: another batch"
    assert not same(batch, other.fresh.batch(3)), "another seed: another batch"
    assert not same(batch, data.fresh.batch(3, rank=1)), "another rank: another batch"


@pytest.mark.parametrize("name", LARGE_SPACE)
def test_fresh_batches_never_hold_a_validation_or_test_example(name: str, compose) -> None:
    data = set_up(compose, name)
    held_out = set(example_keys(data.val.tensors)) | set(example_keys(data.test.tensors))
    assert len(held_out) == 400, "validation and test share no example"
    seen = {key for step in range(50) for key in example_keys(data.fresh.batch(step))}
    assert not seen & held_out
    assert data.overlap["data/val_overlap"] == data.overlap["data/test_overlap"] == 0.0


class ManyCopies(CopyTask):
    """Copying 3 symbols of 4 categories (64 inputs), as if the inputs were countless."""

    def distinct_inputs(self) -> float:
        return float("inf")


def test_examples_that_a_large_task_holds_out_are_drawn_again_for_training() -> None:
    """With only 64 inputs, training would meet the 16 held-out ones at once; they are redrawn."""
    task = ManyCopies(seq_len=4, num_symbols=3, categories=4, val_size=8, test_size=8)
    data = TaskData(task, batch_size=32, batches_per_epoch=4, seed=0)
    data.setup("fit")
    held_out = set(example_keys(data.val.tensors)) | set(example_keys(data.test.tensors))
    assert not set(example_keys(data.test.tensors)) & set(example_keys(data.val.tensors))
    batches = [data.fresh.batch(step) for step in range(20)]
    assert all(len(x) == 32 for x, _ in batches)
    assert not {key for batch in batches for key in example_keys(batch)} & held_out
    plain = CopyTask(seq_len=4, num_symbols=3, categories=4).examples(
        "train", 640, derived_seed(0, 1, 0, 0, 0)
    )
    assert set(example_keys(plain)) & held_out, "without keeping them apart, training would meet them"


def test_kept_apart_replaces_what_it_drops_from_the_next_draws() -> None:
    x = torch.arange(6).view(6, 1)
    avoid = set(example_keys((x[[1, 4]], x[[1, 4]])))
    draws = []

    def draw(n: int, attempt: int) -> tuple[torch.Tensor, torch.Tensor]:
        draws.append((n, attempt))
        fresh = torch.arange(100 * attempt, 100 * attempt + n).view(n, 1)
        return fresh, fresh

    kept, targets = kept_apart((x, x), avoid, draw)
    assert kept.flatten().tolist() == [0, 2, 3, 5, 100, 101] and torch.equal(kept, targets)
    assert draws == [(2, 1)]


def test_a_small_task_measures_its_overlap_instead_of_hiding_it() -> None:
    task = ReberTask(seq_len=10, val_size=100, test_size=100)
    assert task.distinct_inputs() == 18
    data = TaskData(task, batch_size=64, batches_per_epoch=4, seed=0)
    data.setup("fit")
    val_keys = example_keys(data.val.tensors)
    sample = {key for step in range(157) for key in example_keys(data.fresh.batch(step))}
    assert data.overlap["data/overlap_sample"] == 157 * 64
    assert data.overlap["data/val_overlap"] == sum(key in sample for key in val_keys) / 100 > 0.9
    assert data.overlap["data/test_overlap"] > 0.9


def test_a_fixed_training_set_is_the_one_it_always_was(compose) -> None:
    """``task.train_size`` an int: the examples of seed ``2·seed``, cycled, as before fresh data."""
    cfg = compose("task=adding", "task.train_size=100", "task.val_size=20")
    data = TaskData(build_task(cfg), batch_size=10, batches_per_epoch=4, seed=3)
    data.setup("fit")
    assert data.fresh is None
    assert same(data.train.tensors, build_task(cfg).generate(100, 6))
    assert same(data.val.tensors, build_task(cfg).generate(20, 7))


def test_an_epoch_of_fresh_batches_starts_at_the_trainers_step(compose) -> None:
    """What a resumed run sees: the batches from its step on, as an uninterrupted run saw them."""
    data = set_up(compose, "copy", size=8)
    data.fresh.position = lambda: (5, 0)
    assert all(same(batch, data.fresh.batch(5 + k)) for k, batch in enumerate(data.fresh))
    assert len(list(data.fresh)) == len(data.fresh) == 4


def test_the_language_models_three_parts_share_no_token() -> None:
    task = LanguageModelTask(seq_len=8, level="word", corpus_sentences=300)
    parts = list(task.splits.values())
    whole = torch.cat([part[1:] for part in parts])  # each part starts with its own <EOS>
    assert [len(p) - 1 for p in parts] == pytest.approx(
        [0.8 * len(whole), 0.1 * len(whole), 0.1 * len(whole)], abs=1
    )
    assert all(len(set(part.tolist())) > 1 for part in parts)
    data = TaskData(task, batch_size=16, batches_per_epoch=2, seed=0)
    data.setup("fit")
    assert 0 <= data.overlap["data/val_overlap"] <= 1 and data.overlap["data/overlap_sample"] == 10_000


def fresh_run(
    compose: Callable[..., DictConfig], run_dir: Path, *overrides: str, resume: bool = False
) -> RunResult:
    cfg = compose(*RUN, "logger=none", "task=copy", "task.seq_len=4", *overrides)
    return train(cfg, run_dir, resume_run="resumed" if resume else None)


def test_a_resumed_run_on_fresh_data_ends_as_an_uninterrupted_one(tmp_path: Path, compose) -> None:
    whole = fresh_run(compose, tmp_path / "whole")
    fresh_run(compose, tmp_path / "halves", "trainer.max_steps=2")
    resumed = fresh_run(compose, tmp_path / "halves", resume=True)
    for key in ("train/loss", "val/loss", "val/xent", "test/loss", "test/xent"):
        assert resumed.metrics[key] == whole.metrics[key], key


def test_a_run_tests_its_selected_checkpoint_and_reports_its_validation(
    outputs: Path, run_seqexp, records, compose
) -> None:
    """``task=reber`` on fresh data: ``test/…`` of the checkpoint best on ``val/loss``, computed
    once; the overlap of a small task; the data scheme tag."""
    run_seqexp(*RUN, "task=reber", "task.seq_len=10", "optimizer.lr=1.0")
    [run] = records.search_runs([records.get_experiment_by_name("reber").experiment_id])
    metrics, run_id = run.data.metrics, run.info.run_id
    assert run.data.tags["seqexp.data_scheme"] == DATA_SCHEME
    assert {"test/loss", "test/string_accuracy", "test/recall_accuracy", "test/solved"} <= metrics.keys()
    assert {"train/string_accuracy", "train/recall_accuracy", "train/loss"} <= metrics.keys()
    assert metrics["test/solved"] == float(metrics["test/string_accuracy"] > 0.95)
    assert [m.step for m in records.get_metric_history(run_id, "test/loss")] == [6], "once, at the end"
    assert metrics["data/overlap_sample"] == 6 * 16 and metrics["data/val_overlap"] > 0.5

    # Validation logs at the step before the checkpoint's (Lightning counts the step as done later).
    history = {m.step + 1: m.value for m in records.get_metric_history(run_id, "val/loss")}
    best_step = min(history, key=history.get)
    assert best_step < 6, (
        "at this learning rate validation gets worse: the selected checkpoint is not the last"
    )
    [checkpoint] = (outputs / "runs").glob(f"*/checkpoints/epoch=*-step={best_step}.ckpt")
    saved = torch.load(checkpoint, weights_only=True)
    accuracy = {m.step + 1: m.value for m in records.get_metric_history(run_id, "val/recall_accuracy")}
    assert saved[VALIDATION_KEY]["val/recall_accuracy"] == pytest.approx(accuracy[best_step])
    assert saved[VALIDATION_KEY]["val/loss"] == pytest.approx(history[best_step]) != metrics["val/loss"]

    cfg = compose(*RUN, "task=reber", "task.seq_len=10")
    model = build_model(cfg, build_task(cfg))
    model.load_state_dict(saved["state_dict"])
    data = TaskData(model.task, 16, 2, seed=0)
    data.setup("test")
    model.eval()
    with torch.no_grad():
        losses = [model.task.loss(model(x), y) for x, y in data.test_dataloader()]  # of 16 each
        test_loss = float(torch.stack(losses).mean())
    assert metrics["test/loss"] == pytest.approx(test_loss, rel=1e-5), (
        "test/loss is the selected checkpoint's"
    )


def test_a_sweeper_gets_the_selected_checkpoints_validation_metric(monkeypatch, tmp_path: Path) -> None:
    selected = RunResult({"val/mse": 0.3, "test/mse": 0.1}, "val/mse", None, {"val/mse": 0.2})
    monkeypatch.setattr(train_module, "train", lambda cfg, run_dir: selected)
    hydra = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(tmp_path)), mode=None)
    monkeypatch.setattr(train_module.HydraConfig, "get", staticmethod(lambda: hydra))
    assert run_job(DictConfig({})) == 0.2, "neither the last validation nor the test metric"


def test_a_record_without_the_data_scheme_tag_was_drawn_by_scheme_1() -> None:
    assert data_scheme_change({"seqexp.data_scheme": DATA_SCHEME}) is None
    note = data_scheme_change({})
    assert note is not None and "data scheme 1 (one fixed training set" in note
    assert f"scheme {DATA_SCHEME} (a fresh training batch at every step" in note
    assert "may differ because of the data alone" in note
