"""Models: the LightningModules (sequence, language model, encoder–decoder), their data and
sampling. May import seqexp.checks, cells, kernels, layers and tasks."""
