"""seqexp/CLUSTER.md's commands, as written (its ```bash blocks, in order, in one shell), then what
they left: a sweep's runs on both Ray nodes under their parent run, and a study's trials each with its
run, in PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
from cluster import loopback_only
from mlflow import MlflowClient

from seqexp.search.trials import PARENT, RUN
from seqexp.tracking import postgres
from seqexp.tracking.runs import TAG_PARENT, TAG_RAY_NODE

pytestmark = pytest.mark.cluster
PAGE = Path(__file__).parents[1] / "seqexp" / "CLUSTER.md"


def commands(page: Path) -> str:
    """The page's ```bash blocks, in order."""
    return "\n".join(re.findall(r"^```bash\n(.*?)^```$", page.read_text(), flags=re.M | re.S))


def test_the_cluster_pages_commands_run_and_record_a_sweep_and_a_study(tmp_path) -> None:
    loopback_only()
    script = commands(PAGE)
    assert "ray start --head" in script and "hydra/sweeper=optuna" in script
    starts = re.findall(r"(?:ray start|mlflow server)[^\n]*(?:\\\n[^\n]*)*", script)
    assert len(starts) >= 3 and all(
        "--node-ip-address=127.0.0.1" in start or "--host 127.0.0.1" in start for start in starts
    ), "every server and node the page starts gives the loopback address (the namespace keeps Ray there)"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SEQEXP_OUTPUTS", "MLFLOW_TRACKING_URI")
    }
    page = subprocess.Popen(  # a session of its own: what the page starts is ended with it, if it fails
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        said, _ = page.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(page.pid, signal.SIGKILL)
    assert page.returncode == 0, said[-5000:]

    database = tmp_path / "outputs" / "postgres"
    try:
        client = MlflowClient(postgres.database_url(database, "mlflow"))
        experiments = [e.experiment_id for e in client.search_experiments()]
        [sweep] = client.search_runs(
            experiments, "attributes.run_name LIKE 'sweep-%' and tags.`seqexp.optuna_study` IS NULL"
        )
        runs = client.search_runs(experiments, f"tags.`{TAG_PARENT}` = '{sweep.info.run_id}'")
        assert sorted(run.data.params["seed"] for run in runs) == ["0", "1", "2", "3"]
        assert {run.info.status for run in runs} == {"FINISHED"}
        assert len({run.data.tags[TAG_RAY_NODE] for run in runs}) == 2, "the sweep ran on both nodes"

        storage = postgres.database_url(database, "optuna")
        [summary] = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials()
        assert len(trials) == 4 and all(trial.state.is_finished() for trial in trials)
        runs = client.search_runs(experiments, f"tags.`{TAG_PARENT}` = '{study.user_attrs[PARENT]}'")
        assert sorted(run.info.run_id for run in runs) == sorted(trial.system_attrs[RUN] for trial in trials)
        assert all(TAG_RAY_NODE in run.data.tags for run in runs), "the trials ran as Ray tasks"
    finally:
        postgres.stop(database)
