"""``seqexp-compare``: a fair comparison of configs (``cell=rnn,gru,lstm``): each tuned with the same
search and trial budget on validation (seqexp's Optuna sweeper), then its tuned config trained over
fresh seeds and compared on test, with intervals (see seqexp/search/README.md)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from seqexp.checks import ConfigError
from seqexp.config.compose import combinations, composed
from seqexp.search.compare import (
    DEFAULT_SEARCH,
    Compared,
    digest,
    safe,
    seed_name,
    summary,
    trial_names,
    tuned,
)

if TYPE_CHECKING:  # Hydra, Optuna and MLflow load when a comparison starts, not for --help
    from mlflow.entities import Run

    from seqexp.tracking.runs import PatientClient

TRIALS, SEEDS = 20, 5
SWEEPER_ONLY = ("hydra.sweeper.", "hydra/sweeper/")
"""Overrides for the tunings alone (the seeds' sweeps use Hydra's basic sweeper)."""
console = Console()
SEQEXP = [sys.executable, "-c", "from seqexp.commands.train import main; main()"]
"""The ``seqexp`` command, in a process of its own."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqexp-compare",
        description="Compare configs fairly: each combination of the comma-separated values is tuned "
        "with the same search (--search) and the same number of trials (--trials) on its validation "
        "metric, at seed 0; each tuned config is then trained at seeds 1..--seeds and the configs are "
        "compared on the test metric of their selected checkpoints, with 95% intervals. Running the "
        "same command again continues where it stopped (the studies are stored; finished seeds kept).",
        epilog="e.g. seqexp-compare cell=rnn,gru,lstm,peephole task=adding task.seq_len=100",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides of seqexp's config, as for `seqexp`")
    p.add_argument(
        "--search",
        action="append",
        metavar="KEY=SPEC",
        help=f"a searched key in the Optuna sweeper's syntax, repeatable (default: '{DEFAULT_SEARCH}')",
    )
    p.add_argument("--trials", type=int, default=TRIALS, help=f"tuning trials per config (default {TRIALS})")
    p.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds of each tuned config (default {SEEDS})")
    p.add_argument(
        "--sampler", choices=("tpe", "random"), default="tpe", help="Optuna's sampler (default tpe)"
    )
    p.add_argument("--sampler-seed", type=int, default=0, help="the sampler's seed (default 0)")
    return p


def seqexp(arguments: list[str], what: str) -> None:
    """Run ``seqexp ARGUMENTS``; stop the comparison if it fails."""
    console.print(f"[bold]{what}[/]: seqexp {' '.join(arguments)}", soft_wrap=True)
    if subprocess.run([*SEQEXP, *arguments]).returncode:
        raise SystemExit(f"seqexp-compare: {what} failed (seqexp {' '.join(arguments)})")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for key, value in (("--trials", args.trials), ("--seeds", args.seeds)):
        if value < 1:
            raise SystemExit(f"seqexp-compare: {key} must be at least 1 (got {value})")
    searches = args.search or [DEFAULT_SEARCH]
    try:
        compare(args, searches)
    except ConfigError as error:
        console.print(f"[bold red]seqexp-compare: bad config:[/] {error}", soft_wrap=True)
        sys.exit(2)


def checked_search(searches: list[str]) -> None:
    from seqexp.search.space import search_space

    try:
        space = search_space(searches)
    except Exception as error:
        raise ConfigError(f"--search: {error}") from None
    if space.fixed:
        raise ConfigError(
            f"--search takes sweeps (interval, range, choice), not values: {sorted(space.fixed)}"
        )


