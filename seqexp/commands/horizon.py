"""``seqexp-horizon``: each config's memory horizon, the longest dependency length it solves in k of n
seeds within its step budget (see seqexp/search/HORIZON.md)."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from seqexp.checks import ConfigError
from seqexp.config.compose import combinations, composed, override_key
from seqexp.config.renamed import renamed_overrides
from seqexp.search.horizon import check_search, decided, find_horizon

if TYPE_CHECKING:  # MLflow and matplotlib load when a search starts, not for --help
    from seqexp.search.horizon_records import Outcome
    from seqexp.search.horizon_report import Searched
    from seqexp.tracking.runs import PatientClient

K, N, RESOLUTION, MIN_LENGTH, MAX_LENGTH = 2, 3, 0.1, 2, 4096
EARLY_STOPPING = {"_target_": "seqexp.diagnostics.solved.StopOnceSolved"}
"""Probes stop once solved: whether, and how fast, is all a probe asks."""
TAG_HORIZON = "seqexp.horizon"
"""On each run a search trains: the config (its swept overrides) it is a probe of."""
TAG_HORIZON_DIR = "seqexp.horizon_dir"
"""On the parent run: the directory of the search's runs, plot and summary."""
console = Console()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqexp-horizon",
        description="Each config's memory horizon: the longest length T (the task's length knob) that it "
        "solves in at least K of N seeds within its step budget (trainer.max_steps), by doubling from "
        "--start (or halving, if --start fails), then bisection down to the resolution. Runs already "
        "recorded in MLflow for the same config and data scheme are reused; everything is recorded "
        "under one parent run, with a table and a plot of the horizons. Assumes success is monotone in T.",
        epilog="e.g. seqexp-horizon cell=rnn,gru,lstm,peephole task=adding "
        "(comma-separated values: one search per combination)",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides of seqexp's config, as for `seqexp`")
    p.add_argument("--k", type=int, default=K, help=f"seeds that must solve a length (default {K})")
    p.add_argument("--n", type=int, default=N, help=f"seeds tried at most per length (default {N})")
    p.add_argument(
        "--resolution",
        type=float,
        default=RESOLUTION,
        help=f"stop once the bracket is within this share of its lower end ({RESOLUTION * 100:.0f}%%)",
    )
    p.add_argument("--start", type=int, help="the first length tried (default: the config's value)")
    p.add_argument(
        "--min-length", type=int, default=MIN_LENGTH, help=f"shortest length (default {MIN_LENGTH})"
    )
    p.add_argument(
        "--max-length", type=int, default=MAX_LENGTH, help=f"longest length (default {MAX_LENGTH})"
    )
    p.add_argument(
        "--length-key",
        help="the config key that sets the length (default: the task's own, Task.length_key: "
        "task.seq_len for most tasks, task.lookahead for tagging)",
    )
    p.add_argument(
        "--no-early-stopping",
        action="store_true",
        help="train every probe for its whole step budget (default: stop once solved, "
        "callbacks.early_stopping=StopOnceSolved, unless the config sets its own)",
    )
    return p


def safe(label: str) -> str:
    """A label as an MLflow metric name or a directory name."""
    return re.sub(r"[^\w.\-/ ]", "_", label).replace("/", "_").replace(" ", "_")


def length_key_of(cfg: DictConfig, chosen: str | None) -> str:
    """The key the search varies: ``--length-key``, else the task's own; it must hold an integer."""
    from seqexp.config.build import build_task

    task = build_task(cfg)
    key = chosen or task.length_key
    if key is None:
        hint = f" ({task.length_hint})" if task.length_hint else ""
        raise ConfigError(
            f"task {cfg.task.name} has no length knob that sets its dependency length{hint}; "
            "name one with --length-key"
        )
    value = OmegaConf.select(cfg, key, default=None)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"--length-key {key} must name an integer key of the config (it holds {value!r})")
    return key


def shortest_length(cfg: DictConfig, length_key: str, lower: int, upper: int) -> int:
    """The shortest length from ``lower`` up that the task accepts (e.g. temporal order needs 10): the
    search's floor."""
    from seqexp.config.build import build_task

    for length in range(lower, upper + 1):
        candidate = cfg.copy()
        OmegaConf.update(candidate, length_key, length)
        try:
            build_task(candidate)
        except ConfigError:
            continue
        return length
    raise ConfigError(f"task {cfg.task.name} accepts no {length_key} from {lower} to {upper}")


