"""The runs a horizon search can reuse: those recorded in MLflow for the same resolved config (but
its seed and its length) and the same data scheme, read as "solved within the step budget or not"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig

from seqexp.diagnostics.solved import SOLVED_STEP
from seqexp.models.data import DATA_SCHEME
from seqexp.tracking.runs import TAG_DATA_SCHEME, TAG_FAILURE, PatientClient, run_params

NOT_COMPARED = ("seed", "threads", "paths.outputs", "trainer.enable_progress_bar")
"""Keys that do not change what a run learns (or, ``seed``, that the search varies itself)."""
NOT_COMPARED_PREFIXES = ("logger.",)
"""Where a run is recorded, not what it learns."""
PARAM_CHARS = 250
"""Lightning's MLflow logger records a parameter's first 250 characters."""


@dataclass(frozen=True)
class Outcome:
    """One seed's run at one length."""

    solved: bool
    """Solved within the step budget: the run logged ``val/solved_step``."""
    run_id: str | None
    solved_step: float | None
    reused: bool
    """Recorded before this search, not trained by it."""


def signature(params: Mapping[str, str], length_key: str) -> frozenset[tuple[str, str]]:
    """What two runs must share to be probes of one search: every recorded parameter but the seed,
    the length and :data:`NOT_COMPARED`."""
    ignored = {*NOT_COMPARED, length_key.removeprefix("+")}
    return frozenset(
        (key, value)
        for key, value in params.items()
        if key not in ignored and not key.startswith(NOT_COMPARED_PREFIXES)
    )


def recorded_params(cfg: DictConfig) -> dict[str, str]:
    """The parameters a run of ``cfg`` records, as MLflow holds them."""
    return {key: str(value)[:PARAM_CHARS] for key, value in run_params(cfg).items()}


def outcome_of(run: Run) -> Outcome:
    step = run.data.metrics.get(SOLVED_STEP)
    return Outcome(step is not None, run.info.run_id, step, reused=True)


def usable(run: Run) -> bool:
    """A run that finished, or that failed in training (it raised or diverged: not solved); not one
    that was killed or crashed before it could say."""
    status = run.info.status
    return status == "FINISHED" or (status == "FAILED" and TAG_FAILURE in run.data.tags)


def recorded_outcomes(
    client: MlflowClient | PatientClient,
    experiment_id: str,
    wanted: frozenset[tuple[str, str]],
    length_key: str,
) -> dict[int, dict[int, Outcome]]:
    """length -> seed -> outcome of every usable run in the experiment with the ``wanted`` signature,
    drawn by this version of seqexp's data scheme (the first recorded, where a seed ran twice)."""
    key = length_key.removeprefix("+")
    found: dict[int, dict[int, Outcome]] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            f"tags.`{TAG_DATA_SCHEME}` = '{DATA_SCHEME}'",
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        for run in page:
            params = run.data.params
            if key not in params or "seed" not in params or not usable(run):
                continue
            if signature(params, length_key) != wanted:
                continue
            found.setdefault(int(params[key]), {}).setdefault(int(params["seed"]), outcome_of(run))
        token = page.token
        if not token:
            return found