def compare(args: argparse.Namespace, searches: list[str]) -> None:
    """Tune, train the seeds and report every config, under one MLflow parent run."""
    from seqexp.search.compare import headline_metrics
    from seqexp.search.trials import default_storage
    from seqexp.tracking.runs import check_reachable, ends_run, patient_client, tracking_uri
    from seqexp.tracking.ui import describe_run, run_hint

    checked_search(searches)
    configs = combinations(args.overrides)
    first = composed([o for o in configs[0][1] if not o.startswith(SWEEPER_ONLY)])
    outputs = Path(first.paths.outputs)
    name = digest(args.overrides, searches, args.trials, args.seeds, args.sampler, args.sampler_seed)
    root = outputs / "compare" / name
    uri = tracking_uri(outputs)
    check_reachable(uri)
    client = patient_client(uri)
    parent = comparison_run(client, root, first.logger.experiment, outputs, args, searches)
    with ends_run(client, parent):
        storage = default_storage(outputs)
        compared, metric = tuned_and_seeded(args, searches, configs, root, storage, client, parent)
        show(compared, metric, args, searches, root)
        for report in ("report.md", "report.csv"):
            client.log_artifact(parent, str(root / report))
        describe_run(client, parent, (root / "report.md").read_text(), headline_metrics(compared, metric))
    console.print(f"MLflow parent run {parent}: {run_hint(client, uri, parent)}", soft_wrap=True)


def comparison_run(
    client: PatientClient,
    root: Path,
    experiment: str,
    outputs: Path,
    args: argparse.Namespace,
    searches: list[str],
) -> str:
    """The comparison's MLflow parent run, over its tunings' and seeds' sweeps: the one an earlier
    run of the same command opened (reopened), else a new one."""
    from seqexp.tracking.runs import PARENT_RUN_FILE, open_parent_run

    opened = root / PARENT_RUN_FILE
    if opened.exists():
        run_id = opened.read_text().strip()
        client.update_run(run_id, status="RUNNING")
        return run_id
    root.mkdir(parents=True, exist_ok=True)
    options = {"trials": args.trials, "seeds": args.seeds, "sampler": args.sampler}
    options |= {"sampler_seed": args.sampler_seed, "search": " ".join(searches)}
    run_id = open_parent_run(client, experiment, outputs, f"compare-{root.name}", args.overrides, options)
    opened.write_text(run_id)
    return run_id


def nest(client: PatientClient, parent: str, sweep_dir: Path, name: str) -> None:
    """Put the parent run of the sweep in ``sweep_dir`` under the comparison's run, named ``name``
    (``tuning cell=lstm``: what it is, and of which config) rather than after its directory."""
    from seqexp.tracking.runs import PARENT_RUN_FILE, TAG_PARENT

    sweep = (sweep_dir / PARENT_RUN_FILE).read_text().strip()
    client.set_tag(sweep, TAG_PARENT, parent)
    client.update_run(sweep, name=name)


def rename(client: PatientClient, names: dict[str, str]) -> None:
    """Name each run (by its id) as ``names`` says: in the MLflow UI, what it is of which config."""
    for run_id, name in names.items():
        client.update_run(run_id, name=name)


def seeds_to_solve(runs: list[Run]) -> list[float]:
    """The training sequences each finished run drew until its first solved validation, for the
    runs solved at some validation (as ``seqexp-report`` counts them)."""
    from seqexp.tracking.report import SEQUENCES, finished_values, runs_frame, sequences_to_solve

    frame = runs_frame(runs, [])
    frame[SEQUENCES] = sequences_to_solve(frame)
    return finished_values(frame, SEQUENCES)


