"""``seqexp-horizon``: one parent run with a child per probe trained, the recorded runs reused, and the
configs it cannot search refused before anything is recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from mlflow import MlflowClient
from rich.console import Console

from seqexp.commands import horizon
from seqexp.search.horizon import Horizon, Probe
from seqexp.search.horizon_records import Outcome, recorded_params, signature
from seqexp.search.horizon_report import Searched, markdown, numbers, show
from seqexp.tracking.runs import TAG_PARENT

TINY_PROBES = [
    "task=adding",
    "threads=1",
    "task.val_size=32",
    "task.test_size=32",
    "data.batch_size=16",
    "model.hidden_size=8",
    "trainer.max_steps=2",
    "data.batches_per_epoch=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "logger.log_model=false",
]
"""Probes of a couple of steps: none solves the adding problem, so each search halves to its floor."""
SEARCH = ["--k", "1", "--n", "1", "--start", "4", "--min-length", "2"]


def summary(outputs: Path, parent_dir: str) -> list[dict]:
    return json.loads((Path(parent_dir) / "horizon.json").read_text())


def test_a_search_records_its_probes_under_one_parent_and_a_second_reuses_them(
    outputs: Path, records: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    horizon.main(["cell=rnn,gru", *TINY_PROBES, *SEARCH])
    [experiment] = [e for e in records.search_experiments() if e.name == "adding"]
    runs = records.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.info.run_name.startswith("horizon-")]
    children = [r for r in runs if r.data.tags.get(TAG_PARENT) == parent.info.run_id]
    # each cell: T=4 fails, T=2 (the floor) fails: no horizon
    assert sorted((r.data.params["cell"], r.data.params["task.seq_len"]) for r in children) == [
        ("gru", "2"),
        ("gru", "4"),
        ("rnn", "2"),
        ("rnn", "4"),
    ]
    assert all(
        r.data.params["callbacks.early_stopping._target_"].endswith("StopOnceSolved") for r in children
    )
    assert sorted(r.info.run_name for r in children) == [  # in the MLflow UI: what each probe is
        "probe cell=gru task.seq_len=2 seed=0",
        "probe cell=gru task.seq_len=4 seed=0",
        "probe cell=rnn task.seq_len=2 seed=0",
        "probe cell=rnn task.seq_len=4 seed=0",
    ]
    # no horizon found, yet the page has numbers: the lengths probed and the runs trained per config
    assert parent.data.metrics == {
        "probes/cell_rnn": 2.0,
        "runs_trained/cell_rnn": 2.0,
        "probes/cell_gru": 2.0,
        "runs_trained/cell_gru": 2.0,
    }
    assert parent.info.status == "FINISHED" and parent.data.params["k"] == "1"
    first = summary(outputs, parent.data.tags["seqexp.horizon_dir"])
    assert [(s["config"], s["horizon"], s["bracket"]) for s in first] == [
        ("cell=rnn", None, [None, 2]),
        ("cell=gru", None, [None, 2]),
    ]
    assert {a.path for a in records.list_artifacts(parent.info.run_id)} == {"horizon.png", "horizon.json"}
    note = parent.data.tags["mlflow.note.content"]  # the table, where a user lands on its page
    assert note.startswith("# memory horizon: the longest task.seq_len solved in 1 of 1 seeds")
    assert [cells(line)[:3] for line in note.splitlines() if "cell=" in line] == [
        ["cell=rnn", "none", "< 2"],
        ["cell=gru", "none", "< 2"],
    ]
    page = f"/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}?"
    assert page in " ".join(capsys.readouterr().out.split())

    horizon.main(["cell=rnn,gru", *TINY_PROBES, *SEARCH])
    again = records.search_runs([experiment.experiment_id])
    assert len(again) == len(runs) + 1, "a second parent run and no new probe"
    [second] = [
        r for r in again if r.info.run_name.startswith("horizon-") and r.info.run_id != parent.info.run_id
    ]
    reused = summary(outputs, second.data.tags["seqexp.horizon_dir"])
    assert [(s["config"], s["horizon"]) for s in reused] == [("cell=rnn", None), ("cell=gru", None)]
    runs_reused = [run for s in reused for probe in s["probes"] for run in probe["runs"]]
    assert {run["run_id"] for run in runs_reused} == {r.info.run_id for r in children}
    assert all(run["reused"] for run in runs_reused) and not any(
        p["new"] for s in reused for p in s["probes"]
    )


def cells(line: str) -> list[str]:
    """The cells of a markdown table's row."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_horizon_table_is_markdown_for_the_parent_runs_page_and_printed_whole_in_80_columns() -> None:
    probes = tuple(Probe(length, (length < 16,), length < 16, True) for length in (4, 8, 16))
    outcomes = {length: [Outcome(length < 16, f"run{length}", 100.0, False)] for length in (4, 8, 16)}
    searched = [Searched("cell=gru", Horizon(8, 16, probes), outcomes)]
    lengths = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096)
    many = tuple(Probe(length, (True,) * 3, True, True) for length in lengths)
    seeds = {length: [Outcome(True, "r", 100.0, False)] * 3 for length in lengths}
    long = Searched("cell=peephole topology=deep_bi optimizer.lr=0.003", Horizon(4096, None, many), seeds)
    printed = StringIO()
    show([*searched, long], "task.seq_len", 2, 3, 0.1, Console(width=80, file=printed))
    text = printed.getvalue()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    flat = " ".join(text.split())  # a value may fold onto a next line, never be cut
    for value in (">= 4096 (none failed)", "13 (13)", "39", "4:1/1", "16:0/1", "4096:3/3"):
        assert value in flat
    assert numbers(long, "x") == {"horizon/x": 4096.0, "probes/x": 13.0, "runs_trained/x": 39.0}

    text = markdown(searched, "task.seq_len", 1, 1, 0.1)

    head, *rows = [line for line in text.splitlines() if line.startswith("|")]
    assert text.startswith(
        "# memory horizon: the longest task.seq_len solved in 1 of 1 seeds (resolution 10%)"
    )
    assert cells(head) == [
        "config",
        "horizon",
        "bracket",
        "probes (new)",
        "runs trained",
        "solved seeds by length",
    ]
    assert cells(rows[-1]) == ["cell=gru", "8", "[8, 16)", "3 (3)", "3", "4:1/1  8:1/1  16:0/1"]


