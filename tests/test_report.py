"""``seqexp-report``'s arithmetic against values worked by hand, and a report with a failed run."""

from __future__ import annotations

import math
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from seqexp.tracking import report
from seqexp.tracking.intervals import (
    Interval,
    MeanEstimate,
    estimate_mean,
    estimate_metric,
    estimate_positive,
    estimate_rate,
    mean_verdict,
    median_interval,
    metric_range,
    rate_verdict,
)
from seqexp.tracking.report import (
    print_frame,
    processes,
    report_sweep,
    runs_shown,
    solved,
    solved_source,
    summarize,
    summary_shown,
    verdicts,
    write_report,
)

T_975_DF2 = 4.302652729911275  # t_{0.975} with 2 degrees of freedom (tables)
T_975_DF1 = 12.706204736174705


def test_three_values_give_their_sample_std_and_t_interval() -> None:
    estimate = estimate_mean([1.0, 2.0, 3.0])

    assert (estimate.n, estimate.mean) == (3, 2.0)
    assert estimate.std == pytest.approx(1.0)  # sqrt(((1-2)² + 0 + (3-2)²) / (3 - 1)), not ddof=0's 0.816
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # 2.4841
    assert estimate.interval.low == pytest.approx(2.0 - half) == pytest.approx(-0.48414, abs=1e-5)
    assert estimate.interval.high == pytest.approx(4.48414, abs=1e-5)


def test_two_values_use_one_degree_of_freedom() -> None:
    estimate = estimate_mean([0.1, 0.3])

    assert estimate.std == pytest.approx(0.2 / math.sqrt(2))
    half = T_975_DF1 * estimate.std / math.sqrt(2)  # = 12.706 · 0.1
    assert estimate.interval.high - estimate.mean == pytest.approx(half) == pytest.approx(1.2706205)


def test_an_interval_of_a_quantity_that_cannot_be_negative_is_of_its_geometric_mean_above_zero() -> None:
    values = [0.001, 0.003, 0.009]  # one seed 9 times worse than another, as losses over seeds are
    assert estimate_mean(values).interval.low == pytest.approx(-0.00601, abs=1e-5)  # a negative MSE

    estimate = estimate_positive(values)

    assert (estimate.mean, estimate.std) == (estimate_mean(values).mean, estimate_mean(values).std)
    assert estimate.geometric_mean == pytest.approx(0.003) == estimate.centre
    half = T_975_DF2 * math.log(3) / math.sqrt(3)  # the logs are ln 0.003 ± ln 3: s_log = ln 3
    assert (
        estimate.interval.low == pytest.approx(0.003 * math.exp(-half)) == pytest.approx(0.000196, abs=1e-6)
    )
    assert estimate.interval.high == pytest.approx(0.003 * math.exp(half)) == pytest.approx(0.0460, abs=1e-4)


def test_a_zero_among_non_negative_values_clips_the_means_t_interval_at_zero() -> None:
    estimate = estimate_positive([0.0, 0.001, 0.002])  # no logarithm of 0

    assert estimate.geometric_mean is None and estimate.centre == estimate.mean == pytest.approx(0.001)
    assert estimate.interval == Interval(0.0, pytest.approx(0.001 + T_975_DF2 * 0.001 / math.sqrt(3)))


def test_an_accuracys_interval_stays_within_zero_and_one() -> None:
    estimate = estimate_metric("val/accuracy", [0.97, 1.0, 1.0])  # the t-interval reaches 1.04

    assert estimate.interval.high == 1.0 and estimate.geometric_mean is None
    assert estimate.interval.low == pytest.approx(0.99 - T_975_DF2 * estimate.std / math.sqrt(3))
    assert estimate_metric("val/accuracy", [0.0, 0.0, 0.03]).interval.low == 0.0


@pytest.mark.parametrize(
    ("metric", "kind"),
    [
        ("val/mse", "non-negative"),
        ("test/xent", "non-negative"),
        ("train/loss", "non-negative"),
        ("val/perplexity", "non-negative"),
        ("val/bits_per_char", "non-negative"),
        ("val/mse_baseline", "non-negative"),
        ("val/accuracy", "fraction"),
        ("test/string_accuracy", "fraction"),
        ("val/exact_match", "fraction"),
        ("val/solved_step", None),
        ("val/grad_norm_ratio", None),
    ],
)
def test_a_metrics_range_is_known_by_its_name(metric: str, kind: str | None) -> None:
    assert metric_range(metric) == kind


