"""``seqexp-rerun`` and ``seqexp-resume``: a recorded run again, from its MLflow record alone."""

from __future__ import annotations

import argparse
import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from seqexp.checks import ConfigError
from seqexp.commands.train import RunFailed, RunResult, train
from seqexp.models.data import DATA_SCHEME, DATA_SCHEMES
from seqexp.models.sequence import KERNEL_TAG
from seqexp.tracking.checkpoints import LAST, checkpoint_dir
from seqexp.tracking.records import (
    CORPUS_TAG,
    TRUSTED_MODULES_ENV,
    check_corpus,
    check_record,
    migrated,
    under,
)
from seqexp.tracking.runs import (
    CONFIG_ARTIFACT,
    TAG_DATA_SCHEME,
    TAG_RUN_DIR,
    check_reachable,
    quiet_artifact_downloads,
    store_client,
    tracking_uri,
)

console = Console()


def recorded_config(client: MlflowClient, run_id: str) -> DictConfig:
    """The resolved config that run ``run_id`` logged as its artifact (loaded, not resolved); no
    download progress bar in front of the command's own output."""
    with tempfile.TemporaryDirectory() as tmp, quiet_artifact_downloads():
        path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        return migrated(OmegaConf.load(path))


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def kernels_in(tags: dict[str, str]) -> dict[str, str]:
    """The kernels a run's recurrent stacks ran on, from its tags (none for a run recorded before
    seqexp tagged them)."""
    return {tag: kernel for tag, kernel in sorted(tags.items()) if tag.startswith(KERNEL_TAG)}


def data_scheme_change(tags: dict[str, str]) -> str | None:
    """Why the data differ, if the recorded run drew them by another version of seqexp's data scheme
    than this code does (a run recorded without the tag used version 1); ``None`` if it did not."""
    recorded = tags.get(TAG_DATA_SCHEME, "1")
    if recorded == DATA_SCHEME:
        return None
    return (
        f"the recorded run drew its data by seqexp's data scheme {recorded} "
        f"({DATA_SCHEMES.get(recorded, 'unknown to this version of seqexp')}); this rerun draws them "
        f"by scheme {DATA_SCHEME} ({DATA_SCHEMES[DATA_SCHEME]}): the metrics may differ because "
        "of the data alone"
    )


def rerun(client: MlflowClient, run_id: str, outputs: Path, trust: bool = False) -> tuple[RunResult, bool]:
    """Run ``run_id``'s recorded config again as a new run linked to it; do the final metrics match?"""
    cfg = recorded_config(client, run_id)
    recorded = client.get_run(run_id).data
    check_record(cfg, trust)
    check_corpus(cfg, recorded.tags.get(CORPUS_TAG), trust)
    cfg.paths.outputs = str(outputs)
    run_dir = outputs / "reruns" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    run_dir.mkdir(parents=True)
    if scheme_change := data_scheme_change(recorded.tags):
        console.print(f"[bold yellow]{scheme_change}[/]", soft_wrap=True)
    result = train(cfg, run_dir, tags={"seqexp.rerun_of": run_id})
    compared = {k: (recorded.metrics[k], v) for k, v in result.metrics.items() if k in recorded.metrics}
    matches = all(same(a, b) for a, b in compared.values())
    table = Table("metric", "recorded", "rerun", "same", title=f"rerun of {run_id}")
    for name, (a, b) in sorted(compared.items()):
        table.add_row(name, repr(a), repr(b), "yes" if same(a, b) else "[red]no[/]")
    console.print(table)
    console.print(f"the final metrics {'match exactly' if matches else '[bold red]differ[/]'}")
    if scheme_change and not matches:
        console.print(f"they were drawn from other data: {scheme_change}", soft_wrap=True)
    ran_on = kernels_in(recorded.tags)
    runs_on = kernels_in(client.get_run(result.run_id).data.tags) if result.run_id else {}
    if ran_on and runs_on and ran_on != runs_on:
        console.print(
            f"the recorded run ran on {', '.join(ran_on.values())}, this rerun on "
            f"{', '.join(runs_on.values())}: the same function, with its sums in another order"
        )
    if result.run_id:
        client.set_tag(result.run_id, "seqexp.rerun_matches", str(matches))
        client.set_tag(run_id, f"seqexp.commands.rerun.{result.run_id}", str(matches))
    return result, matches


def resume(client: MlflowClient, run_id: str, outputs: Path, trust: bool = False) -> RunResult:
    """Continue ``run_id`` from the last checkpoint in its run directory, into the same MLflow run.
    The run directory must lie in ``outputs``: a resumed run writes nowhere else."""
    cfg = recorded_config(client, run_id)
    tags = client.get_run(run_id).data.tags
    check_record(cfg, trust)
    check_corpus(cfg, tags.get(CORPUS_TAG), trust)
    run_dir = under(Path(tags[TAG_RUN_DIR]), outputs, f"run {run_id}'s run dir")
    if not (checkpoint_dir(run_dir) / LAST).exists():
        raise ConfigError(f"run {run_id} has no checkpoint to resume from in {checkpoint_dir(run_dir)}")
    return train(cfg, run_dir, resume_run=run_id)


TRUST_HELP = (
    "run the record even if it names a _target_ that seqexp's conf/ does not and that is not defined "
    f"in seqexp or in a module listed (comma-separated) in ${TRUSTED_MODULES_ENV}, holds a ${{...}} "
    "interpolation, or trains on a corpus outside the working directory or changed since the run"
).replace("%", "%%")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("run_id", help="the MLflow run id")
    p.add_argument("--outputs", type=Path, default=Path("outputs"), help="seqexp's outputs dir")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    return p


def command(prog: str, description: str, action: Any) -> None:
    args = parser(prog, description).parse_args()
    uri = tracking_uri(args.outputs)
    try:
        check_reachable(uri)
        action(store_client(uri), args)
    except ConfigError as error:
        raise SystemExit(f"{prog}: {error}") from None
    except RunFailed as failure:
        raise SystemExit(f"{prog}: the run failed: {failure}") from None


def rerun_main() -> None:
    def action(client: MlflowClient, args: argparse.Namespace) -> None:
        _, matches = rerun(client, args.run_id, args.outputs, args.trust)
        if not matches:
            raise SystemExit(1)

    command(
        "seqexp-rerun", "Run a recorded run again from its record; say whether the metrics match.", action
    )


def resume_main() -> None:
    command(
        "seqexp-resume",
        "Continue a killed run from its last checkpoint, into the same MLflow run.",
        lambda client, args: resume(client, args.run_id, args.outputs, args.trust),
    )
