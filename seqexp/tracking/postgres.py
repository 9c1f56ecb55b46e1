"""A PostgreSQL for a tracking server and a study, from pgserver's own binaries (no root, no system
package): ``python -m seqexp.tracking.postgres DIR mlflow optuna`` starts it in ``DIR`` (or finds it
running there), makes the databases it names and prints their SQLAlchemy URLs, one a line.

It listens on a unix socket only, never on a network address: what it serves is this machine (a
tracking server beside it, and the jobs of a study whose nodes all run here). ``--stop`` stops it."""

from __future__ import annotations

import argparse
import os
import signal
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy.engine import make_url

DRIVER = "postgresql+psycopg"
"""SQLAlchemy's dialect and driver for PostgreSQL through psycopg 3."""


def pgserver() -> ModuleType:
    """pgserver, or an exit that says how to install it (its import warns of an unset
    ``XDG_RUNTIME_DIR``, which it does not need: it keeps its socket beside the data)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise SystemExit("seqexp: PostgreSQL from pgserver needs: pip install 'seqexp[cluster]'") from None
    return pgserver


def server(directory: Path) -> Any:
    """pgserver's PostgreSQL (a ``pgserver.PostgresServer``) with its data in ``directory``, started
    if it is not running; it keeps running when this process ends."""
    directory.mkdir(parents=True, exist_ok=True)
    return pgserver().get_server(directory.resolve(), cleanup_mode=None)


def database_url(directory: Path, name: str) -> str:
    """The SQLAlchemy URL of database ``name`` of the PostgreSQL in ``directory``, made if need be."""
    postgres = server(directory)
    if not postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';").count("(1 row)"):
        postgres.psql(f'CREATE DATABASE "{name}";')
    return make_url(postgres.get_uri(name)).set(drivername=DRIVER).render_as_string(hide_password=False)


def stop(directory: Path, timeout_s: float = 60) -> None:
    """Stop the PostgreSQL in ``directory`` (its data stays) as ``pg_ctl -m fast stop`` does: SIGINT
    to its postmaster, then wait until it is gone. There must be a data directory there; a server
    that is not running is left as it is."""
    if not (directory / "PG_VERSION").exists():
        raise SystemExit(f"seqexp: there is no PostgreSQL in {directory}")
    # Not pgserver's cleanup, which stops nothing while another handle (in any process) holds the
    # server; not pg_ctl, which runs as the server's user and fails where that user cannot reach
    # the directory (as root: a tree whose mode was reset since, like pytest's temporary one).
    pid_file = directory / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:  # stale: the server died without removing its file
        return
    deadline = time.monotonic() + timeout_s
    while pid_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit(
                f"seqexp: the PostgreSQL in {directory} (pid {pid}) did not stop within {timeout_s:g} s"
            )
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seqexp.tracking.postgres", description=__doc__)
    parser.add_argument("directory", type=Path, help="where the database files are (made if need be)")
    parser.add_argument("databases", nargs="*", help="databases to make (if need be) and print URLs of")
    parser.add_argument("--stop", action="store_true", help="stop the server")
    args = parser.parse_args(argv)
    if args.stop:
        stop(args.directory)
        return
    for name in args.databases:
        print(database_url(args.directory, name))


if __name__ == "__main__":
    main()