def test_verdicts_on_geometric_intervals_go_by_where_the_intervals_lie() -> None:
    low, high = estimate_positive([0.001, 0.0012, 0.0011]), estimate_positive([0.1, 0.12, 0.11])

    assert mean_verdict("gru", low, "rnn", high, higher_is_better=False) == "gru beats rnn"
    assert mean_verdict("gru", low, "rnn", high, higher_is_better=True) == "rnn beats gru"


def test_one_value_has_no_std_and_no_interval() -> None:
    assert estimate_mean([0.25]) == MeanEstimate(1, 0.25, None, None)
    empty = estimate_mean([])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.interval is None


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # p̂ = 3/5, z = 1.96: (0.6 + 0.3841) / 1.7683 ± 1.96 √(0.048 + 0.0384) / 1.7683
        (3, 5, 0.2307, 0.8824),
        (0, 5, 0.0, 0.4345),  # z²/n / (1 + z²/n) = 0.7683 / 1.7683
        (5, 5, 0.5655, 1.0),
        (1, 1, 0.2065, 1.0),
        (7, 10, 0.3968, 0.8922),
    ],
)
def test_the_solve_rate_has_its_wilson_interval(successes, n, low, high) -> None:
    rate = estimate_rate(successes, n)

    assert rate.rate == successes / n
    assert rate.interval.low == pytest.approx(low, abs=1e-4)
    assert rate.interval.high == pytest.approx(high, abs=1e-4)


def test_a_rate_of_no_runs_has_no_interval_and_impossible_counts_are_refused() -> None:
    assert estimate_rate(0, 0).interval is None
    with pytest.raises(ValueError, match="successes must be in"):
        estimate_rate(3, 2)


def test_a_verdict_needs_the_two_intervals_apart() -> None:
    low, high = estimate_mean([0.01, 0.02, 0.03]), estimate_mean([0.15, 0.16, 0.17])
    overlapping = estimate_mean([0.0, 0.1, 0.2])

    assert mean_verdict("gru", low, "rnn", high, higher_is_better=False) == "gru beats rnn"
    assert mean_verdict("gru", low, "rnn", high, higher_is_better=True) == "rnn beats gru"
    assert mean_verdict("gru", low, "rnn", overlapping, higher_is_better=False) == "no difference at n = 3"
    one_run = estimate_mean([0.5])  # no interval: no verdict, however far apart the means
    assert mean_verdict("gru", low, "lstm", one_run, False) == "no difference at n = 3 and 1"
    assert Interval(0, 1).overlaps(Interval(1, 2)) and not Interval(0, 1).overlaps(Interval(1.5, 2))


def test_solve_rates_differ_only_where_their_wilson_intervals_do() -> None:
    assert rate_verdict("gru", estimate_rate(5, 5), "rnn", estimate_rate(0, 5)) == (
        "gru solves more often than rnn"
    )
    # 4/5 [38%, 96%] against 1/5 [4%, 62%]: apart in the means, not in the intervals
    assert rate_verdict("gru", estimate_rate(4, 5), "rnn", estimate_rate(1, 5)) == "no difference at n = 5"


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).assign(wall_s=60.0)


