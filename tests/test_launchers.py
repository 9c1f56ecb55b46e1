"""Beyond one process: parallel jobs, SLURM's local stand-in, a tracking server, DDP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sizes import TINY


def finished_children(mlflow: MlflowClient) -> list:
    runs = mlflow.search_runs([e.experiment_id for e in mlflow.search_experiments()])
    parents = {r.info.run_id for r in runs if "seqexp.headline" not in r.data.tags}
    children = [r for r in runs if r.info.run_id not in parents]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == parents
    return [r for r in children if r.info.status == "FINISHED"]


def test_four_parallel_jobs_all_land_in_one_sqlite_store(run_seqexp, records) -> None:
    run_seqexp(
        "-m",
        *TINY,
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=4",
        "cell=rnn,gru,lstm,peephole",
    )
    runs = finished_children(records)
    assert sorted(r.data.params["cell"] for r in runs) == ["gru", "lstm", "peephole", "rnn"]


def test_submitit_local_launcher_runs_a_two_job_sweep(run_seqexp, records) -> None:
    run_seqexp("-m", *TINY, "hydra/launcher=submitit_local", "seed=0,1")
    runs = finished_children(records)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path: Path):
    """``mlflow server`` with a database backend, listening on 127.0.0.1 only."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--default-artifact-root",
            "mlflow-artifacts:/",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,  # whatever it writes stays out of the source tree
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


def test_a_run_logs_to_a_tracking_server(tracking_server, outputs, monkeypatch, run_seqexp) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    run_seqexp(*TINY)

    assert not (outputs / "mlflow.db").exists(), "nothing went to the local store"
    server = MlflowClient(tracking_server)
    [run] = server.search_runs([server.get_experiment_by_name("adding").experiment_id])
    assert run.info.status == "FINISHED"
    assert {"train/loss", "val/mse"} <= run.data.metrics.keys()
    assert "config.yaml" in [a.path for a in server.list_artifacts(run.info.run_id)]
    assert list((outputs.parent / "server-artifacts").rglob("config.yaml")), "the server keeps the artifacts"


def test_ddp_with_two_cpu_processes_trains_a_few_steps(outputs, records) -> None:
    env = {**os.environ, "SEQEXP_OUTPUTS": str(outputs)}
    subprocess.run(
        ["seqexp", *TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    [run] = records.search_runs(["1"])
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "ddp"
    steps = [m.step for m in records.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(6)), "one record per step, from rank 0 only"
