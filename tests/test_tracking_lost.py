"""A tracking server that goes away mid-run costs no training: the run ends within seconds, naming
the server and how to resume, its record as of its last checkpoint; once the server is back,
``seqexp-resume`` finishes it, every step recorded once."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster import Health, free_port
from mlflow import MlflowClient
from sizes import TINY

from seqexp.tracking import connection
from seqexp.tracking.connection import TAG_CREATION, GuardedClient, TrackingLost

MAX_STEPS = 300
LONG_ENOUGH = [*TINY, f"trainer.max_steps={MAX_STEPS}", "data.batches_per_epoch=30"]
"""Ten epochs of a tiny model: the server is killed once the first checkpoint is on disk."""


def start_server(port: int, home: Path) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port``, its store and artifacts in ``home`` (kept when it is
    killed), in a process group of its own; returns once it answers."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{home / 'server.db'}", "--workers", "1"]
    command += ["--default-artifact-root", "mlflow-artifacts:/"]
    command += ["--artifacts-destination", str(home / "server-artifacts")]
    server = subprocess.Popen(
        command, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.2)


def kill(server: subprocess.Popen) -> None:
    """The server and its workers, at once, as a crash would."""
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


@pytest.fixture
def health() -> Iterator[str]:
    """A server that answers ``/health``, as a tracking server does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class Client:
    """An MLflow client's stand-in whose calls wait for ``release`` (and run ``meanwhile`` first)."""

    def __init__(self, release: threading.Event, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.calls = 0
        self.release = release
        self.meanwhile = meanwhile

    def log(self, value: int) -> int:
        self.calls += 1
        self.meanwhile()
        self.release.wait(timeout=60)
        return value


def test_a_guarded_call_goes_through_while_the_server_answers(health, monkeypatch) -> None:
    monkeypatch.setattr(connection, "PROBE_EVERY_S", 0.05)
    release = threading.Event()
    threading.Timer(0.3, release.set).start()
    assert GuardedClient(Client(release), health, lambda: "").log(7) == 7, "slow, but the server is there"


def test_a_guarded_call_ends_within_seconds_once_the_server_is_gone(health, monkeypatch) -> None:
    monkeypatch.setattr(connection, "PROBE_EVERY_S", 0.05)

    def server_goes() -> None:
        guarded.uri = "http://127.0.0.1:9"

    client = Client(threading.Event(), server_goes)  # a call that would hang
    guarded = GuardedClient(client, health, lambda: "do this")
    start = time.monotonic()
    with pytest.raises(TrackingLost, match=r"server at http://127.0.0.1:9 stopped answering .*do this"):
        guarded.log(1)
    assert time.monotonic() - start < 10
    assert guarded.log(2) is None and client.calls == 1, "nothing more is called once it is lost"


def test_a_guarded_client_calls_nothing_on_a_server_already_gone() -> None:
    client = Client(threading.Event())
    with pytest.raises(TrackingLost):
        GuardedClient(client, "http://127.0.0.1:9", lambda: "").log(1)
    assert client.calls == 0


@pytest.mark.slow  # two starts of an mlflow server and two runs: minutes on a shared 2-core machine
def test_a_server_gone_mid_run_ends_it_at_once_and_seqexp_resume_finishes_it(tmp_path) -> None:
    port, outputs = free_port(), tmp_path / "outputs"
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SEQEXP_OUTPUTS": str(outputs)}
    server = start_server(port, tmp_path)
    try:
        run = subprocess.Popen(
            ["seqexp", *LONG_ENOUGH], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        while not list(outputs.glob("runs/*/checkpoints/last.ckpt")):
            assert run.poll() is None, run.stdout.read()
            time.sleep(0.02)
        kill(server)
        gone = time.monotonic()
        said, _ = run.communicate(timeout=120)
        assert time.monotonic() - gone < 30, "the run ended within 30 s of the server's going"
    finally:
        if server.poll() is None:
            kill(server)

    said = " ".join(said.split())
    assert run.returncode == 1, said[-3000:]
    assert f"the MLflow tracking server at {uri} stopped answering" in said
    resume = re.search(rf"MLFLOW_TRACKING_URI={uri} seqexp-resume (\w+) --outputs (\S+)", said)
    assert resume, said[-3000:]
    run_id = resume.group(1)
    assert "Traceback" not in said

    server = start_server(port, tmp_path)
    try:
        mlflow = MlflowClient(uri)
        assert mlflow.get_run(run_id).info.status == "RUNNING", "left as it was, for seqexp-resume"
        recorded = mlflow.get_metric_history(run_id, "train/loss")
        assert 0 < len(recorded) < MAX_STEPS
        done = subprocess.run(
            ["seqexp-resume", run_id, "--outputs", resume.group(2)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert mlflow.get_run(run_id).info.status == "FINISHED"
        steps = [m.step for m in mlflow.get_metric_history(run_id, "train/loss")]
        assert sorted(steps) == list(range(MAX_STEPS)), "every step recorded, once"
        assert len(mlflow.get_metric_history(run_id, "val/loss")) == MAX_STEPS // 30
    finally:
        kill(server)


class CrashesOnceWhileCreating(http.server.BaseHTTPRequestHandler):
    """A tracking server that writes the first run asked for and crashes before it answers (its
    connection closed, as a server SIGKILLed after its write): MLflow's client asks again."""

    runs: dict[str, dict] = {}
    deleted: list[str] = []

    def do_GET(self) -> None:  # /health
        self.answer({})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/runs/create"):
            run_id = f"run{len(self.runs)}"
            info = {"run_id": run_id, "run_uuid": run_id, "experiment_id": request["experiment_id"]}
            info |= {"status": "RUNNING", "lifecycle_stage": "active", "start_time": 0}
            self.runs[run_id] = {"info": info, "data": {"tags": request["tags"]}}
            if len(self.runs) == 1:
                self.close_connection = True
                return
            self.answer({"run": self.runs[run_id]})
        elif self.path.endswith("/runs/search"):
            wanted = re.search(r"= '(\w+)'", request["filter"]).group(1)
            live = [run for run in self.runs.values() if run["info"]["run_id"] not in self.deleted]
            self.answer(
                {
                    "runs": [
                        run for run in live if {"key": TAG_CREATION, "value": wanted} in run["data"]["tags"]
                    ]
                }
            )
        elif self.path.endswith("/runs/delete"):
            self.deleted.append(request["run_id"])
            self.answer({})

    def answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_a_run_whose_creation_was_sent_twice_is_there_once() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CrashesOnceWhileCreating)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        run = GuardedClient(MlflowClient(uri), uri, lambda: "").create_run("0", tags={"a": "b"})
    finally:
        server.shutdown()
    assert len(CrashesOnceWhileCreating.runs) == 2, "the lost answer made MLflow's client ask again"
    assert CrashesOnceWhileCreating.deleted == ["run0"] and run.info.run_id == "run1"
    assert run.data.tags["a"] == "b"
