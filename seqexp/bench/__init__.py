"""Bench: ``seqexp-bench``, the speed of seqexp's kernels and training loop against torch's
own. May import any layer of seqexp."""
