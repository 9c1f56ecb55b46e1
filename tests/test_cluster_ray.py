"""hydra/launcher=ray on a real Ray cluster: a head and a second node started as separate processes
(``ray start``), recording to a tracking server on PostgreSQL. A sweep's jobs land on both nodes,
each recorded once under its parent run; a node killed mid-sweep leaves its job FAILED with the
reason and the others finished."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import LOOPBACK, end, free_port, loopback_only, mlflow_server, ray_node
from mlflow import MlflowClient
from sizes import TINY

from seqexp.tracking import postgres
from seqexp.tracking.runs import TAG_FAILURE, TAG_PARENT, TAG_RAY_NODE

pytestmark = pytest.mark.cluster
LONGER = [*TINY, "trainer.max_steps=1500", "data.batches_per_epoch=30"]
"""Jobs of tens of seconds each: long enough that the job on the node to be killed is still running
when the kill comes (at 300 steps it had once finished already)."""


class Cluster:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.database = home / "postgres"
        self.port, self.ray_port = free_port(), free_port()
        self.uri = f"http://{LOOPBACK}:{self.port}"
        self.server = mlflow_server(self.port, postgres.database_url(self.database, "mlflow"), home)
        self.head = ray_node(self.ray_port, home, head=True)
        self.node = ray_node(self.ray_port, home, head=False)
        self.wait_for_cpus(2)

    def wait_for_cpus(self, cpus: int) -> None:
        deadline = time.monotonic() + 120
        while f"/{cpus}.0 CPU" not in self.status():
            assert time.monotonic() < deadline, self.status()
            time.sleep(1)

    def status(self) -> str:
        done = subprocess.run(
            ["ray", "status", f"--address={LOOPBACK}:{self.ray_port}"], capture_output=True, text=True
        )
        return done.stdout + done.stderr

    def sweep(self, *overrides: str) -> subprocess.Popen:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.uri, "SEQEXP_OUTPUTS": str(self.home / "outputs")}
        command = ["seqexp", "-m", "hydra/launcher=ray", f"hydra.launcher.address={LOOPBACK}:{self.ray_port}"]
        return subprocess.Popen(
            [*command, *overrides],
            env=env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> None:
        for process in (self.node, self.head, self.server):
            end(process)
        postgres.stop(self.database)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    loopback_only()
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


def children(client: MlflowClient, parent: str) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{TAG_PARENT}` = '{parent}'")


def parent_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "attributes.run_name LIKE 'sweep-%'", order_by=["start_time DESC"])


def test_a_sweeps_jobs_land_on_both_nodes_each_recorded_once_under_its_parent(cluster) -> None:
    sweep = cluster.sweep("seed=0,1,2,3,4,5", *TINY)
    said, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, said[-3000:]

    client = MlflowClient(cluster.uri)
    [parent] = parent_runs(client)
    runs = children(client, parent.info.run_id)
    assert sorted(int(run.data.tags["seqexp.job"]) for run in runs) == list(range(6)), "every job once"
    assert sorted(run.data.params["seed"] for run in runs) == [str(seed) for seed in range(6)]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert len({run.data.tags[TAG_RAY_NODE] for run in runs}) == 2, "jobs ran on both nodes"
    assert parent.info.status == "FINISHED"


def test_a_node_killed_mid_sweep_leaves_its_job_failed_with_the_reason_and_the_rest_finished(cluster) -> None:
    client = MlflowClient(cluster.uri)
    before = {run.info.run_id for run in parent_runs(client)}
    sweep = cluster.sweep("seed=0,1,2,3,4,5", *LONGER)
    deadline = time.monotonic() + 300
    while True:  # two jobs running, one on each node: the one not on the head's node is the victim's
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()[-3000:]
        parents = [run for run in parent_runs(client) if run.info.run_id not in before]
        running = (
            [r for r in children(client, parents[0].info.run_id) if r.info.status == "RUNNING"]
            if parents
            else []
        )
        if len({run.data.tags.get(TAG_RAY_NODE) for run in running}) == 2:
            break
        time.sleep(0.5)
    nodes = {run.data.tags[TAG_RAY_NODE]: run for run in running}
    head_node = head_node_id(cluster)
    [victim] = [run for node, run in nodes.items() if node != head_node]
    end(cluster.node, signal.SIGKILL)
    said, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, said[-3000:]

    runs = children(client, parents[0].info.run_id)
    assert sorted(int(run.data.tags["seqexp.job"]) for run in runs) == list(range(6)), "every job once"
    lost = client.get_run(victim.info.run_id)
    assert lost.info.status == "FAILED"
    assert "Error" in lost.data.tags[TAG_FAILURE], lost.data.tags[TAG_FAILURE]
    others = [run for run in runs if run.info.run_id != victim.info.run_id]
    assert {run.info.status for run in others} == {"FINISHED"}, [
        (r.info.status, r.data.tags.get(TAG_FAILURE)) for r in others
    ]
    assert {run.data.tags[TAG_RAY_NODE] for run in others} == {head_node}, "the rest ran on the head"
    assert client.get_run(parents[0].info.run_id).info.status == "FINISHED"


def head_node_id(cluster: Cluster) -> str:
    """The head's Ray node id, as the cluster lists it."""
    script = (
        "import ray; ray.init(address='{}', log_to_driver=False); "
        "print([n['NodeID'] for n in ray.nodes() if 'node:__internal_head__' in n['Resources']][0])"
    )
    done = subprocess.run(
        ["python", "-c", script.format(f"{LOOPBACK}:{cluster.ray_port}")],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]
