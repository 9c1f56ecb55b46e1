"""Plots of gradient flow: ``‖∂L/∂a<t>‖`` per time step over training, one run or several.

``python -m seqexp.diagnostics.flow_plots rnn=RUN_DIR/gradient_flow.json lstm=... -o flow.png`` compares runs.
Matplotlib's object API (no pyplot): nothing global changes, no display is needed.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


@dataclass
class FlowHistory:
    """``‖∂L/∂a[l]<t>‖`` measured at training steps ``steps``: ``norms[name][i][t]`` for layer and
    direction ``name`` (``l0``, ``l0_reverse``, ...) at ``steps[i]``."""

    steps: list[int] = field(default_factory=list)
    norms: dict[str, list[list[float]]] = field(default_factory=dict)

    def add(self, step: int, norms: dict[str, list[float]]) -> None:
        self.steps.append(step)
        for name, curve in norms.items():
            self.norms.setdefault(name, []).append(curve)

    def ratios(self, name: str) -> list[float]:
        """``‖∂L/∂a<first>‖ / ‖∂L/∂a<last>‖`` at each measurement, in ``name``'s reading order."""
        return [flow_ratio(curve, name.endswith("_reverse")) for curve in self.norms[name]]

    @property
    def headline(self) -> str:
        """The top layer's left-to-right direction."""
        return [name for name in self.norms if not name.endswith("_reverse")][-1]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"steps": self.steps, "norms": self.norms}))

    @classmethod
    def load(cls, path: Path) -> FlowHistory:
        return cls(**json.loads(Path(path).read_text()))


def flow_ratio(curve: list[float], reverse: bool = False) -> float:
    """The gradient at the step read first over the one at the step read last (0/0 is nan)."""
    first, last = (curve[-1], curve[0]) if reverse else (curve[0], curve[-1])
    if last == 0:
        return math.nan if first == 0 else math.inf
    return first / last


def plot_history(history: FlowHistory, path: Path) -> None:
    """A heatmap per layer and direction (time step × training step, colour ``log10 ‖∂L/∂a<t>‖``)
    and the latest curves on a log scale."""
    names = list(history.norms)
    fig = Figure(figsize=(7, 2.6 * (len(names) + 1)), layout="constrained")
    axes = fig.subplots(len(names) + 1, 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=False):
        norms = np.asarray(history.norms[name], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_norms = np.ma.masked_invalid(np.log10(norms))
        mesh = ax.pcolormesh(np.arange(1, norms.shape[1] + 1), history.steps, log_norms, shading="nearest")
        fig.colorbar(mesh, ax=ax, label="log10 ‖∂L/∂a<t>‖\n(blank: exactly 0)")
        ax.set(xlabel="time step t", ylabel="training step", title=f"gradient reaching a<t>, layer {name}")
    latest = axes[-1]
    for name in names:
        curve = history.norms[name][-1]
        ratio = flow_ratio(curve, name.endswith("_reverse"))
        latest.semilogy(range(1, len(curve) + 1), curve, label=f"{name}: first/last = {ratio:.2g}")
    latest.set(xlabel="time step t", ylabel="‖∂L/∂a<t>‖", title=f"at training step {history.steps[-1]}")
    latest.legend()
    fig.savefig(path, dpi=80)


def plot_comparison(histories: dict[str, FlowHistory], path: Path) -> None:
    """Runs side by side: each one's last ``‖∂L/∂a<t>‖`` curve, and its first/last ratio over
    training (top layer, left to right). Exact zeros (float32 underflow) are not drawn."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    curves, ratios = fig.subplots(1, 2)
    for label, history in histories.items():
        name = history.headline
        curve = history.norms[name][-1]
        final = history.ratios(name)[-1]
        curves.semilogy(range(1, len(curve) + 1), curve, label=label)
        ratios.semilogy(history.steps, history.ratios(name), marker=".", label=f"{label} (last: {final:.2g})")
    curves.set(
        xlabel="time step t",
        ylabel="‖∂L/∂a<t>‖",
        title="gradient reaching each step, end of training",
    )
    ratios.set(xlabel="training step", ylabel="‖∂L/∂a<1>‖ / ‖∂L/∂a<T>‖", title="first/last ratio")
    for ax in (curves, ratios):
        ax.legend()
    fig.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seqexp.diagnostics.flow_plots", description=plot_comparison.__doc__
    )
    parser.add_argument("runs", nargs="+", metavar="LABEL=PATH", help="a label and a gradient_flow.json")
    parser.add_argument("-o", "--output", type=Path, default=Path("gradient_flow_comparison.png"))
    args = parser.parse_args(argv)
    histories = {label: FlowHistory.load(Path(path)) for label, path in (r.split("=", 1) for r in args.runs)}
    plot_comparison(histories, args.output)
    for label, history in histories.items():
        print(f"{label}: first/last ratio {history.ratios(history.headline)[-1]:.3g}")


if __name__ == "__main__":
    main()
