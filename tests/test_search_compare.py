"""seqexp-compare: the configs it compares, what it reads from tuning, its table, and (pytest -m
slow) a whole comparison of two cells on a tiny task."""

from __future__ import annotations

import csv
import math
from argparse import Namespace

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from sizes import TINY

from seqexp.commands.compare import main, nest, rename, seeds_to_solve, show
from seqexp.config.compose import combinations
from seqexp.search.compare import (
    SAFE_LENGTH,
    Compared,
    headline_metrics,
    safe,
    seed_name,
    summary,
    trial_names,
    tuned,
)
from seqexp.search.trials import RUN
from seqexp.tracking.intervals import estimate_mean, estimate_positive


def test_each_combination_of_the_swept_values_is_a_config_labelled_by_them() -> None:
    found = combinations(["cell=rnn,gru", "task=adding", "topology=uni,bi"])
    assert [label for label, _ in found] == [
        "cell=rnn topology=uni",
        "cell=rnn topology=bi",
        "cell=gru topology=uni",
        "cell=gru topology=bi",
    ]
    assert found[1][1] == ["cell=rnn", "task=adding", "topology=bi"]


def test_a_config_with_nothing_swept_is_labelled_by_all_its_overrides() -> None:
    assert combinations(["+callbacks.x={a:1}", "cell=gru"]) == [
        ("+callbacks.x={a:1} cell=gru", ["+callbacks.x={a:1}", "cell=gru"])
    ]
    assert combinations([]) == [("config", [])]
    assert [label for label, _ in combinations(["+seed=1,2", "cell=gru"])] == ["+seed=1", "+seed=2"]


def test_a_long_label_makes_a_short_directory_and_study_name_that_still_tells_configs_apart() -> None:
    """A config that sweeps nothing is labelled by every override; its directory name must stay
    within the file system's 255 bytes (seqexp-compare failed with "File name too long")."""
    shared = [f"trainer.option_{i}=value_{i}" for i in range(40)]
    irnn, rnn = (
        combinations([*shared, *tail])[0][0] for tail in (["init.scheme=identity"], ["init.scheme=default"])
    )
    assert len(irnn) > 255
    assert len(safe(irnn)) <= SAFE_LENGTH and safe(irnn) != safe(rnn)
    assert safe("cell=gru topology=bi") == "cell_gru_topology_bi"


def test_the_table_states_the_budget_the_choice_and_the_test_metric_with_its_interval() -> None:
    study = optuna.create_study()
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    for value, state, x in [
        (0.5, "COMPLETE", 0.01),
        (0.2, "COMPLETE", 0.003),
        (None, "PRUNED", 0.09),
        (None, "FAIL", 0.1),
    ]:
        study.add_trial(
            create_trial(
                state=TrialState[state],
                value=value,
                params={"optimizer.lr": x},
                distributions={"optimizer.lr": lr},
            )
        )
    gru = Compared("cell=gru", ["cell=gru"], "s", test=[0.1, 0.2, 0.3], solved=[True, True, False])
    gru.sequences = [3200.0, 6400.0]  # the seeds solved at some validation
    tuned(gru, study)
    rnn = Compared("cell=rnn", ["cell=rnn"], "s", seeds_failed=0)
    tuned(rnn, optuna.create_study())

    [row, nothing] = summary([gru, rnn], "mse").to_dict("records")

    assert gru.chosen == {"optimizer.lr": 0.003} and gru.best_value == 0.2
    assert row["tuned"] == "optimizer.lr=0.003" and row["trials (done/pruned/failed)"] == "2/1/1"
    interval = estimate_positive([0.1, 0.2, 0.3]).interval  # the t-interval's low end is -0.048
    assert row["test/mse"] == "0.2 ± 0.1" and interval.low == pytest.approx(0.0457, abs=1e-4)
    assert row["95% CI (geom. mean)"] == f"[{interval.low:.3g}, {interval.high:.3g}]"
    assert row["seeds"] == "3 of 3" and row["solved (test)"].startswith("2/3 [")
    assert row["sequences to solve"] == "4,800 (2 of 3 runs)"  # their median, of all seeds
    assert nothing["tuned"] == "no trial completed" and nothing["seeds"] == "–"
    assert nothing["sequences to solve"] == "–"
    assert math.isnan(rnn.best_value)