def tuned_and_seeded(
    args: argparse.Namespace,
    searches: list[str],
    configs: list[tuple[str, list[str]]],
    root: Path,
    storage: str,
    client: PatientClient,
    parent: str,
) -> tuple[list[Compared], str]:
    """Each config tuned (a sweep of the Optuna sweeper), then its tuned config trained at the
    seeds (a sweep), both nested under ``parent``; what they found, and the task's metric."""
    import optuna
    from mlflow.exceptions import MlflowException

    from seqexp.config.build import build_task
    from seqexp.tracking.report import sweep_runs
    from seqexp.tracking.runs import PARENT_RUN_FILE

    compared: list[Compared] = []
    metric = ""
    for label, overrides in configs:
        shared = [o for o in overrides if not o.startswith(SWEEPER_ONLY)]
        spec = build_task(composed(shared)).spec
        metric = metric or spec.metric
        item = Compared(label, overrides, f"compare-{root.name}-{safe(label)}")
        tuning = [
            "-m",
            "hydra/sweeper=optuna",
            f"hydra/sweeper/sampler={args.sampler}",
            f"hydra.sweeper.sampler.seed={args.sampler_seed}",
            f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.study_name={item.study}",
            f"hydra.sweeper.direction={'maximize' if spec.higher_is_better else 'minimize'}",
            f"hydra.sweep.dir={root / safe(label) / 'tuning'}",
            "seed=0",
            *overrides,
            *searches,
        ]
        seqexp(tuning, f"{label}: tuning")
        nest(client, parent, root / safe(label) / "tuning", f"tuning {label}")
        study = optuna.load_study(study_name=item.study, storage=storage)
        tuned(item, study)
        rename(client, trial_names(label, study))
        if item.chosen:
            seeds_dir = root / safe(label) / "seeds"
            seeds = ",".join(str(seed) for seed in range(1, args.seeds + 1))
            if not finished(seeds_dir, client):
                evaluation = ["-m", f"hydra.sweep.dir={seeds_dir}", *shared, *item.chosen_overrides()]
                seqexp([*evaluation, f"seed={seeds}"], f"{label}: {args.seeds} seeds of the tuned config")
            nest(client, parent, seeds_dir, f"seeds {label}")
            try:
                runs = sweep_runs(client, (seeds_dir / PARENT_RUN_FILE).read_text().strip())
            except (OSError, MlflowException) as error:
                raise SystemExit(f"seqexp-compare: the seeds of {label} are not recorded: {error}") from None
            named = {run.info.run_id: seed_name(label, run.data.params.get("seed", "?")) for run in runs}
            rename(client, named)
            item.sequences = seeds_to_solve(runs)
            for run in runs:
                if run.info.status == "FINISHED" and f"test/{metric}" in run.data.metrics:
                    item.test.append(run.data.metrics[f"test/{metric}"])
                    item.solved.append(run.data.metrics.get("test/solved", 0.0) > 0.5)
                else:
                    item.seeds_failed += 1
        compared.append(item)
    return compared, metric


def finished(seeds_dir: Path, client: PatientClient) -> bool:
    """Did an earlier run of the same comparison train these seeds to the end?"""
    from seqexp.tracking.runs import PARENT_RUN_FILE

    parent = seeds_dir / PARENT_RUN_FILE
    return parent.exists() and client.get_run(parent.read_text().strip()).info.status == "FINISHED"


def show(
    compared: list[Compared], metric: str, args: argparse.Namespace, searches: list[str], root: Path
) -> None:
    """Print the comparison (in tables that fit the terminal) and write it (report.md, report.csv)
    in ``root``."""
    from seqexp.tracking.intervals import interval_explained
    from seqexp.tracking.report import print_frame

    table = summary(compared, metric)
    tuning_only = "".join(f" ({o})" for o in args.overrides if o.startswith(SWEEPER_ONLY))
    budget = (
        f"Each config tuned by {args.trials} trials of Optuna's {args.sampler} sampler (seed "
        f"{args.sampler_seed}) over {', '.join(searches)}, on val/{metric} at seed 0, pruning by the "
        f"median rule{tuning_only}; each tuned config then trained at seeds 1..{args.seeds} and judged on "
        f"test/{metric} of its selected checkpoint: mean ± sample std; the 95% interval: "
        f"{interval_explained(f'test/{metric}')}; test solve rate with its 95% Wilson interval (failed "
        "seeds count as unsolved); the median training sequences the seeds drew until their first "
        "solved validation (val/solved_step × data.batch_size × a DDP run's processes), of the seeds "
        "solved at some validation."
    )
    print_frame(table, "seqexp-compare", ["config"], console)
    console.print(budget, soft_wrap=True)
    root.mkdir(parents=True, exist_ok=True)
    table.to_csv(root / "report.csv", index=False)
    (root / "report.md").write_text(f"# seqexp-compare\n\n{table.to_markdown(index=False)}\n\n{budget}\n")
    console.print(f"report written to {root}", soft_wrap=True)
