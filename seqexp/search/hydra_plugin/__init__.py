"""seqexp's Hydra plugins, installed as ``hydra_plugins.seqexp_sweeper`` (pyproject's package-dir),
where Hydra looks for plugins. Kept light: Hydra imports it whenever it scans for plugins."""
