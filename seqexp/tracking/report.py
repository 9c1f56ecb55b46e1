"""The ``seqexp-report`` command: runs compared as tables and plots, grouped by what was swept,
with 95% intervals over seeds, and verdicts only where the intervals separate."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from rich.console import Console
from rich.table import Table

from seqexp.diagnostics.solved import SOLVED, SOLVED_STEP, TAG_HIGHER_IS_BETTER
from seqexp.tracking.intervals import (
    EXPLAINED,
    MeanEstimate,
    RateEstimate,
    estimate_mean,
    estimate_metric,
    estimate_rate,
    mean_verdict,
    median_interval,
    metric_range,
    paired_verdict,
    rate_verdict,
)
from seqexp.tracking.runs import (
    TAG_FAILURE,
    TAG_HEADLINE,
    TAG_OVERRIDES,
    TAG_SWEEP_ID,
)
from seqexp.tracking.ui import describe_run

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the file-only backend)

console = Console()
WRAPPED = 30
"""Cells longer than this (a failure's message) wrap, at their spaces, in a printed table."""
TABLE_EDGE, COLUMN_EDGES = 1, 3
"""A printed table's characters besides its cells: its left border; a column's padding and border."""
AVERAGED_OVER = ("seed",)
"""Swept keys that runs are averaged over rather than grouped by."""
FINISHED = "FINISHED"
PARAMS = "model/params"
TEST_SOLVED = "test/solved"
WALL = "wall_s"
NOT_AVERAGED = (SOLVED, TEST_SOLVED, SOLVED_STEP)
"""Metrics with columns of their own: the solve rate and how fast."""
BATCH_SIZE = "data.batch_size"
PROCESSES = "processes"
"""Per run: the processes that each drew a batch at every step (DDP's world size); NaN if unknown."""
SEQUENCES = "sequences_to_solve"
"""Per run: the training sequences drawn until its first solved validation (NaN: never solved)."""
PUBLISHED = "paper.sequences_to_solve"
"""A run's config key for the published figure it reproduces (an experiment in ``paper/``)."""
CITATION = "paper.citation"
"""A run's config key for where that figure was published."""


def swept_keys(runs: list[Run]) -> list[str]:
    """The overridden keys (``cell``, ``task.seq_len``, ...) whose values differ between runs."""
    overridden = {
        override.lstrip("+~").partition("=")[0]
        for run in runs
        for override in run.data.tags.get(TAG_OVERRIDES, "").split()
    }
    return sorted(
        key
        for key in overridden
        if key not in AVERAGED_OVER
        and all(key in run.data.params for run in runs)
        and len({run.data.params[key] for run in runs}) > 1
    )


def processes(params: dict[str, str]) -> float:
    """The processes that drew a batch at every step: ``trainer.devices`` (a count or a list of
    devices) × ``trainer.num_nodes`` × ``trainer.accumulate_grad_batches``, where recorded (1 where
    not); NaN where the record cannot say (``devices: auto`` or ``-1``: Lightning's choice)."""
    devices = params.get("trainer.devices", "1").strip()
    if devices.startswith("["):
        count = float(len([d for d in devices.strip("[]").split(",") if d.strip()]))
    else:
        count = float(devices) if devices.isdigit() and int(devices) > 0 else math.nan
    others = (params.get(key, "1") for key in ("trainer.num_nodes", "trainer.accumulate_grad_batches"))
    return count * math.prod(float(n) if n.isdigit() else math.nan for n in others)


def runs_frame(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    """One row per run: id, name, status, failure, seed, wall time (s), batch size and processes,
    swept values (as numbers where they are numbers, so that lengths sort as numbers) and final
    metrics."""
    frame = pd.DataFrame(
        {
            "run_id": run.info.run_id,
            "run": run.info.run_name,
            "status": run.info.status,
            "failure": run.data.tags.get(TAG_FAILURE, ""),
            "seed": run.data.params.get("seed", ""),
            WALL: (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else math.nan,
            BATCH_SIZE: float(run.data.params.get(BATCH_SIZE, math.nan)),
            PROCESSES: processes(run.data.params),
            PUBLISHED: float(run.data.params.get(PUBLISHED, math.nan)),
            **{key: run.data.params[key] for key in keys},
            **run.data.metrics,
        }
        for run in runs
    )
    for key in keys:
        numbers = pd.to_numeric(frame[key], errors="coerce")
        if numbers.notna().all():
            frame[key] = numbers
    return frame


def headline(runs: list[Run]) -> str:
    """The headline metric that most of the runs name."""
    return Counter(run.data.tags.get(TAG_HEADLINE, "val/loss") for run in runs).most_common(1)[0][0]


def higher_is_better(runs: list[Run]) -> bool | None:
    """Which way the headline improves, as most runs record it; ``None`` if none records it."""
    recorded = Counter(
        run.data.tags[TAG_HIGHER_IS_BETTER] for run in runs if TAG_HIGHER_IS_BETTER in run.data.tags
    )
    return recorded.most_common(1)[0][0] == "True" if recorded else None


def judged_metric(frame: pd.DataFrame, metric: str) -> str:
    """What verdicts are on: the headline's ``test/`` value where the runs have one, else ``metric``."""
    test = "test/" + metric.removeprefix("val/")
    return test if test in frame else metric


def per_process(frame: pd.DataFrame) -> bool:
    """Are sequences counted per process: does a solved run not record how many processes it had?"""
    return bool(column(frame, PROCESSES)[column(frame, SOLVED_STEP).notna()].isna().any())


def sequences_to_solve(frame: pd.DataFrame) -> pd.Series:
    """Per run, the training sequences it drew until its first solved validation, what papers
    report: ``val/solved_step`` × ``data.batch_size`` × processes (per process, without the last
    factor, wherever a solved run does not record its processes); NaN for a run never solved."""
    sequences = column(frame, SOLVED_STEP) * column(frame, BATCH_SIZE)
    return sequences if per_process(frame) else sequences * column(frame, PROCESSES)


def sequences_header(frame: pd.DataFrame) -> str:
    return "sequences to solve" + (" (per process)" if per_process(frame) else "")


def solved_source(frame: pd.DataFrame) -> str:
    """What :func:`solved` read: ``test`` (``test/solved``, judged at the end on the selected
    checkpoint), ``val`` (``val/solved`` at the last validation, for runs recorded without a
    test), or both."""
    tested = column(frame, TEST_SOLVED)[frame.status == FINISHED].notna()
    return "val" if not tested.any() else "test" if tested.all() else "test, else val"


def solved(frame: pd.DataFrame) -> pd.Series:
    """Per run: solved (on test where the run has it, else on validation), and finished (a run
    that failed or diverged counts as unsolved)."""
    flags = column(frame, TEST_SOLVED).fillna(column(frame, SOLVED)).fillna(0) > 0.5
    return (frame.status == FINISHED) & flags


def shown_metrics(frame: pd.DataFrame, metric: str) -> list[str]:
    """Every final ``val/`` and ``test/`` metric, and the headline's training value."""
    train = "train/" + metric.removeprefix("val/")
    shown = sorted(c for c in frame if c.startswith(("val/", "test/")) and c not in NOT_AVERAGED)
    return shown + ([train] if train in frame else [])


def same_in_every_run(a: pd.Series, b: pd.Series | float) -> bool:
    """Do ``a`` and ``b`` (a series, or one value) hold the same numbers, to float32's precision?"""
    other = b if isinstance(b, pd.Series) else pd.Series(b, index=a.index)
    return (
        bool(a.notna().any())
        and a.isna().equals(other.isna())
        and bool(np.allclose(a.dropna(), other.dropna(), rtol=1e-6, atol=0.0))
    )


def folded(frame: pd.DataFrame, metrics: list[str], kept: list[str]) -> tuple[list[str], list[str]]:
    """The ``metrics`` a printed summary can leave out, with a sentence that says what they were: a
    baseline with the same value in every run (the task's), and a ``loss`` equal in every run to
    another metric of its stage (the adding problem's loss is its MSE); never one of ``kept`` (what
    verdicts are on). ``summary.csv`` keeps every metric."""
    finished = frame[frame.status == FINISHED]
    shown = [m for m in metrics if m in finished and m not in kept]
    baselines: dict[float, list[str]] = {}
    for metric in shown:
        values = finished[metric].dropna()
        if metric.endswith("_baseline") and len(values) and same_in_every_run(values, float(values.iloc[0])):
            baselines.setdefault(float(values.iloc[0]), []).append(metric)
    twins: dict[str, str] = {}
    for metric in shown:
        stage, _, name = metric.rpartition("/")
        if name != "loss":
            continue
        others = [m for m in metrics if m != metric and m.rpartition("/")[0] == stage and m in finished]
        equal = (m for m in others if m not in twins and same_in_every_run(finished[metric], finished[m]))
        twin = next(equal, None)
        if twin is not None:
            twins[metric] = twin
    notes = [
        f"The task's baseline, {value:.3g} in every run ({', '.join(names)}), is left out of the table."
        for value, names in baselines.items()
    ]
    if twins:
        notes.append(
            f"{' and '.join(twins)} equal{'s' if len(twins) == 1 else ''} {' and '.join(twins.values())} "
            "in every run: left out of the table."
        )
    return [m for names in baselines.values() for m in names] + list(twins), notes


def groups(frame: pd.DataFrame, keys: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The rows split by their values of ``keys`` (one group of all rows if there are none)."""
    if not keys:
        return [({}, frame)]
    return [(dict(zip(keys, values, strict=True)), group) for values, group in frame.groupby(keys, sort=True)]


@dataclass(frozen=True)
class GroupSummary:
    """One group of runs (one combination of the swept values), over its seeds."""

    values: dict[str, Any]
    runs: int
    failed: int
    """Runs that did not finish (failed, diverged, killed): counted as unsolved."""
    metrics: dict[str, MeanEstimate]
    """Each metric's final value, over the runs that finished, its interval within the metric's
    range (:func:`~seqexp.tracking.intervals.estimate_metric`)."""
    solved: RateEstimate
    """Solved runs of all runs."""
    solved_steps: MeanEstimate
    """``val/solved_step`` over the finished runs that were solved at some validation."""
    sequences: list[float]
    """The training sequences each of those runs drew until then (:func:`sequences_to_solve`)."""
    published: float | None
    """The published sequences to solve that the group's runs reproduce (``paper.sequences_to_solve``)."""
    params: list[int]
    """The distinct trainable parameter counts (``model/params``) of the group's runs."""
    wall_s: MeanEstimate
    by_seed: dict[str, dict[Any, float]] = field(default_factory=dict)
    """Each metric's final value per seed, over the runs that finished (averaged where a seed ran
    twice): what a paired comparison of two groups pairs (the same seed draws the same data)."""


def finished_values(group: pd.DataFrame, column: str) -> list[float]:
    if column not in group:
        return []
    return group[group.status == FINISHED][column].dropna().astype(float).tolist()


def values_by_seed(group: pd.DataFrame, column: str) -> dict[Any, float]:
    finished = group[group.status == FINISHED]
    if column not in finished or "seed" not in finished:
        return {}
    return finished.dropna(subset=[column]).groupby("seed")[column].mean().astype(float).to_dict()


def summarize(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> list[GroupSummary]:
    return [
        GroupSummary(
            values=values,
            runs=len(group),
            failed=int((group.status != FINISHED).sum()),
            metrics={metric: estimate_metric(metric, finished_values(group, metric)) for metric in metrics},
            solved=estimate_rate(int(solved(group).sum()), len(group)),
            solved_steps=estimate_mean(finished_values(group, SOLVED_STEP)),
            sequences=finished_values(group, SEQUENCES),
            published=published(group),
            params=sorted({int(p) for p in group[PARAMS].dropna()}) if PARAMS in group else [],
            wall_s=estimate_mean(group[WALL].dropna().tolist()),
            by_seed={metric: values_by_seed(group, metric) for metric in metrics},
        )
        for values, group in groups(frame, keys)
    ]


def published(group: pd.DataFrame) -> float | None:
    """The published figure the group's runs record, if they record one (the first, if several)."""
    values = column(group, PUBLISHED).dropna()
    return float(values.iloc[0]) if len(values) else None


def summary_numbers(summaries: list[GroupSummary], detailed: list[str], sequences: str) -> pd.DataFrame:
    """The summaries as numbers (``summary.csv``): per metric its mean and sample std (empty for
    one run), and for the ``detailed`` metrics the 95% interval (of the geometric mean ``gmean``
    for a metric that cannot be negative); the solve rate's Wilson interval;
    the median of the ``sequences`` to solve and the share of runs solved at some validation."""
    rows = []
    for summary in summaries:
        row: dict[str, Any] = {**summary.values, "runs": summary.runs, "failed": summary.failed}
        for metric, estimate in summary.metrics.items():
            row |= {f"{metric} mean": estimate.mean, f"{metric} std": nan_if_none(estimate.std)}
            if metric in detailed:
                row |= {
                    f"{metric} n": estimate.n,
                    f"{metric} gmean": nan_if_none(estimate.geometric_mean),
                    f"{metric} ci_low": nan_if_none(estimate.interval and estimate.interval.low),
                    f"{metric} ci_high": nan_if_none(estimate.interval and estimate.interval.high),
                }
        interval = summary.solved.interval
        interval_of_median = median_interval(summary.sequences)
        row |= {
            "solved": summary.solved.successes,
            "solved rate": summary.solved.rate,
            "solved ci_low": nan_if_none(interval and interval.low),
            "solved ci_high": nan_if_none(interval and interval.high),
            "solved_step mean": summary.solved_steps.mean,
            "solved_step n": summary.solved_steps.n,
            f"{sequences} median": median(summary.sequences),
            f"{sequences} median ci_low": nan_if_none(interval_of_median and interval_of_median.low),
            f"{sequences} median ci_high": nan_if_none(interval_of_median and interval_of_median.high),
            f"{sequences} share": len(summary.sequences) / summary.runs,
            f"paper {sequences}": nan_if_none(summary.published),
            "params": summary.params[0] if len(summary.params) == 1 else math.nan,
            "wall_s mean": summary.wall_s.mean,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def summary_shown(
    summaries: list[GroupSummary],
    detailed: list[str],
    solved_by: str,
    sequences: str = "sequences to solve",
    left_out: Collection[str] = (),
) -> pd.DataFrame:
    """The summaries as text: ``mean ± std`` per metric (but those ``left_out``), the 95% interval
    of the ``detailed`` ones, the solve rate with its interval, how fast (steps, and the median of the
    ``sequences`` with its interval, beside the published figure where the runs record one), the
    parameters and the time per run."""
    rows = []
    for summary in summaries:
        row: dict[str, str] = {str(k): str(v) for k, v in summary.values.items()}
        row |= {"runs": str(summary.runs), "failed": str(summary.failed)}
        for metric, estimate in summary.metrics.items():
            if metric in left_out:
                continue
            # a baseline is the task's, the same for every run: no spread to show
            row[metric] = mean_text(estimate, spread=not metric.endswith("_baseline"))
            if metric in detailed:
                geometric = metric_range(metric) == "non-negative"
                row[interval_header(metric)] = interval_text(estimate, geometric)
        row[f"solved ({solved_by})"] = rate_text(summary.solved)
        row["solved at step"] = steps_text(summary.solved_steps, summary.runs)
        row[sequences] = sequences_text(summary.sequences, summary.runs)
        if any(s.published is not None for s in summaries):
            row[f"{sequences}: 95% CI of the median"] = median_interval_text(summary.sequences)
            row[f"paper: {sequences}"] = "–" if summary.published is None else f"{summary.published:,.0f}"
        row["params"] = params_text(summary.params)
        row["wall per run"] = duration_text(summary.wall_s.mean)
        rows.append(row)
    return pd.DataFrame(rows)


def verdicts(summaries: list[GroupSummary], keys: list[str], metric: str, higher: bool | None) -> list[str]:
    """For each pair of groups that differ in one swept value: does one beat the other on
    ``metric`` (their 95% intervals apart; and, where they share two seeds or more, the 95%
    t-interval of the mean per-seed difference clear of 0), does one solve more often (Wilson
    intervals apart)."""
    lines = []
    for a, b in itertools.combinations(summaries, 2):
        differ = [key for key in keys if a.values[key] != b.values[key]]
        if len(differ) != 1:
            continue
        [key] = differ
        shared = ", ".join(f"{k}={v}" for k, v in a.values.items() if k != key)
        a_name, b_name = f"{key}={a.values[key]}", f"{key}={b.values[key]}"
        if higher is None:
            on_metric = "no verdict (the runs do not record which way it improves)"
        else:
            on_metric = mean_verdict(a_name, a.metrics[metric], b_name, b.metrics[metric], higher)
            differences = paired_differences(a.by_seed.get(metric, {}), b.by_seed.get(metric, {}))
            if len(differences) >= 2:
                on_metric += "; paired: " + paired_verdict(a_name, b_name, estimate_mean(differences), higher)
        on_rate = rate_verdict(a_name, a.solved, b_name, b.solved)
        pair = f"{shared}: {a_name} vs {b_name}" if shared else f"{a_name} vs {b_name}"
        lines.append(f"{pair}: {metric}: {on_metric}; solve rate: {on_rate}")
    return lines


def paired_differences(a: dict[Any, float], b: dict[Any, float]) -> list[float]:
    """``a[seed] − b[seed]`` for every seed both ran."""
    return [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys(), key=str)]


def runs_shown(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per run: its swept values, seed and status; ``metrics``; whether and when it was
    solved; its parameters and wall time."""
    shown = frame[["run", *keys, "seed", "status"]].copy()
    for metric in metrics:
        shown[metric] = [f"{v:.3g}" if pd.notna(v) else "–" for v in column(frame, metric)]
    shown[f"solved ({solved_source(frame)})"] = solved(frame).map({True: "yes", False: "no"})
    steps = column(frame, SOLVED_STEP)
    shown["solved at step"] = [f"{s:.0f}" if pd.notna(s) else "not solved" for s in steps]
    shown[sequences_header(frame)] = [count_text(s) if pd.notna(s) else "–" for s in column(frame, SEQUENCES)]
    shown["params"] = [f"{p:,.0f}" if pd.notna(p) else "–" for p in column(frame, PARAMS)]
    shown["wall"] = [duration_text(s) for s in frame[WALL]]
    return shown.sort_values([*keys, "seed"], kind="stable")


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, or NaN for every row where no run logged ``name``."""
    return frame[name] if name in frame else pd.Series(math.nan, index=frame.index)


def nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def mean_text(estimate: MeanEstimate, spread: bool = True) -> str:
    """``mean ± std`` (3 and 2 significant digits); the mean alone for one run (no ``± 0``) or
    without ``spread``, ``–`` for none."""
    if estimate.n == 0:
        return "–"
    if estimate.std is None or not spread:
        return f"{estimate.mean:.3g}"
    return f"{estimate.mean:.3g} ± {estimate.std:.2g}"


def interval_header(metric: str) -> str:
    """The heading of ``metric``'s interval: of its geometric mean where it cannot be negative."""
    return f"{metric} 95% CI" + (" (geom. mean)" if metric_range(metric) == "non-negative" else "")


def interval_text(estimate: MeanEstimate, geometric: bool = False) -> str:
    """``[low, high]``; said to be the mean's where a ``geometric`` one was headed but a value was 0."""
    interval = estimate.interval
    if interval is None:
        return f"none at n = {estimate.n}"
    of_mean = " (of the mean: a value is 0)" if geometric and estimate.geometric_mean is None else ""
    return f"[{interval.low:.3g}, {interval.high:.3g}]{of_mean}"


def rate_text(rate: RateEstimate) -> str:
    interval = rate.interval
    if interval is None:
        return "–"
    return f"{rate.successes}/{rate.n} [{interval.low:.0%}, {interval.high:.0%}]"


def steps_text(steps: MeanEstimate, runs: int) -> str:
    if steps.n == 0:
        return "not solved"
    spread = "" if steps.std is None else f" ± {steps.std:.0f}"
    return f"{steps.mean:.0f}{spread} ({steps.n} of {runs} runs)"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def count_text(count: float) -> str:
    """A count to 3 significant digits, in full: ``12,800``, not ``1.28e+04``."""
    return f"{float(f'{count:.3g}'):,.0f}"


def sequences_text(sequences: list[float], runs: int) -> str:
    """The median of the runs solved at some validation, and how many of all runs those are."""
    if not sequences:
        return "not solved"
    return f"{count_text(median(sequences))} ({len(sequences)} of {runs} runs)"


def median_interval_text(sequences: list[float]) -> str:
    """``[low, high]``, the distribution-free 95% interval of the median, or why there is none."""
    interval = median_interval(sequences)
    if interval is None:
        return f"none at n = {len(sequences)}"
    return f"[{count_text(interval.low)}, {count_text(interval.high)}]"


def params_text(params: list[int]) -> str:
    if not params:
        return "–"
    return f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}"


def duration_text(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def time_spent(frame: pd.DataFrame) -> str:
    """Where the runs' wall time went, summed over the runs that recorded their phases
    (``time/<phase>_s``, :mod:`seqexp.tracking.phases`), the largest part first; empty if none did."""
    columns = [c for c in frame if c.startswith("time/") and c.endswith("_s")]
    recorded = frame[columns].dropna() if columns else frame.iloc[:0]
    if recorded.empty:
        return ""
    seconds = recorded.sum().sort_values(ascending=False)
    total = seconds.sum()
    parts = ", ".join(f"{name[5:-2]} {duration_text(s)} ({s / total:.0%})" for name, s in seconds.items())
    runs = f"the {len(recorded)} runs that recorded it ({duration_text(total)})"
    return f"Where the time went, over {runs}: {parts}."


def label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"


def plot_metric_vs_length(frame: pd.DataFrame, keys: list[str], metric: str, path: Path) -> bool:
    """``metric`` against ``task.seq_len``, one line per combination of the other swept keys,
    through the mean with its 95% interval as error bars (none for one run): the geometric mean
    and its interval for a metric that cannot be negative."""
    finished = frame[frame.status == FINISHED]
    if "task.seq_len" not in keys or finished.empty:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for values, group in groups(finished, [k for k in keys if k != "task.seq_len"]):
        by_length = {
            int(length): estimate_metric(metric, finished_values(rows, metric))
            for length, rows in group.groupby("task.seq_len")
        }
        lengths = sorted(by_length)
        estimates = [by_length[t] for t in lengths]
        centres = [e.centre for e in estimates]
        below = [e.centre - e.interval.low if e.interval else 0.0 for e in estimates]
        above = [e.interval.high - e.centre if e.interval else 0.0 for e in estimates]
        ax.errorbar(lengths, centres, yerr=[below, above], marker="o", capsize=3, label=label(values))
    if f"{metric}_baseline" in finished:
        ax.axhline(finished[f"{metric}_baseline"].mean(), color="grey", linestyle="--", label="baseline")
    ax.set(
        xlabel="sequence length", ylabel=metric, yscale="log" if (finished[metric] > 0).all() else "linear"
    )
    ax.legend(fontsize="small")
    save(fig, path)
    return True


def curve(histories: list[dict[int, float]], metric: str) -> list[tuple[int, MeanEstimate]]:
    """A group's learning curve: at every step some run logged, the estimate of ``metric`` over
    the runs that logged it there (finite values only), within the metric's range."""
    steps = sorted(set().union(*histories))
    at = ([h[step] for h in histories if step in h and math.isfinite(h[step])] for step in steps)
    return [(step, estimate_metric(metric, values)) for step, values in zip(steps, at, strict=True) if values]


def plot_learning_curves(
    client: MlflowClient, frame: pd.DataFrame, keys: list[str], metric: str, path: Path
) -> None:
    """Each group's ``metric`` over training steps, over the runs that finished: at each step the
    mean (the geometric mean for a metric that cannot be negative) with its 95% interval over seeds
    as a band where two runs or more logged that step. A run that stopped early (once solved)
    leaves the later steps to the runs that went on."""
    fig, ax = plt.subplots(figsize=(6, 4))
    finished = frame[frame.status == FINISHED]
    for colour, (values, group) in enumerate(groups(finished, keys)):
        histories = [
            {m.step: m.value for m in client.get_metric_history(run_id, metric)} for run_id in group.run_id
        ]
        points = curve([h for h in histories if h], metric)
        if not points:
            continue
        steps, estimates = zip(*points, strict=True)
        name = f"{label(values)} ({sum(map(bool, histories))} runs)"
        ax.plot(steps, [e.centre for e in estimates], color=f"C{colour % 10}", label=name)
        banded = [(step, e.interval) for step, e in points if e.interval]
        if banded:
            ax.fill_between(
                [step for step, _ in banded],
                [interval.low for _, interval in banded],
                [interval.high for _, interval in banded],
                color=f"C{colour % 10}",
                alpha=0.25,
                linewidth=0,
            )
    geometric = metric_range(metric) == "non-negative"
    centre = "geometric mean" if geometric else "mean"
    ax.set(xlabel="step", ylabel=f"{metric}: {centre}, 95% band", yscale="log" if geometric else "linear")
    if ax.get_legend_handles_labels()[0]:  # no curve when every run failed before logging one
        ax.legend(fontsize="small")
    save(fig, path)


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(client: MlflowClient, runs: list[Run], out: Path, title: str) -> pd.DataFrame:
    """Print the comparison; write it to ``out`` as markdown, CSV and PNG plots. Returns the
    summary's numbers."""
    out.mkdir(parents=True, exist_ok=True)
    keys = swept_keys(runs)
    frame = runs_frame(runs, keys)
    frame[SEQUENCES] = sequences_to_solve(frame)
    metric = headline(runs)
    judged = judged_metric(frame, metric)
    detailed = sorted({metric, judged})
    shown_columns = shown_metrics(frame, metric)  # a metric no run logged (every run failed): n = 0
    summaries = summarize(frame, keys, shown_columns + [m for m in detailed if m not in shown_columns])
    numbers = summary_numbers(summaries, detailed, sequences_header(frame))
    left_out, folds = folded(frame, shown_columns, detailed)
    shown = summary_shown(summaries, detailed, solved_source(frame), sequences_header(frame), left_out)
    per_run = runs_shown(frame, keys, detailed)
    failed = frame[frame.status != FINISHED][["run", *keys, "seed", "status", "failure"]]
    judgements = verdicts(summaries, keys, judged, higher_is_better(runs))

    note = (
        "Per group: mean ± sample std over the runs that finished; the 95% interval (none for one "
        f"run): {EXPLAINED}; runs solved of all runs, failed ones counted as unsolved, with the 95% "
        "Wilson interval; the mean val/solved_step of the runs that were solved at some validation, and "
        "the median training sequences they drew until then (val/solved_step × data.batch_size × the "
        "processes of a DDP run), with how many runs those are. A verdict needs the two 95% intervals "
        "apart; a paired one (two groups that ran the same seeds, so drew the same data) the 95% "
        "t-interval of the mean per-seed difference clear of 0."
    )
    citations = sorted({run.data.params[CITATION] for run in runs if CITATION in run.data.params})
    if citations:
        note += (
            " The paper's figure (paper: sequences to solve) is from "
            + "; ".join(citations)
            + "; the interval of the median is distribution-free (order statistics)."
        )
    spent = time_spent(frame)
    note += "".join(f" {sentence}" for sentence in [*folds, spent] if sentence)
    print_frame(shown, title, [str(key) for key in keys])
    console.print(note, soft_wrap=True)
    print_frame(per_run, "runs", ["run"])
    for line in judgements:
        console.print(line, soft_wrap=True)
    if not failed.empty:
        print_frame(failed, "runs that did not finish (counted as unsolved)", ["run"])
    numbers.to_csv(out / "summary.csv", index=False)
    frame.to_csv(out / "runs.csv", index=False)
    markdown = f"# {title}\n\n{shown.to_markdown(index=False)}\n\n{note}\n"
    if judgements:
        markdown += "\n## Verdicts\n\n" + "".join(f"- {line}\n" for line in judgements)
    markdown += f"\n## Runs\n\n{per_run.to_markdown(index=False)}\n"
    if not failed.empty:
        markdown += (
            f"\n## Runs that did not finish (counted as unsolved)\n\n{failed.to_markdown(index=False)}\n"
        )
    (out / "summary.md").write_text(markdown)
    plot_metric_vs_length(frame, keys, metric, out / "metric_vs_length.png")
    plot_learning_curves(client, frame, keys, metric, out / "learning_curves.png")
    console.print(f"report written to {out}", soft_wrap=True)
    return numbers


def cell_width(text: str) -> int:
    """The width a cell wants: all of it, up to :data:`WRAPPED` characters (longer text wraps at its
    spaces), and never less than its longest word."""
    return max([min(len(text), WRAPPED), *(len(word) for word in text.split())])


def fitted_tables(frame: pd.DataFrame, title: str, index: list[str], width: int) -> list[Table]:
    """``frame`` as tables that fit ``width`` characters: each has the ``index`` columns, then as
    many of the others, in order, as fit at their cells' widths; the rest go to the next tables. A
    header wraps at its spaces, and a cell too wide for its column (a long message, or every column
    where the ``index`` alone is too wide) folds onto its next line: no value is ever cut short."""
    text = frame.astype(str)
    wants = {  # a header wraps at its spaces: its longest word will do
        name: max([*(len(word) for word in f"{name} ".split()), *map(cell_width, text[name])])
        for name in text
    }
    chunks: list[list[str]] = []
    used = TABLE_EDGE + sum(wants[name] + COLUMN_EDGES for name in index)
    for name in (c for c in text if c not in index):
        if not chunks or used + wants[name] + COLUMN_EDGES > width:
            chunks.append([])
            used = TABLE_EDGE + sum(wants[name] + COLUMN_EDGES for name in index)
        chunks[-1].append(name)
        used += wants[name] + COLUMN_EDGES
    tables = []
    for i, chunk in enumerate(chunks or [[]]):
        part = f" ({i + 1} of {len(chunks)})" if len(chunks) > 1 else ""
        heading = f"{title}{part}"
        table = Table(title=heading, min_width=min(len(heading), width))  # the title on one line
        for name in [*index, *chunk]:
            table.add_column(str(name), width=wants[name], overflow="fold")
        for row in text[[*index, *chunk]].itertuples(index=False):
            table.add_row(*row)
        tables.append(table)
    return tables


def print_frame(frame: pd.DataFrame, title: str, index: list[str], out: Console | None = None) -> None:
    """Print ``frame`` as :func:`fitted_tables` to ``out`` (the report's console), at its width."""
    out = out or console
    for table in fitted_tables(frame, title, index, out.width):
        out.print(table)


def sweep_runs(client: MlflowClient, parent: str) -> list[Run]:
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids, f"tags.`{TAG_SWEEP_ID}` = '{parent}'", max_results=50_000)


def report_sweep(client: MlflowClient, parent: str, out: Path) -> pd.DataFrame:
    """The report of the sweep whose parent run is ``parent``, logged to that run as artifacts."""
    runs = sweep_runs(client, parent)
    table = write_report(client, runs, out, f"sweep {client.get_run(parent).info.run_name}")
    client.log_artifacts(parent, str(out), "report")
    [paper] = [c for c in table if c.startswith("paper ")]
    if table[paper].notna().any():  # a paper's experiment: its result on the page where one lands
        median = paper.removeprefix("paper ") + " median"
        figures = {
            "sequences_to_solve/median": table[median].iloc[0],
            "paper/sequences_to_solve": table[paper].iloc[0],
        }
        describe_run(client, parent, (out / "summary.md").read_text(), figures if len(table) == 1 else {})
    return table