def test_a_failed_run_counts_in_the_group_as_unsolved_and_not_in_the_mean() -> None:
    gru = {"cell": "gru", "status": "FINISHED", "val/solved": 1}
    runs = frame(
        [
            gru | {"val/mse": 0.001, "val/solved_step": 500},
            gru | {"val/mse": 0.003, "val/solved_step": 1000},
            gru | {"status": "FAILED", "val/mse": math.nan, "val/solved_step": 750},
            {"cell": "rnn", "status": "FINISHED", "val/mse": 0.17, "val/solved": 0, "model/params": 1089},
        ]
    ).assign(**{"val/mse_baseline": 1 / 6})

    gru, rnn = summarize(runs, ["cell"], ["val/mse", "val/mse_baseline"])

    assert (gru.runs, gru.failed) == (3, 1)
    assert gru.metrics["val/mse"].n == 2 and gru.metrics["val/mse"].mean == pytest.approx(0.002)
    assert (gru.solved.successes, gru.solved.n) == (2, 3)  # the failed run had been solved: it counts as not
    assert gru.solved_steps.mean == 750.0 and gru.solved_steps.n == 2  # the finished runs' steps
    shown = summary_shown([gru, rnn], ["val/mse"], "val").set_index("cell")
    assert shown.loc["gru", "solved (val)"] == "2/3 [21%, 94%]"
    assert shown.loc["rnn", "val/mse"] == "0.17"  # one run: no "± 0"
    assert shown.loc["gru", "val/mse_baseline"] == "0.167"  # the same for every run: no "± 0" either
    assert shown.loc["rnn", "val/mse 95% CI (geom. mean)"] == "none at n = 1"
    assert shown.loc["rnn", "solved at step"] == "not solved"
    assert shown.loc["rnn", "params"] == "1,089"
    assert verdicts([gru, rnn], ["cell"], "val/mse", higher=False) == [
        "cell=gru vs cell=rnn: val/mse: no difference at n = 2 and 1; "
        "solve rate: no difference at n = 3 and 1"
    ]
    [unrecorded] = verdicts([gru, rnn], ["cell"], "val/mse", higher=None)  # runs from before the tag
    assert "val/mse: no verdict (the runs do not record which way it improves)" in unrecorded


def test_verdicts_compare_groups_that_differ_in_one_swept_value() -> None:
    runs = frame(
        [
            {"cell": cell, "T": T, "status": "FINISHED", "val/accuracy": value + noise, "val/solved": 1.0}
            for cell, T, value in [("gru", 10, 1.0), ("rnn", 10, 0.5), ("gru", 50, 0.9), ("rnn", 50, 0.9)]
            for noise in (-0.01, 0.0, 0.01)
        ]
    )

    lines = verdicts(summarize(runs, ["cell", "T"], ["val/accuracy"]), ["cell", "T"], "val/accuracy", True)

    assert len(lines) == 4  # gru/rnn at each T, T=10/50 for each cell; not gru@10 against rnn@50
    assert "cell=gru: T=10 vs T=50: val/accuracy: T=10 beats T=50" in lines[0]
    assert "T=10: cell=gru vs cell=rnn: val/accuracy: cell=gru beats cell=rnn" in lines[1]
    assert "T=50: cell=gru vs cell=rnn: val/accuracy: no difference at n = 3" in lines[2]


def record(
    mlflow, experiment: str, cell: str, seed: int, status: str, metrics: dict[str, float], **params: str
) -> None:
    run = mlflow.create_run(
        experiment,
        run_name=f"{cell}-seed{seed}",
        tags={
            "seqexp.overrides": f"cell={cell} seed={seed}",
            "seqexp.headline": "val/mse",
            "seqexp.higher_is_better": "False",
        },
    )
    mlflow.log_param(run.info.run_id, "cell", cell)
    mlflow.log_param(run.info.run_id, "seed", seed)
    for name, value in params.items():
        mlflow.log_param(run.info.run_id, name.replace("__", "."), value)
    for name, value in metrics.items():
        mlflow.log_metric(run.info.run_id, name, value)
    if status == "FAILED":
        mlflow.set_tag(run.info.run_id, "seqexp.failure", "Diverged: diverged at training step 7")
    mlflow.set_terminated(run.info.run_id, status)


