"""Layers: a cell run over time and the topologies, initialisation, attention. Pure torch;
may import seqexp.checks, cells and kernels."""
