"""Every config value checked before a run exists: a bad value anywhere is a config error naming
the key and what is allowed (exit status 2, no traceback, no MLflow run), all errors at once; and
any ``trainer.max_steps`` ends with a validation and a checkpoint of the final state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.commands.train import train
from seqexp.config.build import build_task
from seqexp.config.memory import check_fits, estimate
from seqexp.tasks.adding import AddingTask

BAD = {
    "seed=abc": r"seed must be an integer in \[0, 4294967295\] \(got 'abc'\)",
    "optimizer.lr=nan": r"optimizer.lr must be a finite number > 0 \(got nan\)",
    "optimizer.lr=-0.1": r"optimizer.lr must be a finite number > 0 \(got -0.1\)",
    "+optimizer.betas=[2.0,0.9]": r"optimizer \(adam\) cannot be built: ValueError: Invalid beta parameter",
    "+optimizer.eps=nan": r"optimizer.eps must be a finite number \(got nan\)",
    "trainer.gradient_clip_val=nan": r"trainer.gradient_clip_val must be null or a finite number >= 0",
    "trainer.gradient_clip_algorithm=norm2": r"gradient_clip_algorithm must be one of \['norm', 'value'\]",
    "scheduler=step scheduler.lr_scheduler.step_size=0": r"lr_scheduler.step_size must be a positive",
    "scheduler=step scheduler.lr_scheduler.gamma=nan": r"lr_scheduler.gamma must be a finite number",
    "scheduler=plateau scheduler.lr_scheduler.factor=2.0": r"lr_scheduler \(plateau\) fails on a trial",
    "scheduler=step scheduler.interval=batch": r"scheduler.interval must be one of \['step', 'epoch'\]",
    "sampling.temperature=0": r"sampling.temperature must be a finite number > 0 \(got 0\)",
    "sampling.count=-1": r"sampling.count must be a positive integer \(got -1\)",
    "sampling.reject_unk=maybe": r"sampling.reject_unk must be true or false \(got 'maybe'\)",
    "decoder.beam_width=0": r"decoder.beam_width must be a positive integer \(got 0\)",
    "decoder.length_penalty=inf": r"decoder.length_penalty must be a finite number >= 0 \(got inf\)",
    "logger.name=mlfow": r"logger.name must be one of \['mlflow', 'none'\] \(got 'mlfow'\)",
    "+trainer.max_stepz=3": r"trainer.max_stepz is not a keyword argument .*did you mean max_steps",
    "trainer.log_every_n_steps=0": r"trainer.log_every_n_steps must be a positive integer \(got 0\)",
    "trainer.deterministic=sometimes": r"trainer.deterministic must be one of \[True, False, 'warn'\]",
    "trainer.enable_progress_bar=3": r"trainer.enable_progress_bar must be true or false \(got 3\)",
    "trainer.accelerator=xpu": r"trainer.\* .*invalid accelerator name: `accelerator='xpu'`",
    "trainer.devices=abc": r"trainer.\* .*`devices` selected with `CPUAccelerator` should be an int > 0",
    "task.seq_len=1000000000": r"this run needs about .* GiB \(the data .* GiB, .*\) but .* GiB of memory is",
}


def no_runs(outputs: Path, records: MlflowClient) -> bool:
    if not (outputs / "mlflow.db").exists():
        return True
    return not records.search_runs([e.experiment_id for e in records.search_experiments()])


@pytest.mark.parametrize(("overrides", "message"), BAD.items(), ids=BAD.keys())
def test_a_bad_value_is_refused_with_exit_2_naming_the_key_before_a_run_exists(
    overrides, message, outputs, capsys, run_seqexp, records
) -> None:
    with pytest.raises(SystemExit) as exit:
        run_seqexp(*TINY, *overrides.split())

    assert exit.value.code == 2
    out = capsys.readouterr()
    said = " ".join(out.out.split())
    assert "bad config" in said
    assert re.search(message, said), said
    assert "Traceback" not in out.out + out.err
    assert no_runs(outputs, records), "no MLflow run was created"


def test_every_problem_of_a_config_is_reported_at_once(outputs, compose) -> None:
    with pytest.raises(ConfigError) as error:
        train(
            compose(*TINY, "seed=-1", "optimizer.lr=nan", "sampling.count=0", "trainer.log_every_n_steps=0"),
            outputs,
        )
    message = str(error.value)
    assert message.startswith("4 problems:")
    for key in ("seed", "optimizer.lr", "sampling.count", "trainer.log_every_n_steps"):
        assert f"\n  {key} must be" in message


def test_the_memory_estimate_grows_with_the_sequence_and_refuses_what_does_not_fit(compose) -> None:
    cfg = compose(*TINY)
    small = sum(estimate(cfg, build_task(cfg)).values())
    task = build_task(compose(*TINY, "task.seq_len=600"))
    assert sum(estimate(cfg, task).values()) == pytest.approx(100 * small, rel=0.05)
    check_fits(cfg, task, available=10**9)
    with pytest.raises(
        ConfigError, match=r"needs about 0.0\d+ GiB \(the data .*\) but 0.000977 GiB of memory is available"
    ):
        check_fits(cfg, task, available=2**20)


class TenTimesLonger(AddingTask):
    """A task whose inputs are longer than its ``seq_len``, and says so."""

    @property
    def steps(self) -> int:
        return 10 * self.seq_len


def test_the_memory_estimate_counts_the_tasks_own_length(compose) -> None:
    cfg = compose(*TINY)
    longer = estimate(cfg, TenTimesLonger(seq_len=6, train_size=64, val_size=32))
    assert longer == estimate(cfg, AddingTask(seq_len=60, train_size=64, val_size=32))


def test_any_max_steps_ends_with_a_validation_and_a_checkpoint_of_the_final_state(
    outputs, compose, records
) -> None:
    result = train(compose(*TINY, "trainer.max_steps=7"), outputs / "run")

    steps = [m.step for m in records.get_metric_history(result.run_id, "val/loss")]
    assert steps == [2, 5, 6], (
        "after each epoch of 3 batches, then the final state (at the last batch's step)"
    )
    last = torch.load(outputs / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 7
    assert [m.step for m in records.get_metric_history(result.run_id, "train/loss")] == list(range(7))