def test_the_report_lists_failed_runs_as_unsolved_with_params_and_wall_time(outputs: Path, records) -> None:
    mlflow = records
    experiment = mlflow.create_experiment("adding")
    for seed, mse in enumerate([0.004, 0.006]):
        solved = {"val/mse": mse, "val/solved": 1, "val/solved_step": 500 * (seed + 1), "model/params": 3457}
        record(mlflow, experiment, "gru", seed, "FINISHED", solved)
    record(mlflow, experiment, "gru", 2, "FAILED", {"model/params": 3457})
    record(mlflow, experiment, "rnn", 0, "FINISHED", {"val/mse": 0.17, "val/solved": 0, "model/params": 1153})

    numbers = write_report(mlflow, mlflow.search_runs([experiment]), outputs / "r", "adding").set_index(
        "cell"
    )

    assert numbers.loc["gru", "runs"] == 3 and numbers.loc["gru", "failed"] == 1
    assert numbers.loc["gru", "val/mse mean"] == pytest.approx(0.005)
    assert numbers.loc["gru", "val/mse std"] == pytest.approx(0.002 / math.sqrt(2))
    # val/mse cannot be negative: the interval of its geometric mean, from the logs' t-interval
    log_half = T_975_DF1 * (math.log(0.006) - math.log(0.004)) / 2  # s_log / √2 = |difference| / 2
    assert numbers.loc["gru", "val/mse gmean"] == pytest.approx(math.sqrt(0.004 * 0.006))
    assert numbers.loc["gru", "val/mse ci_high"] == pytest.approx(
        math.sqrt(0.004 * 0.006) * math.exp(log_half)
    )
    assert numbers.loc["gru", "solved rate"] == pytest.approx(2 / 3)
    assert math.isnan(numbers.loc["rnn", "val/mse std"]) and math.isnan(numbers.loc["rnn", "val/mse ci_low"])
    assert numbers.loc["rnn", "params"] == 1153
    summary = (outputs / "r" / "summary.md").read_text()
    assert "Runs that did not finish (counted as unsolved)" in summary and "Diverged: diverged" in summary
    assert "cell=gru vs cell=rnn: val/mse: no difference at n = 2 and 1" in summary
    runs = pd.read_csv(outputs / "r" / "runs.csv")
    assert (runs.wall_s >= 0).all()
    assert "| 750 ± 354 (2 of 3 runs) |" in summary  # the solved runs' val/solved_step
    runs_section = summary.partition("## Runs\n")[2].partition("##")[0]
    per_run = {line.split("|")[1].strip(): line for line in runs_section.splitlines() if "-seed" in line}
    assert per_run["gru-seed2"].startswith("| gru-seed2 | gru    |      2 | FAILED   | –")
    assert "| no " in per_run["gru-seed2"] and "| not solved " in per_run["rnn-seed0"]


def test_a_report_of_runs_that_all_failed_counts_them_unsolved(outputs: Path, records) -> None:
    experiment = records.create_experiment("adding")
    for cell in ("gru", "rnn"):
        record(records, experiment, cell, 0, "FAILED", {"model/params": 3457})

    numbers = write_report(records, records.search_runs([experiment]), outputs / "r", "adding")

    assert numbers.runs.tolist() == [1, 1] and numbers.failed.tolist() == [1, 1]
    assert numbers["solved"].tolist() == [0, 0] and numbers["val/mse n"].tolist() == [0, 0]
    summary = (outputs / "r" / "summary.md").read_text()
    assert "cell=gru vs cell=rnn: val/mse: no difference at n = 0" in summary


def test_runs_are_judged_solved_on_test_where_they_have_it_else_on_validation() -> None:
    runs = frame(
        [
            {"cell": "gru", "status": "FINISHED", "val/solved": 1, "test/solved": 0},  # val only: not solved
            {"cell": "gru", "status": "FINISHED", "val/solved": 1},  # recorded before the test phase
            {"cell": "gru", "status": "FAILED", "val/solved": 1},
        ]
    )

    assert solved(runs).tolist() == [False, True, False]
    assert solved_source(runs) == "test, else val"
    assert solved_source(runs.iloc[[0, 2]]) == "test"  # a failed run has no test: it is not "val"
    assert solved_source(runs.drop(columns="test/solved")) == "val"


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({}, 1),  # recorded before DDP: one process
        ({"trainer.devices": "2"}, 2),
        ({"trainer.devices": "[0, 3]", "trainer.num_nodes": "2"}, 4),
        ({"trainer.devices": "1", "trainer.accumulate_grad_batches": "4"}, 4),  # 4 batches a step
        ({"trainer.devices": "auto"}, math.nan),  # Lightning's choice: the record cannot say
        ({"trainer.devices": "-1"}, math.nan),
    ],
)
def test_the_processes_that_drew_a_batch_at_each_step_are_read_from_the_record(params, count) -> None:
    assert processes(params) == count or (math.isnan(count) and math.isnan(processes(params)))