def test_a_run_is_reused_only_for_the_same_config_but_its_seed_and_length(compose) -> None:
    def sig(*overrides: str) -> frozenset:
        return signature(recorded_params(compose(*TINY_PROBES, *overrides)), "task.seq_len")

    assert sig("seed=0", "task.seq_len=4") == sig("seed=3", "task.seq_len=64", "threads=2")
    assert sig() != sig("model.hidden_size=9")
    assert sig() != sig("trainer.max_steps=3"), "another step budget"
    assert sig() != sig("cell=gru")
    stopping = "callbacks.early_stopping={_target_:seqexp.diagnostics.solved.StopOnceSolved}"
    probe = horizon.probe_config(TINY_PROBES, "task.seq_len", 10, 0, early_stopping=True)
    assert signature(recorded_params(probe), "task.seq_len") == sig(stopping), (
        "plain seqexp runs, stopping alike"
    )


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        (["task=digits"], "task digits has no length knob"),
        (["task=reber"], "task.lengths=exact"),
        (["logger=none"], "use logger=mlflow"),
        (["task=adding", "--length-key", "task.name"], "must name an integer key"),
        (["task=adding", "--k", "3", "--n", "2"], "k must be between 1 and n"),
    ],
)
def test_what_cannot_be_searched_is_refused_before_anything_is_recorded(
    outputs: Path, overrides: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit, match=complaint):
        horizon.main(overrides)
    assert not outputs.exists() or not (outputs / "horizon").exists()


def test_each_search_is_planned_within_the_lengths_its_task_accepts() -> None:
    args = horizon.parser().parse_args(["cell=rnn,lstm", "task=temporal_order", "seed=4", "--start", "40"])
    plans = horizon.planned(args)
    assert [(p.label, p.length_key, p.start, p.min_length, p.seeds) for p in plans] == [
        ("cell=rnn", "task.seq_len", 40, 10, [4, 5, 6]),
        ("cell=lstm", "task.seq_len", 40, 10, [4, 5, 6]),
    ], "temporal order needs 10 steps; the seeds follow the config's"
    assert all("seed=4" not in p.overrides for p in plans)
    [tagging] = horizon.planned(horizon.parser().parse_args(["task=tagging", "task.lookahead=5"]))
    assert (tagging.length_key, tagging.start) == ("task.lookahead", 5)


def test_help_states_the_defaults_and_imports_no_heavy_library() -> None:
    heavy = ("torch", "mlflow", "pytorch_lightning", "matplotlib")
    code = (
        "import sys\nimport seqexp.commands.horizon as h\ntry:\n    h.main(['--help'])\nexcept SystemExit:\n"
        f"    pass\nprint(sorted(m for m in {heavy} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("[]"), out
    for default in ("(default 2)", "(default 3)", "(10%)", "(default 4096)", "task.lookahead for tagging"):
        assert default in " ".join(out.split()), default
