"""Sweeps started together on a fresh store each get their parent run, with every job linked to it;
a sweep whose parent run cannot be made stops, saying why, before any job runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sizes import TINY

from seqexp.tracking.runs import PARENT_RUN_FILE, TAG_PARENT, local_store

SHORT = [*TINY, "trainer.max_steps=2", "data.batches_per_epoch=2", "callbacks.gradient_flow=null"]


@pytest.mark.slow
def test_three_sweeps_started_at_once_on_a_fresh_store_link_every_job(outputs, records) -> None:
    env = {**os.environ, "SEQEXP_OUTPUTS": str(outputs)}
    command = ["seqexp", "-m", *SHORT, "seed=0,1"]
    sweeps = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [sweep.communicate(timeout=300)[1] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0, 0], "\n".join(e[-2000:] for e in errors)
    assert not [e for e in errors if "UserWarning: Callback" in e], "no callback failed"

    runs = records.search_runs([e.experiment_id for e in records.search_experiments()])
    parents = {run.info.run_id for run in runs if TAG_PARENT not in run.data.tags}
    children = [run for run in runs if TAG_PARENT in run.data.tags]
    assert len(parents) == 3 and len(children) == 6
    assert sorted(run.data.tags[TAG_PARENT] for run in children) == sorted(2 * list(parents))
    written = {(directory / PARENT_RUN_FILE).read_text() for directory in (outputs / "multirun").iterdir()}
    assert written == parents, "each sweep's directory names its own parent"


def test_a_sweep_whose_parent_run_cannot_be_made_stops_before_any_job(outputs, run_seqexp) -> None:
    outputs.mkdir(parents=True)
    store = outputs / "mlflow.db"
    store.write_text("not a database")

    with pytest.raises(SystemExit) as stopped:
        run_seqexp("-m", *SHORT, "seed=0,1")

    said = " ".join(str(stopped.value.code).split())
    assert said.startswith(
        f"seqexp: the sweep's parent run could not be made in the MLflow store at sqlite:///{store}"
    )
    assert "file is not a database" in said and said.endswith("no job was run")
    assert not list(outputs.glob("multirun/*/*")), "no job ran, no parent run file"
    assert store.read_text() == "not a database"


def test_only_a_local_store_is_locked() -> None:
    assert local_store("sqlite:////data/outputs/mlflow.db") == Path("/data/outputs/mlflow.db")
    assert local_store("file:///data/mlruns") == local_store("/data/mlruns") == Path("/data/mlruns")
    assert local_store("http://127.0.0.1:5000") is None
    assert local_store("postgresql://user@127.0.0.1/mlflow") is None
    assert local_store("sqlite://") is None


def test_a_sweep_whose_directory_cannot_be_made_says_so_not_that_the_store_failed(
    outputs, run_seqexp
) -> None:
    too_long = outputs / ("d" * 300)
    with pytest.raises(SystemExit) as stopped:
        run_seqexp("-m", *SHORT, "seed=0,1", f"hydra.sweep.dir={too_long}")

    said = " ".join(str(stopped.value.code).split())
    assert said.startswith("seqexp: the sweep's directory cannot be made (File name too long)")
    assert said.endswith("choose another hydra.sweep.dir; no job was run") and "MLflow" not in said
