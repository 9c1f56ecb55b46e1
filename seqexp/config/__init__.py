"""Config: where seqexp's Hydra config is, every value checked before a run exists, and the
task, model and data built from it. May import everything below it: checks, cells, kernels,
layers, tasks and models."""
