"""A tracking server that cannot be reached is reported at once, with the URI and what to do,
before anything is recorded."""

from __future__ import annotations

import time

import pytest
from sizes import TINY

DEAD = "http://127.0.0.1:9"


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_a_dead_tracking_uri_fails_within_30_s_naming_it(
    multirun, outputs, monkeypatch, capsys, run_seqexp
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD)
    start = time.monotonic()

    with pytest.raises(SystemExit) as exit:
        run_seqexp(*(["-m"] if multirun else []), *TINY)

    assert time.monotonic() - start < 30
    said = " ".join((capsys.readouterr().out + str(exit.value.code)).split())
    assert f"the MLflow tracking server at {DEAD} (MLFLOW_TRACKING_URI) cannot be reached" in said
    assert "unset it to record to <outputs>/mlflow.db, or run with logger=none" in said
    assert exit.value.code != 0
    assert not list(outputs.glob("*/*/config.yaml")), "nothing recorded, not even beside the run"
    assert not (outputs / "mlflow.db").exists()