def test_the_report_gives_the_median_sequences_seen_until_solved_and_the_share_solved(
    outputs: Path, records
) -> None:
    experiment = records.create_experiment("adding")
    for seed, step in enumerate([500, 1000, 2000]):  # 32,000, 64,000, 128,000 sequences
        metrics = {"val/mse": 0.001, "val/solved": 1, "val/solved_step": step}
        record(records, experiment, "gru", seed, "FINISHED", metrics, data__batch_size="64")
    unsolved = {"val/mse": 0.1, "val/solved": 0}
    record(records, experiment, "gru", 3, "FINISHED", unsolved, data__batch_size="64")
    ddp = {"data__batch_size": "64", "trainer__devices": "2"}  # two processes of 64 at every step
    record(records, experiment, "rnn", 0, "FINISHED", {"val/mse": 0.001, "val/solved_step": 100}, **ddp)

    numbers = write_report(records, records.search_runs([experiment]), outputs / "r", "adding")

    numbers = numbers.set_index("cell")
    assert numbers.loc["gru", "sequences to solve median"] == 64_000
    assert numbers.loc["gru", "sequences to solve share"] == 3 / 4  # the unsolved run has none
    assert numbers.loc["rnn", "sequences to solve median"] == 100 * 64 * 2
    summary = (outputs / "r" / "summary.md").read_text()
    assert "| 64,000 (3 of 4 runs) " in summary and "| 12,800 (1 of 1 runs) " in summary
    per_run = pd.read_csv(outputs / "r" / "runs.csv").sequences_to_solve
    assert sorted(per_run.dropna()) == [12_800, 32_000, 64_000, 128_000]

    record(records, experiment, "rnn", 1, "FINISHED", {"val/solved_step": 100}, trainer__devices="auto")
    numbers = write_report(records, records.search_runs([experiment]), outputs / "r2", "adding")
    assert numbers.set_index("cell").loc["rnn", "sequences to solve (per process) median"] == 6_400


