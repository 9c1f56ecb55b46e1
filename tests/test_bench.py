"""``seqexp-bench`` runs, in its tiny mode, and reports what it claims to."""

from __future__ import annotations

import json

import pytest
import torch

from seqexp.bench.kernels import peak_mb
from seqexp.bench.loop import main


def test_peak_memory_is_the_most_in_use_at_once() -> None:
    def run() -> list[torch.Tensor]:
        freed = torch.ones(2**18)  # 1 MB
        del freed
        return [torch.ones(2**17) for _ in range(3)]  # 1.5 MB

    assert peak_mb(run, torch.device("cpu")) == pytest.approx(1.5)


def test_tiny_bench_reports_kernels_loops_and_startup(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "bench.json"
    own = tmp_path / "conf"  # a cell option of one's own, found by --config-dir
    (own / "cell").mkdir(parents=True)
    (own / "cell" / "gru_reset_after.yaml").write_text("defaults: [gru, _self_]\nreset_after: true\n")
    cells = ["--config-dir", str(own), "--cells", "lstm", "peephole", "gru_reset_after", "mingru"]
    main(["--tiny", *cells, "--topologies", "uni", "deep_bi", "--loop", "--check", "--json", str(out)])

    result = json.loads(out.read_text())
    kernels = {(k["cell"], k["topology"], k["kernel"]) for k in result["kernels"]}
    assert kernels == {
        (cell, topology, kernel)
        for cell, kernel in [
            ("lstm", "onednn"),
            ("lstm", "loop"),
            ("lstm", "native"),
            ("peephole", "onednn"),
            ("peephole", "loop"),
            ("gru_reset_after", "loop"),  # no kernel of seqexp's own: its loop
            ("gru_reset_after", "native"),
            ("mingru", "compiled"),  # a linear recurrence: the compiled scan, against nn.LSTM
            ("mingru", "loop"),
        ]
        for topology in ("uni", "deep_bi")
    }
    assert len(result["kernels"]) == len(kernels)
    for k in result["kernels"]:
        assert k["ms"] > 0 and k["reference_ms"] > 0 and k["ratio"] == k["ms"] / k["reference_ms"]
        assert k["lstm_ratio"] == k["ms"] / k["lstm_ms"] and k["dtype"] == "float32"
        assert k["saved_mb"] > 0 and k["size"] == [2, 5, 3, 4]
        assert k["peak_mb"] > 0 and k["reference_peak_mb"] > 0
    checks = {(c["cell"], c["kernel"]): c for c in result["checks"]}
    assert set(checks) == {("lstm", "onednn"), ("peephole", "onednn"), ("mingru", "compiled")}
    assert all(c["output_error"] < 1e-6 and c["gradient_error"] < 1e-5 for c in checks.values())
    assert [loop["label"] for loop in result["loops"]] == [
        "seqexp, default callbacks",
        "seqexp, no diagnostics",
    ]
    (default,), (bare,) = (loop["runs"] for loop in result["loops"])
    assert default["plain_after"] == bare["plain_before"], "one plain loop measured between the two"
    plain = sorted([default["plain_before"], default["plain_after"], bare["plain_after"]])
    for loop in result["loops"]:
        (run,) = loop["runs"]
        assert loop["seqexp_steps_per_s"] == run["seqexp_steps_per_s"] > 0
        assert loop["seqexp_overall_steps_per_s"] == run["seqexp_overall_steps_per_s"] > 0
        assert loop["plain_steps_per_s"] == plain[1] > 0, "the median of the three"
        assert loop["ratio"] == loop["seqexp_steps_per_s"] / loop["plain_steps_per_s"]
        bracket = (run["plain_before"] + run["plain_after"]) / 2
        assert loop["bracketed_ratio"] == run["seqexp_steps_per_s"] / bracket
    assert set(result["startup"]) == {"import pytorch_lightning", "seqexp to its first training step"}
    assert (
        result["startup"]["seqexp to its first training step"] > result["startup"]["import pytorch_lightning"]
    )
