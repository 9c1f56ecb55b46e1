"""Attention weights as a picture: one heatmap per example, output characters × source characters."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch
from torch import Tensor

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def plot_attention(
    sources: list[str], outputs: list[str], alpha: Tensor, source_length: int, path: Path, title: str
) -> None:
    """``α<t,t'>`` (n, T_y, T_x) of ``n`` examples; sources are left-padded to ``source_length``,
    and the weight on all the padding is shown as one column, ``<pad>``."""
    fig, axes = plt.subplots(1, len(sources), figsize=(4.5 * len(sources), 3.5), squeeze=False)
    for ax, source, output, weights in zip(axes[0], sources, outputs, alpha, strict=True):
        padding = source_length - len(source)
        merged = torch.cat([weights[:, :padding].sum(-1, keepdim=True), weights[:, padding:]], -1)
        shown = merged[: len(output) + 1]
        ax.imshow(shown.numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(source) + 1), ["<pad>", *source], fontsize=7)
        rows = [*output, "<EOS>"][: len(shown)]
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    fig.suptitle(f"attention α<t,t'> ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
