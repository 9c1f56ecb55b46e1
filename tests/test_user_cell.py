"""A cell and a task of one's own, each one Python file and one YAML file in a config dir of one's
own (USER_CONFIG.md), train, budget, diagnose, bench and sweep with no other edit to seqexp."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from sizes import TINY

from seqexp.bench.kernels import main as bench
from seqexp.commands.rerun import rerun

CELL = '''
import torch
from torch import Tensor, nn

from seqexp.cells import LinearRecurrence


class LeakyCell(LinearRecurrence):
    """A leaky integrator: h<t> = σ(w) ⊙ h<t-1> + W x<t> + b, a<t> = tanh(h<t>)."""

    gradient_groups = {"w": "recurrent", "W": "input", "b": "bias"}

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.w = nn.Parameter(torch.full((hidden_size,), 2.0))
        self.W = nn.Parameter(torch.randn(hidden_size, input_size) / input_size**0.5)
        self.b = nn.Parameter(torch.zeros(hidden_size))

    def state_shape(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        beta = x @ self.W.T + self.b
        return torch.sigmoid(self.w).expand_as(beta), beta

    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(h)
'''
TASK = '''
import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.tasks.base import Task, TaskSpec


class FirstValueTask(Task):
    """Uniform noise; the target is the first value. Predicting 0.5 gives MSE 1/12."""

    spec = TaskSpec(input_size=1, output_size=1, shape="many_to_one", metric="mse", baseline=1 / 12,
                    solved_at=0.01)
    fresh = True

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        x = torch.rand(n, self.seq_len, 1, generator=torch.Generator().manual_seed(seed))
        return x, x[:, 0]

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"mse": F.mse_loss(prediction, target)}
'''


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``mylab/`` on the path with the two files; ``conf/`` with ``cell/leaky.yaml`` and
    ``task/first_value.yaml``."""
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "__init__.py").write_text("")
    (tmp_path / "mylab" / "cells.py").write_text(textwrap.dedent(CELL))
    (tmp_path / "mylab" / "tasks.py").write_text(textwrap.dedent(TASK))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SEQEXP_TRUSTED_MODULES", "mylab")
    conf = tmp_path / "conf"
    (conf / "cell").mkdir(parents=True)
    (conf / "task").mkdir()
    (conf / "cell" / "leaky.yaml").write_text("name: leaky\n_target_: mylab.cells.LeakyCell\n")
    (conf / "task" / "first_value.yaml").write_text(
        "name: first_value\n_target_: mylab.tasks.FirstValueTask\nseq_len: 10\ntrain_size: null\n"
        "val_size: 64\ntest_size: null\n"
    )
    return conf


def test_a_cell_and_a_task_of_ones_own_train_budget_and_diagnose(config_dir, run_seqexp, records) -> None:
    run_seqexp(
        "--config-dir", str(config_dir), "cell=leaky", "task=first_value", *TINY, "model.param_budget=300",
        "callbacks.gradient_flow.every_n_steps=3",
    )  # fmt: skip

    (run,) = records.search_runs([records.get_experiment_by_name("first_value").experiment_id])
    hidden = int(run.data.metrics["model/hidden_size"])
    cell_params = 3 * hidden  # w, W (n_a × 1), b: nothing unused, nothing dead
    assert run.data.metrics["model/params"] == cell_params + hidden + 1  # and the head
    assert abs(run.data.metrics["model/params"] - 300) <= 0.05 * 300
    assert run.data.tags["seqexp.kernel"] == "compiled"
    assert {"grad/norm_recurrent", "grad/norm_input", "grad/norm_bias", "grad/flow_ratio"} <= set(
        run.data.metrics
    )
    assert run.info.status == "FINISHED"


def test_a_cell_of_ones_own_refuses_the_block_schemes_with_the_reason(config_dir, run_seqexp, capsys) -> None:
    with pytest.raises(SystemExit, match="2"):
        run_seqexp("--config-dir", str(config_dir), "cell=leaky", *TINY, "init.scheme=orthogonal")

    error = capsys.readouterr().out
    assert "init.scheme=orthogonal does not apply to LeakyCell" in error
    assert "Its schemes: ['default']" in error


def test_a_cell_of_ones_own_sweeps_beside_a_shipped_one(config_dir, run_seqexp, records) -> None:
    run_seqexp("-m", "--config-dir", str(config_dir), "cell=leaky,mingru", "topology=uni,block", *TINY)

    runs = records.search_runs([records.get_experiment_by_name("adding").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["cell.name"] for r in children) == ["leaky", "leaky", "mingru", "mingru"]
    assert all(r.info.status == "FINISHED" for r in children)


def test_a_cell_of_ones_own_is_benched(config_dir, tmp_path) -> None:
    out = tmp_path / "bench.json"
    bench(["--config-dir", str(config_dir), "--cells", "leaky", "--sizes", "tiny", "--repeats", "1",
           "--topologies", "uni", "--check", "--json", str(out)])  # fmt: skip

    result = json.loads(out.read_text())
    assert [(k["cell"], k["kernel"]) for k in result["kernels"]] == [("leaky", "compiled")]
    (check,) = result["checks"]
    assert check["output_error"] < 1e-6 and check["gradient_error"] < 1e-5


def test_a_run_of_ones_own_cell_reruns_exactly(config_dir, outputs, run_seqexp, records) -> None:
    run_seqexp("--config-dir", str(config_dir), "cell=leaky", "topology=block", *TINY)
    (original,) = records.search_runs([records.get_experiment_by_name("adding").experiment_id])

    result, matches = rerun(records, original.info.run_id, outputs)

    assert matches and result.metrics["val/mse"] == original.data.metrics["val/mse"]
    assert records.get_run(result.run_id).data.tags["seqexp.kernel"] == "compiled"
