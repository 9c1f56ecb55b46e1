"""seqexp: config-driven experiments with recurrent sequence models."""

__version__ = "0.1.0"
