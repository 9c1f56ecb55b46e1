"""Sizes small enough for a test: overrides that shrink a run to seconds."""

from __future__ import annotations

ONE_BATCH = [
    "task.train_size=32",
    "task.val_size=32",
    "data.batch_size=32",
    "model.hidden_size=32",
    "model.embedding_size=8",
]
"""A token model small enough to fit one batch of 32 examples in a few hundred steps."""

TINY = [
    "threads=1",  # tiny models run fastest on one thread, and parallel jobs then don't oversubscribe
    "task.seq_len=6",
    "task.train_size=64",
    "task.val_size=32",
    "data.batch_size=16",
    "model.hidden_size=8",
    "trainer.max_steps=6",
    "data.batches_per_epoch=3",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]
"""A run of six steps on a model of eight units."""