def test_the_parent_run_gets_each_configs_mean_test_metric_and_solve_rate() -> None:
    gru = Compared("cell=gru task.seq_len=50", [], "s", test=[0.1, 0.3], solved=[True, False], seeds_failed=2)
    gru.sequences = [1600.0, 3200.0, 8000.0]
    nothing = Compared("cell=rnn task.seq_len=50", [], "s")  # no trial completed: no seeds

    assert headline_metrics([gru, nothing], "mse") == {
        "test_mse/cell_gru_task.seq_len_50": pytest.approx(0.2),
        "solved/cell_gru_task.seq_len_50": 0.25,  # 1 of 4 seeds: the failed ones count as unsolved
        "sequences_to_solve/cell_gru_task.seq_len_50": 3200.0,  # the median
    }


def test_a_sweep_nested_under_the_comparison_is_named_by_what_it_is_of_which_config(
    tmp_path, records
) -> None:
    experiment = records.create_experiment("adding")
    comparison = records.create_run(experiment, run_name="compare-abc").info.run_id
    sweep = records.create_run(experiment, run_name="sweep-tuning").info.run_id  # as the sweep names it
    (tmp_path / "mlflow_parent_run").write_text(sweep)

    nest(records, comparison, tmp_path, "tuning cell=lstm")

    nested = records.get_run(sweep)
    assert nested.info.run_name == "tuning cell=lstm"
    assert nested.data.tags["mlflow.parentRunId"] == comparison


def test_each_trial_and_seed_run_is_named_by_its_config_and_seeds_count_sequences_to_solve(records) -> None:
    study = optuna.create_study()
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    for number, run in enumerate(["run0", None, "run2"]):  # trial 1's job made no run
        attrs = {RUN: run} if run else {}
        study.add_trial(
            create_trial(
                value=0.1,
                params={"optimizer.lr": 0.001 * (number + 1)},
                distributions={"optimizer.lr": lr},
                system_attrs=attrs,
            )
        )
    assert trial_names("cell=gru", study) == {
        "run0": "tuning cell=gru trial 0 optimizer.lr=0.001",
        "run2": "tuning cell=gru trial 2 optimizer.lr=0.003",
    }

    experiment = records.create_experiment("adding")
    runs = []
    for seed, step in [(1, 250.0), (2, None), (3, 500.0)]:
        run = records.create_run(experiment, run_name=f"gru-uni-adding-T6-seed{seed}").info.run_id
        records.log_param(run, "seed", seed)
        records.log_param(run, "data.batch_size", 16)
        if step is not None:
            records.log_metric(run, "val/solved_step", step)
        records.set_terminated(run, "FINISHED")
        runs.append(run)
    recorded = [records.get_run(run) for run in runs]
    rename(records, {run.info.run_id: seed_name("cell=gru", run.data.params["seed"]) for run in recorded})

    assert [records.get_run(run).info.run_name for run in runs] == [
        "seeds cell=gru seed=1",
        "seeds cell=gru seed=2",
        "seeds cell=gru seed=3",
    ]
    assert seeds_to_solve(recorded) == [4000.0, 8000.0]  # val/solved_step × data.batch_size; seed 2 never


def test_the_budget_says_which_interval_the_metrics_range_gets(tmp_path, capsys) -> None:
    args = Namespace(trials=2, seeds=3, sampler="tpe", sampler_seed=0, overrides=["cell=gru"])
    gru = Compared("cell=gru", ["cell=gru"], "s", chosen={"optimizer.lr": 0.01}, test=[0.1, 0.2])

    show([gru], "mse", args, ["optimizer.lr=tag(log, interval(1e-4, 1e-1))"], tmp_path)
    show([gru], "accuracy", args, ["optimizer.lr=tag(log, interval(1e-4, 1e-1))"], tmp_path / "acc")

    mse = (tmp_path / "report.md").read_text()
    assert "test/mse cannot be negative: the t-interval of the mean of its logarithms" in mse
    assert "t-interval of the mean," not in mse
    assert (
        "test/accuracy lies in [0, 1]: the t-interval of the mean, clipped to [0, 1]"
        in (tmp_path / "acc" / "report.md").read_text()
    )


