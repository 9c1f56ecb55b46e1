"""What every layer checks its values with: the size check, and the error a bad config raises.
Pure Python; imports nothing of seqexp."""

from __future__ import annotations


def at_least(key: str, value: float, minimum: float, why: str = "") -> None:
    """Raise ``ValueError`` naming ``key``, what it must be and why, unless ``value >= minimum``."""
    if value < minimum:
        reason = f", {why}" if why else ""
        raise ValueError(f"{key} must be >= {minimum}{reason} (got {value})")


class ConfigError(ValueError):
    """A config that cannot run: the message names the key and what is allowed."""
