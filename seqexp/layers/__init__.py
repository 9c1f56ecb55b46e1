"""Layers: a cell run over time and the topologies, initialisation, attention. Pure torch;
may import seqexp.checks, cells and kernels."""

from seqexp.layers.blocks import BlockStack
from seqexp.layers.recurrent import RecurrentStack

Stack = RecurrentStack | BlockStack
"""Whatever runs cells over a sequence: the course's topologies, or residual blocks."""

__all__ = ["BlockStack", "RecurrentStack", "Stack"]
