"""The cluster pieces without a cluster: what a missing Ray says, what the Ray launcher leaves alone,
a PostgreSQL stopped where there is none, a run waiting out a tracking server's restart (the real
ones: tests/test_cluster_*.py, -m cluster)."""

from __future__ import annotations

import http.server
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from cluster import LOOPBACK, Health, free_port
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.config.location import CONF
from seqexp.search import jobs
from seqexp.search.plugin import register_sweeper
from seqexp.search.ray_jobs import environment, init_arguments, ray_module
from seqexp.tracking import connection, postgres
from seqexp.tracking.connection import GuardedClient, TrackingLost
from seqexp.tracking.runs import check_reachable, ray_tags


def test_without_ray_the_launcher_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"hydra/launcher=ray needs Ray: pip install 'seqexp\[cluster\]'"):
        ray_module()


def test_a_sweep_on_ray_without_ray_stops_saying_what_to_install(run_seqexp, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SystemExit):
        run_seqexp("-m", "hydra/launcher=ray", "seed=0,1", *TINY)
    assert "pip install 'seqexp[cluster]'" in capsys.readouterr().err


def test_the_sweeper_runs_trials_as_they_end_on_ray() -> None:
    register_sweeper()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        config = compose("config", overrides=["hydra/launcher=ray"], return_hydra_config=True)
    launcher = instantiate(config.hydra.launcher)
    loopback = {"_node_ip_address": "127.0.0.1"}  # the driver on loopback
    assert launcher.settings == {"address": None, "num_cpus": 1, "num_gpus": 0, "init": loopback}
    kind = type(launcher)
    assert jobs.ADAPTERS[f"{kind.__module__}.{kind.__qualname__}"] == "seqexp.search.ray_jobs.RayJobs"


def test_the_ray_driver_stays_on_loopback_unless_told_another_address() -> None:
    head = {"address": "127.0.0.1:6390"}
    assert init_arguments({**head, "num_cpus": 1})["_node_ip_address"] == "127.0.0.1"
    assert init_arguments({**head, "init": {"num_cpus": 2}})["_node_ip_address"] == "127.0.0.1"
    told = init_arguments({"address": "10.0.0.1:6379", "init": {"_node_ip_address": "10.0.0.5"}})
    assert told == {"address": "10.0.0.1:6379", "log_to_driver": False, "_node_ip_address": "10.0.0.5"}
    assert init_arguments({}, {"RAY_ADDRESS": "127.0.0.1:6390"})["address"] == "127.0.0.1:6390"


def test_seqexp_never_starts_a_ray_of_its_own(run_seqexp, monkeypatch, capsys) -> None:
    """A Ray node listens on every interface (GCS, raylet, agents), so without a cluster to join the
    sweep stops before any job, saying what to give, and no Ray is started."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="set hydra.launcher.address=HOST:PORT"):
        init_arguments({"address": None, "num_cpus": 1}, {})
    with pytest.raises(SystemExit):
        run_seqexp("-m", "hydra/launcher=ray", "seed=0,1", *TINY)
    said = capsys.readouterr().err
    assert "hydra.launcher.address=HOST:PORT" in said and "hydra/launcher=per_core" in said
    assert not sys.modules["ray"].is_initialized(), "no Ray was started"


def test_a_run_outside_ray_has_no_node_tag_and_imports_no_ray(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert ray_tags() == {}
    assert "ray" not in sys.modules


def test_a_jobs_environment_is_set_for_the_job_and_put_back_after(monkeypatch) -> None:
    monkeypatch.setenv("SEQEXP_OUTPUTS", "/before")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with environment({"SEQEXP_OUTPUTS": "/job", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5055"}):
        assert os.environ["SEQEXP_OUTPUTS"] == "/job"
        assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5055"
    assert os.environ["SEQEXP_OUTPUTS"] == "/before" and "MLFLOW_TRACKING_URI" not in os.environ


def test_stopping_a_postgres_where_there_is_none_says_so_and_makes_none(tmp_path) -> None:
    with pytest.raises(SystemExit, match="there is no PostgreSQL in"):
        postgres.stop(tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("when", ["mid-run", "at the start"])
def test_a_run_waits_out_a_server_restart_within_its_patience(when, monkeypatch) -> None:
    monkeypatch.setattr(connection, "PROBE_EVERY_S", 0.1)
    monkeypatch.setenv(connection.PATIENCE_ENV, "30")
    port = free_port()
    uri = f"http://{LOOPBACK}:{port}"
    servers: list[http.server.ThreadingHTTPServer] = []

    def back() -> None:  # the server answers again half a second after the run asked
        servers.append(http.server.ThreadingHTTPServer((LOOPBACK, port), Health))
        threading.Thread(target=servers[0].serve_forever, daemon=True).start()

    threading.Timer(0.5, back).start()
    start = time.monotonic()
    try:
        if when == "mid-run":
            assert GuardedClient(Echo(), uri, lambda: "").log(7) == 7
        else:
            check_reachable(uri)
    finally:
        servers[0].shutdown()
    assert time.monotonic() - start >= 0.5, "it waited for the server"


def test_without_patience_a_guarded_call_stops_at_once_on_a_server_gone() -> None:
    with pytest.raises(TrackingLost, match="stopped answering"):
        GuardedClient(Echo(), f"http://{LOOPBACK}:{free_port()}", lambda: "").log(7)


class Echo:
    def log(self, value: int) -> int:
        return value


def test_stopping_a_postgres_stops_it_even_where_its_user_cannot_reach_the_directory(tmp_path) -> None:
    database = tmp_path / "postgres"
    postgres.database_url(database, "mlflow")
    pid = int((database / "postmaster.pid").read_text().split()[0])
    tmp_path.chmod(0o700)  # as pytest resets its temporary tree: the server's own user is shut out
    postgres.stop(database)
    assert not (database / "postmaster.pid").exists()
    assert not running(pid)
    postgres.stop(database)  # a stopped server is left as it is


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (an ended one that nobody reaped, a zombie, does not)."""
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\tZ" not in status.read_text().split("State:")[1].splitlines()[0]