def probe_config(
    overrides: list[str], length_key: str, length: int, seed: int, early_stopping: bool
) -> DictConfig:
    """The config of one probe: ``overrides`` at ``length`` with ``seed``, stopping once solved
    (``early_stopping``) unless the overrides name their own early stopping."""
    cfg = composed([*overrides, f"{length_key}={length}", f"seed={seed}"])
    if early_stopping and cfg.callbacks.get("early_stopping") is None:
        cfg.callbacks.early_stopping = EARLY_STOPPING
    return cfg


def probe_name(label: str, length_key: str, length: int, seed: int) -> str:
    """A probe's run name, what it is of which config: ``probe cell=gru task.seq_len=40 seed=1``."""
    return f"probe {label} {length_key.removeprefix('+')}={length} seed={seed}"


@dataclass
class Probes:
    """The solver of one config's search: each seed at a length is reused from the record or trained
    (as a child of the search's parent run), until the verdict is known."""

    overrides: list[str]
    label: str
    length_key: str
    seeds: list[int]
    k: int
    early_stopping: bool
    recorded: dict[int, dict[int, Outcome]]
    parent: str
    run_root: Path
    client: PatientClient
    outcomes: dict[int, list[Outcome]] = field(default_factory=dict)

    def __call__(self, length: int) -> list[bool]:
        results: list[Outcome] = []
        for seed in self.seeds:
            if decided([o.solved for o in results], self.k, len(self.seeds)):
                break
            results.append(self.recorded.get(length, {}).get(seed) or self.train(length, seed))
        self.outcomes[length] = results
        return [o.solved for o in results]

    def reused(self, length: int) -> list[Outcome]:
        """The recorded outcomes at ``length``, seed by seed, as far as they go before a verdict."""
        known, results = self.recorded.get(length, {}), []
        for seed in self.seeds:
            if seed not in known or decided([o.solved for o in results], self.k, len(self.seeds)):
                break
            results.append(known[seed])
        return results

    def train(self, length: int, seed: int) -> Outcome:
        from seqexp.commands.train import RunFailed, train
        from seqexp.diagnostics.solved import SOLVED_STEP
        from seqexp.search.horizon_records import Outcome
        from seqexp.tracking.runs import TAG_PARENT

        console.print(f"[bold]{self.label}[/]: {self.length_key}={length}, seed {seed}")
        run_dir = self.run_root / safe(self.label) / f"{length}-seed{seed}"
        name = probe_name(self.label, self.length_key, length, seed)
        try:
            cfg = probe_config(self.overrides, self.length_key, length, seed, self.early_stopping)
            result = train(cfg, run_dir, tags={TAG_PARENT: self.parent, TAG_HORIZON: self.label})
        except RunFailed as failure:
            if failure.run_id:
                self.client.update_run(failure.run_id, name=name)
            return Outcome(False, failure.run_id, None, reused=False)
        self.client.update_run(result.run_id, name=name)
        step = self.client.get_run(result.run_id).data.metrics.get(SOLVED_STEP)
        return Outcome(step is not None, result.run_id, step, reused=False)


@dataclass(frozen=True)
class Plan:
    """One config's search, checked before anything is recorded."""

    label: str
    overrides: list[str]
    """Its overrides, less any of the length key or the seed (the search sets them)."""
    length_key: str
    start: int
    seeds: list[int]
    experiment: str
    min_length: int
    """``--min-length``, or the shortest length the task accepts above it."""
    max_length: int


