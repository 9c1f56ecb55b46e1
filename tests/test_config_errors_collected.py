"""A config's errors come at once: every bad value that the checks see, and with them the first
error of building the task and model (which the checks cannot see), exit status 2, no run."""

from __future__ import annotations

import re

import pytest
from sizes import TINY

BOTH = {
    "seed=abc +cell.bogus=1": [
        r"seed must be an integer in \[0, 4294967295\] \(got 'abc'\)",
        r"LSTMCell.__init__\(\) got an unexpected keyword argument 'bogus'",
    ],
    "optimizer.lr=nan trainer.log_every_n_steps=0 model.hidden_size=0": [
        r"optimizer.lr must be a finite number > 0 \(got nan\)",
        r"trainer.log_every_n_steps must be a positive integer \(got 0\)",
        r"model.hidden_size must be a positive integer \(got 0\)",
        r"a cell needs input_size >= 1 and hidden_size >= 1 \(got 2, 0\)",
    ],
}


@pytest.mark.parametrize(("overrides", "messages"), BOTH.items(), ids=BOTH.keys())
def test_bad_values_and_the_builds_error_are_reported_together(
    overrides, messages, outputs, capsys, run_seqexp
) -> None:
    with pytest.raises(SystemExit) as exit:
        run_seqexp(*TINY, *overrides.split())

    assert exit.value.code == 2
    said = " ".join(capsys.readouterr().out.split())
    assert f"{len(messages)} problems:" in said
    for message in messages:
        assert re.search(message, said), message
    assert "Traceback" not in said
    assert not (outputs / "mlflow.db").exists(), "no run recorded"


def test_a_build_error_alone_is_reported_as_before(capsys, run_seqexp) -> None:
    with pytest.raises(SystemExit) as exit:
        run_seqexp(*TINY, "+cell.bogus=1")

    assert exit.value.code == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "LSTMCell.__init__() got an unexpected keyword argument 'bogus'" in said
    assert "problems:" not in said
