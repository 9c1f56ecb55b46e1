"""What a horizon search found, per config: a table, a plot and a JSON summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
from rich.console import Console

from seqexp.search.horizon import Horizon
from seqexp.search.horizon_records import Outcome


@dataclass(frozen=True)
class Searched:
    """One config's search: its label (the swept overrides), its result and every seed's run."""

    label: str
    found: Horizon
    outcomes: dict[int, list[Outcome]]
    """length -> the outcome of each seed run (or reused) at it."""


def bracket_text(found: Horizon) -> str:
    """``[passed, failed)``; ``< failed`` where even the shortest failed; ``>= passed`` where the
    longest passed."""
    low, high = found.bracket
    if low is None:
        return f"< {high}"
    return f">= {low} (none failed)" if high is None else f"[{low}, {high})"


def title(length_key: str, k: int, n: int, resolution: float) -> str:
    return (
        f"memory horizon: the longest {length_key} solved in {k} of {n} seeds (resolution {resolution:.0%})"
    )


def rows(searched: list[Searched]) -> list[dict[str, str]]:
    """Per config: its horizon, bracket, probes (new ones), runs trained, solved seeds by length."""
    shown = []
    for one in searched:
        found = one.found
        by_length = "  ".join(
            f"{length}:{sum(o.solved for o in runs)}/{len(runs)}"
            for length, runs in sorted(one.outcomes.items())
        )
        shown.append(
            {
                "config": one.label,
                "horizon": "none" if found.horizon is None else str(found.horizon),
                "bracket": bracket_text(found),
                "probes (new)": f"{len(found.probes)} ({found.new_probes})",
                "runs trained": str(runs_trained(one)),
                "solved seeds by length": by_length,
            }
        )
    return shown


def runs_trained(one: Searched) -> int:
    return sum(not o.reused for runs in one.outcomes.values() for o in runs)


def numbers(one: Searched, name: str) -> dict[str, float]:
    """One config's numbers for the parent run, under ``name`` (its label as a metric name): its
    horizon where it has one, the lengths probed and the runs trained."""
    found = {} if one.found.horizon is None else {f"horizon/{name}": float(one.found.horizon)}
    return found | {
        f"probes/{name}": float(len(one.found.probes)),
        f"runs_trained/{name}": float(runs_trained(one)),
    }


def show(searched: list[Searched], length_key: str, k: int, n: int, resolution: float, out: Console) -> None:
    """Print the table to ``out``, as tables that fit its width (:func:`~seqexp.tracking.report.print_frame`:
    no value cut short at 80 columns)."""
    import pandas as pd

    from seqexp.tracking.report import print_frame

    print_frame(pd.DataFrame(rows(searched)), title(length_key, k, n, resolution), ["config"], out)


def markdown(searched: list[Searched], length_key: str, k: int, n: int, resolution: float) -> str:
    """The table as markdown, for the parent run's description."""
    import pandas as pd

    table_text = pd.DataFrame(rows(searched)).to_markdown(index=False)
    return f"# {title(length_key, k, n, resolution)}\n\n{table_text}\n"


def summary(searched: list[Searched]) -> list[dict[str, Any]]:
    """Every config's horizon, bracket and probes, with each seed's run: JSON-ready."""
    return [
        {
            "config": one.label,
            "horizon": one.found.horizon,
            "bracket": list(one.found.bracket),
            "probes": [
                {
                    "length": probe.length,
                    "passed": probe.passed,
                    "new": probe.new,
                    "runs": [
                        {
                            "run_id": o.run_id,
                            "solved": o.solved,
                            "solved_step": o.solved_step,
                            "reused": o.reused,
                        }
                        for o in one.outcomes.get(probe.length, [])
                    ],
                }
                for probe in one.found.probes
            ],
        }
        for one in searched
    ]


def write_summary(searched: list[Searched], path: Path) -> Path:
    path.write_text(json.dumps(summary(searched), indent=2))
    return path


def powers_of_two(axis: Axis) -> None:
    """A log axis of lengths labelled 1, 2, 4, 8, ... (not 10^0, 10^1)."""
    axis.set_major_locator(LogLocator(base=2))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def plot(searched: list[Searched], length_key: str, path: Path) -> Path:
    """Left: each config's horizon, with the bracket it was narrowed to. Right: ``val/solved_step``
    of every solved run against its length (a line through the mean at each length)."""
    figure = Figure(figsize=(11, 4.2))  # drawn to a file by its own canvas: no pyplot, no backend chosen
    left, right = figure.subplots(1, 2)
    for i, one in enumerate(searched):
        color = f"C{i % 10}"
        low, high = one.found.bracket
        if low is not None and high is not None:
            left.plot([i, i], [low, high], color=color, linewidth=8, alpha=0.3, solid_capstyle="butt")
        for probe in one.found.probes:
            left.plot([i], [probe.length], "o" if probe.passed else "x", color=color, markersize=4, alpha=0.7)
        if low is not None:
            left.plot([i], [low], "o", color=color, markersize=9)
        note = bracket_text(one.found) if low is None or high is None else str(low)
        left.annotate(note, (i, low or high), textcoords="offset points", xytext=(9, -4))
        solved = sorted(
            (length, o.solved_step) for length, runs in one.outcomes.items() for o in runs if o.solved
        )
        if solved:
            right.scatter([t for t, _ in solved], [s for _, s in solved], color=color, s=14, alpha=0.6)
            lengths = sorted({t for t, _ in solved})
            means = [
                sum(s for t, s in solved if t == length) / sum(t == length for t, _ in solved)
                for length in lengths
            ]
            right.plot(lengths, means, color=color, label=one.label)
    left.set_xticks(range(len(searched)), [one.label for one in searched], rotation=20)
    left.set_xlim(-0.5, len(searched) - 0.5)
    left.set_yscale("log")
    powers_of_two(left.yaxis)
    left.set_ylabel(length_key)
    left.set_title("horizon (big dot), its bracket (bar); probes: o passed, x failed", fontsize="medium")
    right.set_xscale("log")
    powers_of_two(right.xaxis)
    right.set_xlabel(length_key)
    right.set_ylabel("val/solved_step")
    right.set_title("steps to solve, runs that solved")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
