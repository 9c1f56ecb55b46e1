"""Config keys that moved, and where they are now: a command line and a record that name the old
key keep working (importing nothing heavy: the command line is mapped before Hydra reads it)."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf, open_dict

from seqexp.checks import ConfigError

RENAMED_KEYS = {"cell.impl": "model.impl"}
"""Old key -> new key. ``cell.impl`` (the kernel a stack runs on) moved where the stack is built."""
OVERRIDE = re.compile(r"^(~|\+{1,2})?([\w.]+)(=.*)?$")


def renamed_override(override: str) -> str:
    """A command-line override with a renamed key written as the new one (``cell.impl=loop`` ->
    ``model.impl=loop``; with ``+``, ``++`` or ``~`` alike); any other override as it is."""
    match = OVERRIDE.match(override)
    if not match or match[2] not in RENAMED_KEYS:
        return override
    prefix = "" if match[1] == "+" else match[1] or ""  # the new key exists: ``+`` would refuse it
    return f"{prefix}{RENAMED_KEYS[match[2]]}{match[3] or ''}"


def renamed_overrides(args: list[str]) -> list[str]:
    return [renamed_override(arg) for arg in args]


def with_keys_moved(cfg: DictConfig) -> DictConfig:
    """``cfg`` with each renamed key that it still holds (a record written before the move, or
    ``+cell.impl=…`` composed by hand) moved to the new key. Both set, to different values: an
    error naming them."""
    moved = cfg
    for old, new in RENAMED_KEYS.items():
        value = OmegaConf.select(moved, old, default=None)
        if value is None:
            continue
        current = OmegaConf.select(moved, new, default=None)
        if current not in (None, "auto", value):
            raise ConfigError(f"{old} (now {new}) = {value!r} and {new} = {current!r}: set only {new}")
        moved = moved.copy()
        parent, leaf = old.rsplit(".", 1)
        with open_dict(moved):
            OmegaConf.update(moved, new, value, force_add=True)
            del OmegaConf.select(moved, parent)[leaf]
    return moved
