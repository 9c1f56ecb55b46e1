"""The ``seqexp-report`` command: runs compared as a table and plots, grouped by what was swept."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import matplotlib
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from rich.console import Console
from rich.table import Table

from seqexp.tracking import (
    PARENT_RUN_FILE,
    TAG_FAILURE,
    TAG_HEADLINE,
    TAG_OVERRIDES,
    TAG_SWEEP_ID,
    tracking_uri,
)

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the file-only backend)

console = Console()
AVERAGED_OVER = ("seed",)
"""Swept keys that runs are averaged over rather than grouped by."""


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


def runs_frame(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    """One row per run: id, name, status, failure, swept values (as numbers where they are
    numbers, so that lengths sort as numbers) and final metrics."""
    frame = pd.DataFrame(
        {
            "run_id": run.info.run_id,
            "run": run.info.run_name,
            "status": run.info.status,
            "failure": run.data.tags.get(TAG_FAILURE, ""),
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


def groups(frame: pd.DataFrame, keys: list[str]) -> list[tuple[dict[str, str], pd.DataFrame]]:
    """The rows split by their values of ``keys`` (one group of all rows if there are none)."""
    if not keys:
        return [({}, frame)]
    return [(dict(zip(keys, values, strict=True)), group) for values, group in frame.groupby(keys, sort=True)]


def summary_table(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Finished runs grouped by ``keys``: mean and std over seeds of each final metric."""
    finished = frame[frame.status == "FINISHED"]
    rows = []
    for values, group in groups(finished, keys):
        row: dict[str, object] = {**values, "runs": len(group)}
        for metric in metrics:
            column = group[metric].astype(float)
            row |= {f"{metric} mean": column.mean(), f"{metric} std": column.std(ddof=0)}
        rows.append(row)
    return pd.DataFrame(
        rows, columns=[*keys, "runs", *(f"{m} {s}" for m in metrics for s in ("mean", "std"))]
    )


def readable(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The summary with each metric as one ``mean ± std`` column."""
    shown = table.drop(columns=[f"{m} {s}" for m in metrics for s in ("mean", "std")])
    for m in metrics:
        shown[m] = [
            f"{mean:.4g} ± {std:.2g}" for mean, std in zip(table[f"{m} mean"], table[f"{m} std"], strict=True)
        ]
    return shown


def label(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"


def plot_metric_vs_length(frame: pd.DataFrame, keys: list[str], metric: str, path: Path) -> bool:
    """``metric`` against ``task.seq_len``, one line per combination of the other swept keys."""
    finished = frame[frame.status == "FINISHED"]
    if "task.seq_len" not in keys or finished.empty:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for values, group in groups(finished, [k for k in keys if k != "task.seq_len"]):
        stats = group.groupby(group["task.seq_len"].astype(int))[metric].agg(["mean", "std"]).fillna(0.0)
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3, label=label(values))
    if f"{metric}_baseline" in finished:
        ax.axhline(finished[f"{metric}_baseline"].mean(), color="grey", linestyle="--", label="baseline")
    ax.set(
        xlabel="sequence length", ylabel=metric, yscale="log" if (finished[metric] > 0).all() else "linear"
    )
    ax.legend(fontsize="small")
    save(fig, path)
    return True


def plot_learning_curves(
    client: MlflowClient, frame: pd.DataFrame, keys: list[str], metric: str, path: Path
) -> None:
    """Every run's ``metric`` over training steps, overlaid, one colour per group."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for colour, (values, group) in enumerate(groups(frame, keys)):
        for i, run_id in enumerate(group.run_id):
            points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
            if points:
                steps, history = zip(*points, strict=True)
                ax.plot(steps, history, color=f"C{colour % 10}", label=label(values) if i == 0 else None)
    ax.set(xlabel="step", ylabel=metric, yscale="log")
    ax.legend(fontsize="small")
    save(fig, path)


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(client: MlflowClient, runs: list[Run], out: Path, title: str) -> pd.DataFrame:
    """Print the comparison; write it to ``out`` as markdown, CSV and PNG plots. Returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    keys = swept_keys(runs)
    frame = runs_frame(runs, keys)
    metric = headline(runs)
    metrics = sorted(m for m in frame.columns if m.startswith("val/") and m in frame)
    table = summary_table(frame, keys, metrics)
    failed = frame[frame.status != "FINISHED"][["run", *keys, "status", "failure"]]

    shown = readable(table, metrics)
    console.print(rich_table(shown, title))
    if not failed.empty:
        console.print(rich_table(failed, "runs that did not finish"))
    table.to_csv(out / "summary.csv", index=False)
    frame.to_csv(out / "runs.csv", index=False)
    markdown = f"# {title}\n\n{shown.to_markdown(index=False)}\n"
    if not failed.empty:
        markdown += f"\n## Runs that did not finish\n\n{failed.to_markdown(index=False)}\n"
    (out / "summary.md").write_text(markdown)
    plot_metric_vs_length(frame, keys, metric, out / "metric_vs_length.png")
    plot_learning_curves(client, frame, keys, metric, out / "learning_curves.png")
    console.print(f"report written to {out}", soft_wrap=True)
    return table


def rich_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(*map(str, frame.columns), title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*map(str, row))
    return table


def sweep_runs(client: MlflowClient, parent: str) -> list[Run]:
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids, f"tags.`{TAG_SWEEP_ID}` = '{parent}'", max_results=50_000)


def report_sweep(client: MlflowClient, parent: str, out: Path) -> pd.DataFrame:
    """The report of the sweep whose parent run is ``parent``, logged to that run as artifacts."""
    runs = sweep_runs(client, parent)
    table = write_report(client, runs, out, f"sweep {client.get_run(parent).info.run_name}")
    client.log_artifacts(parent, str(out), "report")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seqexp-report", description="Compare runs: a table (mean ± std over seeds) and plots."
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every run of this MLflow experiment (e.g. a task name)")
    which.add_argument("--sweep", help="a sweep: its parent run id, or its directory")
    parser.add_argument("--filter", default="", help="an MLflow search filter, e.g. \"params.cell = 'lstm'\"")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="seqexp's outputs dir")
    parser.add_argument("--out", type=Path, help="where to write the report (default: outputs/reports/...)")
    args = parser.parse_args(argv)

    client = MlflowClient(tracking_uri(args.outputs))
    if args.sweep:
        sweep_dir = Path(args.sweep)
        parent = (sweep_dir / PARENT_RUN_FILE).read_text().strip() if sweep_dir.is_dir() else args.sweep
        report_sweep(client, parent, args.out or args.outputs / "reports" / f"sweep-{parent}")
        return
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        names = sorted(e.name for e in client.search_experiments())
        raise SystemExit(f"seqexp-report: no experiment {args.experiment!r}; there are: {', '.join(names)}")
    training_runs = "params.task != ''"  # not the parent runs of sweeps, which have no params
    query = " and ".join(filter(None, [training_runs, args.filter]))
    runs = client.search_runs([experiment.experiment_id], query, max_results=50_000)
    if not runs:
        raise SystemExit(f"seqexp-report: no runs in {args.experiment!r} match {args.filter!r}")
    write_report(client, runs, args.out or args.outputs / "reports" / args.experiment, args.experiment)
