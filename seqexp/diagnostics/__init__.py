"""Diagnostics: Lightning callbacks that watch training (gradient flow and norms, the
non-finite guard, when a run is solved) and their plots. May import checks, layers, tasks and models."""
