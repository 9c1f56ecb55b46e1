"""seqexp: config-driven experiments with recurrent sequence models.

Its layers, lowest first, each importing only from itself and the layers below (tests/test_layers.py):
checks → cells → kernels → layers → tasks → models → config → diagnostics → tracking → commands, bench.
"""

__version__ = "0.1.0"
