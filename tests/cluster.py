"""Servers for the cluster tests, each a process group of its own on the loopback address, ended by
its id: PostgreSQL (pgserver's), an MLflow tracking server on it, Ray's head and nodes."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
NAMESPACE_HINT = "unshare --net sh -c 'ip link set lo up && python -m pytest -m cluster'"


class Health(http.server.BaseHTTPRequestHandler):
    """A server that answers every GET with 200, as a tracking server's health check does."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def loopback_only() -> None:
    """Fail unless this process sees no network interface but loopback (a network namespace of its
    own): Ray's head and nodes then listen on 127.0.0.1 and nowhere else."""
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        pytest.fail(
            f"the cluster tests run where loopback is the only interface (here: {names}): {NAMESPACE_HINT}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, f"{what} exited ({process.returncode})"
        assert time.monotonic() < deadline, f"{what} did not start in {timeout_s} s"
        time.sleep(0.3)


def started(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``command`` in a process group of its own, its output in ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env or dict(os.environ)
        )


def end(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End ``process`` and its group: SIGTERM, then SIGKILL if it lingers (``sig``: SIGKILL at once,
    as a crash)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


def mlflow_server(port: int, backend: str, home: Path) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` over the store ``backend``, its artifacts in ``home``;
    returns once it answers."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(port)]
    command += ["--backend-store-uri", backend, "--workers", "1"]
    command += ["--artifacts-destination", str(home / "server-artifacts")]
    server = started(command, home / "mlflow-server.log")
    wait_for(lambda: answers(f"http://{LOOPBACK}:{port}/health"), server, "mlflow server")
    return server


def ray_node(port: int, home: Path, head: bool, cpus: int = 1) -> subprocess.Popen:
    """A Ray node of ``cpus`` CPUs, its address 127.0.0.1 (``--node-ip-address``): ``head``, the head
    with its GCS at ``port`` and no dashboard, else a node that joins it; started as ``ray start
    --block``, returned once it runs. The flag sets the address the node gives, not where it
    listens: Ray 2.60 binds its GCS, raylet and agents on every interface (measured with ``ss
    -ltnp``). What keeps them on loopback is the network namespace the tests run in, whose only
    interface is loopback (:func:`loopback_only`, checked before any node starts)."""
    where = (
        ["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-host={LOOPBACK}"]
        if head
        else [f"--address={LOOPBACK}:{port}"]
    )
    command = ["ray", "start", *where, f"--node-ip-address={LOOPBACK}", f"--num-cpus={cpus}"]
    command += ["--disable-usage-stats", "--block"]
    log = home / f"ray-{'head' if head else 'node'}-{time.monotonic_ns()}.log"
    node = started(command, log)
    wait_for(
        lambda: "--block" in log.read_text() or "Ray runtime started" in log.read_text(), node, "ray node"
    )
    return node