def test_a_search_that_is_not_a_sweep_is_refused_before_anything_runs(outputs, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["cell=rnn,gru", "--search", "optimizer.lr=0.01"])
    assert stopped.value.code == 2
    assert "--search takes sweeps" in capsys.readouterr().out
    assert not outputs.exists()


def test_help_prints_a_single_percent_sign(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "with 95% intervals" in out
    assert "%%" not in out


@pytest.mark.slow
def test_two_cells_tuned_with_one_budget_and_compared_over_seeds(outputs, capsys, records) -> None:
    pruner = "hydra.sweeper.pruner.n_warmup_steps=3"  # the tunings' alone, not the seeds' sweeps
    main(["cell=rnn,gru", *TINY, pruner, "--trials", "2", "--seeds", "2", "--sampler", "random"])

    [root] = (outputs / "compare").iterdir()
    with open(root / "report.csv") as f:
        rows = {row["config"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["cell=gru", "cell=rnn"]
    storage = f"sqlite:///{outputs / 'optuna.db'}"
    for cell in ("rnn", "gru"):
        study = optuna.load_study(study_name=f"compare-{root.name}-cell_{cell}", storage=storage)
        assert len(study.trials) == 2
        row = rows[f"cell={cell}"]
        assert row["tuned"] == f"optimizer.lr={study.best_params['optimizer.lr']:.3g}"
        parent = (root / f"cell_{cell}" / "seeds" / "mlflow_parent_run").read_text()
        seeds = records.search_runs(
            [e.experiment_id for e in records.search_experiments()], f"tags.`mlflow.parentRunId` = '{parent}'"
        )
        assert sorted(r.data.params["seed"] for r in seeds) == ["1", "2"]
        assert sorted(r.info.run_name for r in seeds) == [
            f"seeds cell={cell} seed=1",
            f"seeds cell={cell} seed=2",
        ]
        trial_run = records.get_run(study.trials[0].system_attrs[RUN])
        lr = study.trials[0].params["optimizer.lr"]
        assert trial_run.info.run_name == f"tuning cell={cell} trial 0 optimizer.lr={lr:.3g}"
        assert {float(r.data.params["optimizer.lr"]) for r in seeds} == {study.best_params["optimizer.lr"]}
        test = estimate_mean([r.data.metrics["test/mse"] for r in seeds])
        assert row["test/mse"] == f"{test.mean:.3g} ± {test.std:.2g}" and row["seeds"] == "2 of 2"
    assert "trials of Optuna's random sampler" in (root / "report.md").read_text()

    comparison = records.get_run((root / "mlflow_parent_run").read_text())  # one run over it all
    assert comparison.info.status == "FINISHED" and comparison.data.params["trials"] == "2"
    assert {a.path for a in records.list_artifacts(comparison.info.run_id)} == {"report.md", "report.csv"}
    assert "| cell=gru " in comparison.data.tags["mlflow.note.content"]  # the table, on its page
    assert set(comparison.data.metrics) >= {"test_mse/cell_gru", "solved/cell_rnn"}
    page = f"/#/experiments/{comparison.info.experiment_id}/runs/{comparison.info.run_id}?"
    assert page in capsys.readouterr().out
    for sweep in ("cell_rnn/tuning", "cell_gru/tuning", "cell_rnn/seeds", "cell_gru/seeds"):
        sweep_parent = records.get_run((root / sweep / "mlflow_parent_run").read_text())
        assert sweep_parent.data.tags["mlflow.parentRunId"] == comparison.info.run_id
        assert sweep_parent.info.run_name == f"{sweep.split('/')[1]} {sweep.split('/')[0].replace('_', '=')}"
