"""The one check that the cells, tasks and modules all make on their sizes and counts."""

from __future__ import annotations


def at_least(key: str, value: float, minimum: float, why: str = "") -> None:
    """Raise ``ValueError`` naming ``key``, what it must be and why, unless ``value >= minimum``."""
    if value < minimum:
        reason = f", {why}" if why else ""
        raise ValueError(f"{key} must be >= {minimum}{reason} (got {value})")
