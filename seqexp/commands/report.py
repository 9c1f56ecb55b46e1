"""The ``seqexp-report`` command: a comparison of recorded runs (see :mod:`seqexp.tracking.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from seqexp.tracking.report import report_sweep, write_report
from seqexp.tracking.runs import PARENT_RUN_FILE, store_client, tracking_uri


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seqexp-report",
        description="Compare runs: tables (means and 95% intervals over seeds), verdicts and plots.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every run of this MLflow experiment (e.g. a task name)")
    which.add_argument("--sweep", help="a sweep: its parent run id, or its directory")
    parser.add_argument("--filter", default="", help="an MLflow search filter, e.g. \"params.cell = 'lstm'\"")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="seqexp's outputs dir")
    parser.add_argument("--out", type=Path, help="where to write the report (default: outputs/reports/...)")
    args = parser.parse_args(argv)

    client = store_client(tracking_uri(args.outputs))
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
