"""Search: hyperparameter search and the memory horizon (Optuna). May import every layer below:
checks, cells, kernels, layers, tasks, models, config, diagnostics and tracking."""
