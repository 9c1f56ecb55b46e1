"""Attention weights as a picture: one heatmap per example, output characters × source characters."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from torch import Tensor

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def plot_attention(sources: list[str], outputs: list[str], alpha: Tensor, path: Path, title: str) -> None:
    """``α<t,t'>`` (n, T_y, T_x) of ``n`` examples whose sources are left-padded to ``T_x``: only
    the source's own characters are shown (attention gives the padding no weight)."""
    fig, axes = plt.subplots(1, len(sources), figsize=(4.5 * len(sources), 3.5), squeeze=False)
    for ax, source, output, weights in zip(axes[0], sources, outputs, alpha, strict=True):
        shown = weights[: len(output) + 1, weights.shape[-1] - len(source) :]
        ax.imshow(shown.numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(source)), list(source), fontsize=7)
        rows = [*output, "<EOS>"][: len(shown)]
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    fig.suptitle(f"attention α<t,t'> ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
