"""Where to look at runs in MLflow's UI: the address of a run's page, and of a sweep's page, where its
runs are listed and their validation metrics charted without a click. The routes and the view-state
format are those of MLflow 3.17's UI (pyproject pins the minor version; tests/test_mlflow_ui.py opens
them in a browser)."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

from mlflow import MlflowClient
from mlflow.entities import Run

from seqexp.tracking.runs import TAG_SWEEP_ID, PatientClient, ui_command

LOCAL_UI = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves a local store, by default."""
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
"""Opens MLflow 3's model-training side of the UI (its runs), not the GenAI side (traces), whatever
side the browser last showed."""
SHARED_VIEW_TAG = "mlflow.sharedViewState."
"""An experiment tag holding a view of its runs page (MLflow's "share view"), opened by its key."""
VALIDATION = "val/"
"""The prefix of the validation metrics, the charts a sweep's page shows."""
NOT_GROUPED = ("seed",)
"""Swept keys that are repetitions, not options to compare: a sweep's page averages over them."""
NOTE = "mlflow.note.content"
"""A run's description: the UI shows it, rendered as markdown, at the top of the run's page."""
NOTE_CHARS = 8000
"""The longest tag value MLflow stores."""
CUT = "\n\n(cut here: the whole report is among the run's artifacts)\n"


def ui_address(uri: str) -> str:
    """The UI of the store at ``uri``: a tracking server serves its own, a local store ``mlflow ui``'s."""
    return uri.rstrip("/") if urlsplit(uri).scheme in ("http", "https") else LOCAL_UI


def with_ui(uri: str, url: str) -> str:
    """``url``, and for a local store the command that serves it."""
    return url if ui_address(uri) != LOCAL_UI else f"{url}  (served by: {ui_command(uri)})"


def run_page(uri: str, experiment_id: str, run_id: str) -> str:
    """The page of one run."""
    return f"{ui_address(uri)}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def run_hint(client: MlflowClient | PatientClient, uri: str, run_id: str) -> str:
    """Where to see run ``run_id``, as a line to print."""
    experiment_id = client.get_run(run_id).info.experiment_id
    return f"see it at {with_ui(uri, run_page(uri, experiment_id, run_id))}"


def describe_run(
    client: MlflowClient | PatientClient, run_id: str, markdown: str, metrics: dict[str, float]
) -> None:
    """Show a command's result where a user lands on its parent run's page: ``markdown`` (its table)
    as the run's description, and the finite ``metrics`` (its headline numbers) as the run's."""
    from mlflow.entities import Metric

    fits = markdown if len(markdown) <= NOTE_CHARS else markdown[: NOTE_CHARS - len(CUT)] + CUT
    client.set_tag(run_id, NOTE, fits)
    stamp = int(1000 * time.time())
    finite = [Metric(key, value, stamp, 0) for key, value in metrics.items() if math.isfinite(value)]
    if finite:
        client.log_batch(run_id, metrics=finite)


def sweep_view(parent: str, runs: list[Run], swept: list[str]) -> dict[str, Any]:
    """The runs page of the sweep ``parent`` (its ``runs``, in one experiment): only the sweep's runs,
    in groups by the swept keys that vary among them (averaged over seeds), charts of ``val/…``. The
    groups are what shows the runs: MLflow's runs list would otherwise fold them under their parent."""
    varying = [
        key
        for key in swept
        if key not in NOT_GROUPED
        and all(key in run.data.params for run in runs)
        and len({run.data.params[key] for run in runs}) > 1
    ]
    groups = [{"mode": "param", "groupByData": key} for key in varying]
    return {
        "searchFilter": f"tags.`{TAG_SWEEP_ID}` = '{parent}'",
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": groups or [{"mode": "tag", "groupByData": TAG_SWEEP_ID}],
        },
        "useGroupedValuesInCharts": bool(groups),  # one line per option; with no options, one per run
        "chartsSearchFilter": VALIDATION,
    }


def sweep_pages(
    client: MlflowClient | PatientClient, uri: str, parent: str, runs: list[Run], swept: list[str]
) -> dict[str, str]:
    """Saves the view of sweep ``parent`` in each experiment its ``runs`` are in, and returns each
    experiment's page of it, by experiment name."""
    by_experiment: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_experiment[run.info.experiment_id].append(run)
    key = f"seqexp-sweep-{parent}"
    pages = {}
    for experiment_id, experiment_runs in sorted(by_experiment.items()):
        view = sweep_view(parent, experiment_runs, swept)
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, json.dumps(view))
        name = client.get_experiment(experiment_id).name
        pages[name] = (
            f"{ui_address(uri)}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={key}&compareRunsMode=CHART&{MODEL_TRAINING_VIEW}"
        )
    return pages