def test_learning_curves_are_each_groups_geometric_mean_with_a_95_percent_band(
    outputs: Path, records, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = records.create_experiment("adding")
    curves = {  # per cell, each seed's val/mse at steps 0, 250, 500; gru's seeds 1, 2 stopped at 250
        "gru": [[0.1, 0.01, 0.001], [0.1, 0.001], [0.1, 0.01]],
        "rnn": [[0.2, 0.2, 0.2], [0.2, 0.1, 0.05], [0.2, 0.15, 0.1]],
    }
    for cell, seeds in curves.items():
        for seed, history in enumerate(seeds):
            record(records, experiment, cell, seed, "FINISHED", {})
            [run] = records.search_runs([experiment], f"attributes.run_name = '{cell}-seed{seed}'")
            for i, value in enumerate(history):
                records.log_metric(run.info.run_id, "val/mse", value, step=250 * i)
    record(records, experiment, "rnn", 3, "FAILED", {"val/mse": math.inf})  # diverged: not averaged
    figures = []
    monkeypatch.setattr(report, "save", lambda fig, path: figures.append(fig))

    write_report(records, records.search_runs([experiment]), outputs / "r", "adding")

    [ax] = figures[-1].axes
    gru, rnn = ax.get_lines()  # one line per group, not per run
    assert gru.get_label() == "cell=gru (3 runs)" and rnn.get_label() == "cell=rnn (3 runs)"
    assert list(gru.get_xdata()) == [0, 250, 500]
    assert gru.get_ydata()[1] == pytest.approx((0.01 * 0.001 * 0.01) ** (1 / 3))  # the geometric mean
    assert gru.get_ydata()[2] == pytest.approx(0.001)  # the one run that went on
    gru_band, rnn_band = ax.collections
    interval = estimate_positive([0.2, 0.1, 0.15]).interval
    band = rnn_band.get_paths()[0].vertices
    assert sorted(set(band[band[:, 0] == 250, 1])) == pytest.approx([interval.low, interval.high])
    assert (band[:, 1] > 0).all() and ax.get_yscale() == "log"
    assert gru_band.get_paths()[0].vertices[:, 0].max() == 250  # no band from one run


def test_a_sweeps_tables_fit_an_80_column_terminal_or_log_without_cutting_a_value() -> None:
    rows = [
        {
            "cell": cell,
            "task.seq_len": length,
            "status": "FINISHED",
            "seed": seed,
            "run": f"{cell}-uni-adding-T{length}-seed{seed}",
            **{
                f"{stage}/{name}": 0.0123 * (1 + seed) / length
                for stage in ("val", "test")
                for name in ("mse", "loss")
            },
            "val/mse_baseline": 1 / 6,
            "train/mse": 0.0111 * (1 + seed),
            "val/solved": 1,
            "val/solved_step": 750.0 * (1 + seed),
            "sequences_to_solve": 48_000.0 * (1 + seed),
            "model/params": 12_673,
        }
        for cell in ("lstm", "peephole")
        for length in (50, 100)
        for seed in range(3)
    ]
    runs = frame(rows)
    keys = ["cell", "task.seq_len"]
    metrics = ["test/loss", "test/mse", "train/mse", "val/loss", "val/mse", "val/mse_baseline"]
    shown = summary_shown(summarize(runs, keys, metrics), ["val/mse", "test/mse"], "test")
    out = StringIO()

    print_frame(shown, "sweep 2026-12-07_10-00-00", keys, Console(width=80, file=out))
    print_frame(runs_shown(runs, keys, ["val/mse", "test/mse"]), "runs", ["run"], Console(width=80, file=out))

    printed = out.getvalue()
    assert "…" not in printed and max(map(len, printed.splitlines())) <= 80
    assert "0.000492 ± 0.00025" in printed  # test/mse of lstm at T=50: 3 significant digits
    lstm_50 = shown.iloc[0]
    assert lstm_50["val/mse 95% CI (geom. mean)"] in printed and lstm_50["sequences to solve"] in printed
    for cell in shown.to_numpy().ravel():  # every value whole, on one line
        assert str(cell) in printed
    assert "lstm-uni-adding-T100-seed2" in printed
    parts = printed.count("sweep 2026-12-07_10-00-00 (")  # each table's title on one line
    assert parts > 1 and f"sweep 2026-12-07_10-00-00 ({parts} of {parts})" in printed
    narrow = StringIO()
    print_frame(
        pd.DataFrame({"cell": ["gru"], "runs": ["3"]}),
        "sweep sweep-2026-12-08_00-17-01-101681",
        ["cell"],
        Console(width=80, file=narrow),
    )
    assert "sweep sweep-2026-12-08_00-17-01-101681" in narrow.getvalue()  # wider than its columns


def test_a_baseline_the_same_in_every_run_and_a_loss_equal_to_the_metric_are_said_not_tabled() -> None:
    runs = frame(
        [
            {"cell": cell, "status": "FINISHED", "val/mse": mse, "val/loss": mse, "test/mse": mse / 2}
            | {"test/loss": mse / 2 + 0.01, "val/mse_baseline": 1 / 6, "val/accuracy": 0.5, "val/exact": 0.5}
            for cell, mse in (("gru", 0.01), ("gru", 0.02), ("rnn", 0.17))
        ]
    )
    runs.loc[2, "val/mse_baseline"] = 0.2  # two values: a column of its own

    shown = ["test/loss", "test/mse", "val/accuracy", "val/exact", "val/loss", "val/mse", "val/mse_baseline"]
    assert report.folded(runs, shown, ["val/mse"]) == (
        ["val/loss"],  # test/loss is not test/mse; a fraction equal to another is no loss: both shown
        ["val/loss equals val/mse in every run: left out of the table."],
    )
    runs["val/mse_baseline"] = 1 / 6
    runs["val/loss"] = runs["val/mse"] * (1 + 1e-8)  # float32's rounding: still the same
    left_out, [baseline, loss] = report.folded(runs, shown, ["val/mse"])
    assert left_out == ["val/mse_baseline", "val/loss"] and loss.startswith("val/loss equals val/mse")
    assert baseline == "The task's baseline, 0.167 in every run (val/mse_baseline), is left out of the table."
    table = summary_shown(summarize(runs, ["cell"], shown), [], "val", left_out=left_out)
    assert "val/mse_baseline" not in table and "val/loss" not in table and "val/mse" in table
    assert report.folded(runs, shown, ["val/loss"])[0] == ["val/mse_baseline"]  # what verdicts are on stays


@pytest.mark.parametrize(("n", "low", "high"), [(5, None, None), (6, 1, 6), (10, 2, 9), (20, 6, 15)])
def test_the_median_has_a_distribution_free_interval_from_order_statistics(n, low, high) -> None:
    """[x_(j), x_(n+1-j)] misses the median only if j or more of n values fall on one side of it:
    P(Bin(n, 1/2) < j) per side, at most 2.5%; with n = 5 even [min, max] misses it 6.25% of the time."""
    interval = median_interval([float(v) for v in range(n, 0, -1)])
    if low is None:
        assert interval is None
        return
    assert (interval.low, interval.high) == (low, high)
    miss = sum(math.comb(n, k) for k in range(low)) / 2**n
    assert miss <= 0.025 < miss + math.comb(n, low) / 2**n  # the widest j that keeps 95%


def test_an_experiment_from_a_paper_shows_the_papers_figure_beside_its_median_and_interval(
    outputs: Path, records
) -> None:
    experiment = records.create_experiment("paper")
    paper = {
        "data__batch_size": "10",
        "paper__sequences_to_solve": "31390",
        "paper__citation": "H&S 1997, 6a",
    }
    for seed, step in enumerate([100, 200, 300, 400, 500, 600]):  # 1,000 ... 6,000 sequences
        metrics = {"val/accuracy": 1.0, "val/solved": 1, "val/solved_step": step}
        record(records, experiment, "lstm1997", seed, "FINISHED", metrics, **paper)

    numbers = write_report(records, records.search_runs([experiment]), outputs / "p", "paper").iloc[0]

    assert numbers["paper sequences to solve"] == 31_390
    assert numbers["sequences to solve median"] == 3_500
    assert (numbers["sequences to solve median ci_low"], numbers["sequences to solve median ci_high"]) == (
        1_000,
        6_000,
    )
    summary = (outputs / "p" / "summary.md").read_text()
    table = summary.split("\n\n")[1]
    assert all(text in table for text in ("3,500 (6 of 6 runs)", "[1,000, 6,000]", "31,390"))  # as published
    assert "The paper's figure (paper: sequences to solve) is from H&S 1997, 6a" in summary


def test_a_paper_sweeps_parent_run_shows_its_median_beside_the_papers_figure(outputs: Path, records) -> None:
    experiment = records.create_experiment("paper")
    parent = records.create_run(experiment, run_name="sweep-1").info.run_id
    paper = {
        "data__batch_size": "10",
        "paper__sequences_to_solve": "31390",
        "paper__citation": "H&S 1997, 6a",
    }
    for seed, step in enumerate([100, 200, 300]):
        metrics = {"val/accuracy": 1.0, "val/solved": 1, "val/solved_step": step}
        record(records, experiment, "lstm1997", seed, "FINISHED", metrics, **paper)
        [child] = [r for r in records.search_runs([experiment]) if r.info.run_name == f"lstm1997-seed{seed}"]
        records.set_tag(child.info.run_id, "seqexp.sweep_id", parent)

    report_sweep(records, parent, outputs / "s")

    page = records.get_run(parent).data
    assert page.metrics == {"sequences_to_solve/median": 2_000, "paper/sequences_to_solve": 31_390}
    assert "31,390" in page.tags["mlflow.note.content"] and "H&S 1997, 6a" in page.tags["mlflow.note.content"]


def test_groups_that_ran_the_same_seeds_are_also_compared_pair_by_pair() -> None:
    # B is below A at every seed by about 0.01, while the seeds spread both far more than that
    rows = [
        {"cell": cell, "seed": seed, "status": "FINISHED", "val/accuracy": base + shift, "val/solved": 0.0}
        for seed, base in enumerate([0.6, 0.7, 0.8, 0.9, 0.65])
        for cell, shift in [("lstm", 0.0), ("peephole", -0.01 + 0.001 * (seed % 2))]
    ]
    summaries = summarize(frame(rows), ["cell"], ["val/accuracy"])

    [line] = verdicts(summaries, ["cell"], "val/accuracy", True)

    assert "val/accuracy: no difference at n = 5; paired: cell=lstm beats cell=peephole (n = 5," in line
    assert "cell=lstm − cell=peephole = +0.0096 [+0.00" in line
    unpaired = summarize(
        frame([{**row, "seed": i} for i, row in enumerate(rows)]), ["cell"], ["val/accuracy"]
    )
    assert "paired" not in verdicts(unpaired, ["cell"], "val/accuracy", True)[0], "no seed in common"
