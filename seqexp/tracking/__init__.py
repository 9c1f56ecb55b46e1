"""Tracking: the one seam to MLflow: where runs go, records and their trust, checkpoints,
sweeps' parent runs, and the reports read from them. May import every layer below: checks,
cells, kernels, layers, tasks, models, config and diagnostics."""
