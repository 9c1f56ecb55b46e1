"""``seqexp`` end to end: what a run and a sweep leave in MLflow, and bad configs refused early."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.commands.rerun import rerun
from seqexp.commands.train import train
from seqexp.models.data import DATA_SCHEME


def runs(records: MlflowClient, experiment: str = "adding") -> list[Run]:
    """The training runs (not a sweep's parent run) of ``experiment``."""
    experiment_id = records.get_experiment_by_name(experiment).experiment_id
    return records.search_runs([experiment_id], "tags.`seqexp.headline` != ''")


def test_a_run_leaves_a_finished_mlflow_record_with_params_metrics_and_config(run_seqexp, records) -> None:
    run_seqexp(*TINY, "cell=gru", "topology=bi")

    [run] = runs(records)
    assert run.info.status == "FINISHED"
    assert "MLFLOW_TRACKING_URI" not in os.environ, (
        "later runs and child processes are not sent to this store"
    )
    assert run.info.run_name == "gru-bi-adding-T6-seed0"
    params = run.data.params
    assert {k: params[k] for k in ("cell", "topology", "task", "optimizer")} == {
        "cell": "gru",
        "topology": "bi",
        "task": "adding",
        "optimizer": "adam",
    }
    assert params["model.hidden_size"] == "8"
    assert params["topology.bidirectional"] == "True"
    assert params["trainer.gradient_clip_algorithm"] == "norm"
    metrics = run.data.metrics
    assert {"train/loss", "val/loss", "val/mse", "val/mse_baseline", "val/solved"} <= metrics.keys()
    assert metrics["val/mse_baseline"] == pytest.approx(1 / 6)
    assert metrics["val/solved"] == float(metrics["val/mse"] < 0.01)
    assert {"train/mse", "test/loss", "test/mse", "test/mse_baseline", "test/solved"} <= metrics.keys()
    assert metrics["test/solved"] == float(metrics["test/mse"] < 0.01)
    assert run.data.tags["seqexp.data_scheme"] == DATA_SCHEME
    assert run.data.tags["seqexp.overrides"].endswith("cell=gru topology=bi")
    assert "seqexp.git_commit" in run.data.tags

    artifacts = records.list_artifacts(run.info.run_id)
    assert "config.yaml" in [a.path for a in artifacts]
    saved = yaml.safe_load(Path(records.download_artifacts(run.info.run_id, "config.yaml")).read_text())
    assert saved["cell"]["name"] == "gru" and saved["task"]["seq_len"] == 6
    checkpoints = records.list_artifacts(run.info.run_id, "checkpoints")
    assert [a.path for a in checkpoints] == ["checkpoints/epoch=1-step=6.ckpt"], (
        "the best checkpoint is an artifact"
    )


def test_a_rerun_of_a_record_from_before_the_data_scheme_says_its_data_differ(
    outputs, capsys, run_seqexp, records
) -> None:
    """A record without ``seqexp.data_scheme`` drew its data by scheme 1."""
    run_seqexp(*TINY)
    [run] = runs(records)
    records.delete_tag(run.info.run_id, "seqexp.data_scheme")
    capsys.readouterr()
    rerun(records, run.info.run_id, outputs)
    out = " ".join(capsys.readouterr().out.split())
    assert "drew its data by seqexp's data scheme 1 (one fixed training set" in out
    assert f"this rerun draws them by scheme {DATA_SCHEME} (a fresh training batch" in out


def test_a_two_job_multirun_leaves_two_runs_whose_params_differ(run_seqexp, records) -> None:
    run_seqexp("-m", *TINY, "cell=rnn,peephole")

    recorded = runs(records)
    assert sorted(r.data.params["cell"] for r in recorded) == ["peephole", "rnn"]
    assert all(r.info.status == "FINISHED" for r in recorded)
    assert sorted(r.data.params["cell._target_"] for r in recorded) == [
        "seqexp.cells.PeepholeLSTMCell",
        "seqexp.cells.RNNCell",
    ]
    assert {r.data.tags["seqexp.job"] for r in recorded} == {"0", "1"}


def test_an_lstm_learns_the_adding_problem(outputs, compose) -> None:
    """Through the whole framework: far below the baseline on short sequences, in seconds."""
    cfg = compose(
        "task.seq_len=10",
        "task.train_size=2048",
        "model.hidden_size=32",
        "trainer.max_steps=400",
        "data.batches_per_epoch=400",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "optimizer.lr=0.01",
    )
    result = train(cfg, outputs)
    assert result.metrics["val/mse"] < 0.01 < 1 / 6
    assert result.metrics["val/solved"] == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden_size=0", r"model.hidden_size must be a positive integer \(got 0\)"),
        ("data.batch_size=-3", r"data.batch_size must be a positive integer \(got -3\)"),
        ("trainer.max_steps=0", r"trainer.max_steps must be a positive integer"),
        ("topology.num_layers=0", r"topology.num_layers must be >= 1 \(got 0\)"),
        ("topology.dropout=1.5", r"topology.dropout must be in \[0, 1\)"),
        ("task.seq_len=1", r"task.seq_len must be >= 2"),
        ("task.train_size=0", r"task.train_size must be >= 1"),
        ("optimizer.lr=0", r"optimizer.lr must be a finite number > 0 \(got 0\)"),
        ("optimizer.lr=-0.1", r"optimizer.lr must be a finite number > 0 \(got -0.1\)"),
        (
            "trainer.gradient_clip_algorithm=norm2",
            r"gradient_clip_algorithm must be one of \['norm', 'value'\]",
        ),
        ("model.impl=fast", r"model.impl must be one of \['auto', 'native', 'custom', 'loop'\]"),
        ("cell.nonlinearity=sigmoid", r"cell.nonlinearity must be one of \['relu', 'tanh'\]"),
    ],
)
def test_bad_values_fail_before_training_naming_the_key(override, message, outputs, compose) -> None:
    cell = ["cell=rnn"] if "nonlinearity" in override else []
    with pytest.raises(ConfigError, match=message):
        train(compose(*TINY, *cell, override), outputs)
    assert not (outputs / "mlflow.db").exists(), "nothing was recorded for a config that cannot run"


@pytest.mark.parametrize(
    ("override", "options"),
    [
        ("cell=lstmm", ["gru", "gru_simple", "lstm", "peephole", "rnn"]),
        ("topology=up", ["bi", "deep", "deep_bi", "uni"]),
        ("task=adder", ["adding"]),
        ("optimizer=adagrad", ["adam", "adamw", "rmsprop", "sgd"]),
    ],
)
def test_unknown_options_are_refused_listing_the_valid_ones(override, options, capsys, run_seqexp) -> None:
    with pytest.raises(SystemExit) as exit:
        run_seqexp(*TINY, override)
    assert exit.value.code != 0
    err = capsys.readouterr().err
    group, name = override.split("=")
    assert f"Could not find '{group}/{name}'" in err
    assert all(f"\t{option}\n" in err for option in options)
    assert "Traceback" not in err


def test_the_command_reports_a_bad_value_without_a_traceback(capsys, run_seqexp) -> None:
    with pytest.raises(SystemExit) as exit:
        run_seqexp(*TINY, "task.seq_len=1")
    assert exit.value.code == 2
    out = capsys.readouterr()
    assert "bad config" in out.out and "task.seq_len must be >= 2" in out.out
    assert "Traceback" not in out.out + out.err
