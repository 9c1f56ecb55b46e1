"""A tracking server that goes away mid-run: the run ends within seconds, saying what to do, instead
of waiting out MLflow's retries (minutes), and without touching MLflow's process-wide settings."""

from __future__ import annotations

import functools
import os
import shlex
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytorch_lightning.loggers import MLFlowLogger

PROBE_TIMEOUT_S = 5.0
"""How long one of seqexp's own requests to the server's ``/health`` waits for an answer."""
PROBE_EVERY_S = 5.0
"""While an MLflow call is under way, how often seqexp asks whether the server is still there."""
TAG_CREATION = "seqexp.creation"
"""A run's tag naming the request that made it, so that a twin made by a resent request is found."""
PATIENCE_ENV = "SEQEXP_TRACKING_PATIENCE_S"
"""How many seconds a run waits for a server that stopped answering to answer again (a restart)
before it stops; 0 (the default): it stops at once."""


class TrackingLost(RuntimeError):
    """The tracking server stopped answering during a run: training stopped; the last checkpoint
    on disk is no further than what the record holds, so the run can be resumed once it is back."""


def is_server(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https")


def unanswered(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the server at ``uri`` does not answer a request for ``/health``; ``None`` if it answers
    (any HTTP answer, even an error status, means the server is there)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as error:
        return str(getattr(error, "reason", error))


def patience_s() -> float:
    """:data:`PATIENCE_ENV`'s seconds (0 if unset)."""
    value = os.environ.get(PATIENCE_ENV) or "0"
    try:
        return max(0.0, float(value))
    except ValueError:
        raise ValueError(f"{PATIENCE_ENV} must be a number of seconds, not {value!r}") from None


def unanswered_for(uri: str, patience: float, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the server at ``uri`` does not answer, having asked again every :data:`PROBE_EVERY_S`
    seconds for ``patience`` seconds; ``None`` as soon as it answers."""
    deadline = time.monotonic() + patience
    while (reason := unanswered(uri, timeout_s)) is not None and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(PROBE_EVERY_S, left))
    return reason


def in_thread(call: Callable[[], Any], still_there: Callable[[], None]) -> Any:
    """``call()``, run in a daemon thread while this one calls ``still_there()`` every
    :data:`PROBE_EVERY_S` seconds; what ``still_there`` raises ends the wait (the call, abandoned,
    ends with the process)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="seqexp-tracking-call", daemon=True)
    thread.start()
    thread.join(PROBE_EVERY_S)
    while thread.is_alive():
        still_there()
        thread.join(PROBE_EVERY_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class GuardedClient:
    """An MLflow client of a tracking server, for the calls of one run: before each call and every
    few seconds while it runs, seqexp's own short request asks whether the server is there; once
    it does not answer, :class:`TrackingLost` is raised, naming the server and ``what_to_do()``.

    After that the client calls nothing more (every call returns ``None``): the run's record stays
    as it was at its last write (RUNNING), ready for ``seqexp-resume``.

    MLflow's client sends a request again whose answer was lost (a server that crashed after it
    wrote): every call of a run is then harmless twice (the store drops a metric written twice;
    tags and params are the same) except ``create_run``, which this client makes once.
    """

    def __init__(self, client: Any, uri: str, what_to_do: Callable[[], str]) -> None:
        self.client = client
        self.uri = uri
        self.what_to_do = what_to_do
        self.lost: TrackingLost | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.lost is not None:
                return None
            self.still_there()
            return in_thread(functools.partial(attribute, *args, **kwargs), self.still_there)

        return guarded

    def create_run(
        self, experiment_id: str, *args: Any, tags: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """MLflow's ``create_run``, tagged with this request's :data:`TAG_CREATION`; a twin of the run,
        made by the same request sent again, is deleted."""
        creation = uuid.uuid4().hex
        create, search = self.__getattr__("create_run"), self.__getattr__("search_runs")
        run = create(experiment_id, *args, tags={**(tags or {}), TAG_CREATION: creation}, **kwargs)
        if run is None:  # the server is lost (see still_there)
            return run
        for twin in search([experiment_id], f"tags.`{TAG_CREATION}` = '{creation}'") or []:
            if twin.info.run_id != run.info.run_id:
                self.__getattr__("delete_run")(twin.info.run_id)
        return run

    def still_there(self) -> None:
        """Raise :class:`TrackingLost` unless the server answers, or answers again within
        :func:`patience_s` (and from then on)."""
        patience = patience_s()
        if self.lost is None and (reason := unanswered_for(self.uri, patience)) is None:
            return
        if self.lost is None:
            waited = f" for {patience:g} s ({PATIENCE_ENV})" if patience else ""
            self.lost = TrackingLost(
                f"the MLflow tracking server at {self.uri} stopped answering ({reason}){waited}; training "
                f"stopped, its last checkpoint on disk. {self.what_to_do()}"
            )
        raise self.lost


def guarded(client: Any, uri: str, what_to_do: Callable[[], str]) -> Any:
    """``client`` guarded by :class:`GuardedClient` if ``uri`` is a tracking server, else itself (a
    local store does not go away)."""
    return GuardedClient(client, uri, what_to_do) if is_server(uri) else client


def guard(logger: MLFlowLogger, outputs: Path) -> None:
    """Guard the client of ``logger``, a run's logger (see :func:`guarded`); a lost server's error
    says how to resume the run."""
    uri = logger._tracking_uri

    def what_to_do() -> str:
        if logger._run_id is None:
            return "No run was recorded: run the command again once the server is back."
        return (
            f"Once the server is back, resume the run: MLFLOW_TRACKING_URI={shlex.quote(uri)} "
            f"seqexp-resume {logger._run_id} --outputs {shlex.quote(str(outputs.resolve()))}"
        )

    logger._mlflow_client = guarded(logger._mlflow_client, uri, what_to_do)
