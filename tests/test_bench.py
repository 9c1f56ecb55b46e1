"""``seqexp-bench`` runs, in its tiny mode, and reports what it claims to."""

from __future__ import annotations

import json

from seqexp.bench import main


def test_tiny_bench_reports_kernels_loops_and_startup(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "bench.json"
    main(["--tiny", "--cells", "lstm", "peephole", "--topologies", "uni", "deep_bi", "--json", str(out)])

    result = json.loads(out.read_text())
    kernels = {(k["cell"], k["topology"], k["kernel"]) for k in result["kernels"]}
    assert kernels == {
        (cell, topology, kernel)
        for cell, kernel in [("lstm", "custom"), ("lstm", "native"), ("peephole", "custom")]
        for topology in ("uni", "deep_bi")
    }
    for k in result["kernels"]:
        assert k["ms"] > 0 and k["reference_ms"] > 0 and k["ratio"] == k["ms"] / k["reference_ms"]
        assert k["saved_mb"] > 0 and k["size"] == [2, 5, 3, 4]
    assert [loop["label"] for loop in result["loops"]] == [
        "seqexp, default callbacks",
        "seqexp, no diagnostics",
    ]
    assert all(loop["seqexp_steps_per_s"] > 0 and loop["plain_steps_per_s"] > 0 for loop in result["loops"])
    assert set(result["startup"]) == {"import pytorch_lightning", "seqexp to its first training step"}
    assert (
        result["startup"]["seqexp to its first training step"] > result["startup"]["import pytorch_lightning"]
    )