def planned(args: argparse.Namespace) -> list[Plan]:
    """Every config's search, or a clear error about the first that cannot be searched."""
    plans = []
    for label, job in combinations(renamed_overrides(args.overrides)):
        base = composed(job)
        if base.logger.name != "mlflow":
            raise ConfigError(
                "seqexp-horizon records its probes in MLflow and reuses them: use logger=mlflow"
            )
        key = length_key_of(base, args.length_key)
        start = args.start if args.start is not None else OmegaConf.select(base, key)
        lowest, highest = min(args.min_length, start), max(args.max_length, start)
        check_search(args.k, args.n, args.resolution, start, lowest, highest)
        seeds = [base.seed + i for i in range(args.n)]
        kept = [line for line in job if override_key(line) not in (key, "seed")]
        floor = shortest_length(base, key, lowest, start)
        plans.append(Plan(label, kept, key, start, seeds, base.logger.experiment, floor, highest))
    return plans


def search(
    plan: Plan, args: argparse.Namespace, client: PatientClient, parent: str, run_root: Path
) -> Searched:
    """One config's horizon, reusing its recorded runs."""
    from seqexp.search.horizon_records import recorded_outcomes, recorded_params, signature
    from seqexp.search.horizon_report import Searched
    from seqexp.tracking.runs import experiment_id

    early_stopping = not args.no_early_stopping
    first = probe_config(plan.overrides, plan.length_key, plan.start, plan.seeds[0], early_stopping)
    wanted = signature(recorded_params(first), plan.length_key)
    experiment = experiment_id(client, plan.experiment, Path(first.paths.outputs))
    probes = Probes(
        plan.overrides,
        plan.label,
        plan.length_key,
        plan.seeds,
        args.k,
        early_stopping,
        recorded_outcomes(client, experiment, wanted, plan.length_key),
        parent,
        run_root,
        client,
    )
    found = find_horizon(
        probes,
        start=plan.start,
        k=args.k,
        n=args.n,
        resolution=args.resolution,
        min_length=plan.min_length,
        max_length=plan.max_length,
        recorded={length: [o.solved for o in probes.reused(length)] for length in probes.recorded},
    )
    outcomes = {p.length: probes.outcomes.get(p.length) or probes.reused(p.length) for p in found.probes}
    return Searched(plan.label, found, outcomes)


def horizons(args: argparse.Namespace) -> None:
    """Every config's horizon, under one MLflow parent run, with a table, a plot and a summary."""
    from seqexp.search.horizon_report import markdown, numbers, plot, show, write_summary
    from seqexp.tracking.runs import check_reachable, ends_run, open_parent_run, patient_client, tracking_uri
    from seqexp.tracking.ui import describe_run, run_hint

    plans = planned(args)
    outputs = Path(composed(plans[0].overrides).paths.outputs)
    uri = tracking_uri(outputs)
    check_reachable(uri)
    client = patient_client(uri)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    run_root = outputs / "horizon" / stamp
    run_root.mkdir(parents=True)
    options = {name: getattr(args, name) for name in ("k", "n", "resolution", "min_length", "max_length")}
    options |= {
        "length_key": " ".join(sorted({p.length_key for p in plans})),
        "early_stopping": not args.no_early_stopping,
    }
    tags = {TAG_HORIZON_DIR: str(run_root.resolve())}
    name = f"horizon-{stamp}"
    parent = open_parent_run(client, plans[0].experiment, outputs, name, args.overrides, options, tags)
    with ends_run(client, parent):
        searched = []
        for plan in plans:
            searched.append(search(plan, args, client, parent, run_root))
            for metric, value in numbers(searched[-1], safe(plan.label)).items():  # as each config ends
                client.log_metric(parent, metric, value)
        key = options["length_key"]
        show(searched, key, args.k, args.n, args.resolution, console)
        describe_run(client, parent, markdown(searched, key, args.k, args.n, args.resolution), {})
        for path in (
            plot(searched, key, run_root / "horizon.png"),
            write_summary(searched, run_root / "horizon.json"),
        ):
            client.log_artifact(parent, str(path))
    hint = run_hint(client, uri, parent)
    console.print(f"MLflow parent run {parent}: {hint}; plot and summary in {run_root}", soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from seqexp.commands.train import RunFailed

    try:
        horizons(args)
    except (ConfigError, ValueError) as error:
        raise SystemExit(f"seqexp-horizon: {error}") from None
    except RunFailed as failure:
        raise SystemExit(f"seqexp-horizon: a run failed: {failure}") from None
    finally:
        GlobalHydra.instance().clear()


if __name__ == "__main__":
    main(sys.argv[1:])
