"""Models: the LightningModules (sequence, language model, encoder–decoder), their data and
sampling, and the Recorder interface they record through (the tracking layer implements it and
hands it in). May import seqexp.checks, cells, kernels, layers and tasks."""
