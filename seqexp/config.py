"""Checks on a composed config, and building objects from its groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

CLIP_ALGORITHMS = ("norm", "value")


def shipped_config_dir() -> Path:
    """seqexp's Hydra config: ``seqexp/conf`` in an installed wheel, else ``conf/`` at the top of the
    source tree (an editable install)."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / "conf"


CONF = shipped_config_dir()


class ConfigError(ValueError):
    """A config that cannot run: the message names the key and what is allowed."""


def check_config(cfg: DictConfig) -> None:
    """Fail fast, before anything is built, on values that no group checks for itself."""
    for key in (
        "model.hidden_size",
        "model.embedding_size",
        "data.batch_size",
        "data.batches_per_epoch",
        "trainer.max_steps",
    ):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer (got {value!r})")
    threads = cfg.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be null or a positive integer (got {threads!r})")
    if cfg.trainer.max_steps % cfg.data.batches_per_epoch:
        raise ConfigError(
            f"trainer.max_steps ({cfg.trainer.max_steps}) must be a multiple of data.batches_per_epoch "
            f"({cfg.data.batches_per_epoch}), so that the run ends with a validation and a checkpoint"
        )
    lr = cfg.optimizer.get("lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ConfigError(f"optimizer.lr must be a number > 0 (got {lr!r})")
    algorithm = cfg.trainer.get("gradient_clip_algorithm")
    if algorithm not in CLIP_ALGORITHMS:
        raise ConfigError(
            f"trainer.gradient_clip_algorithm must be one of {list(CLIP_ALGORITHMS)} (got {algorithm!r})"
        )
    clip = cfg.trainer.get("gradient_clip_val")
    if clip is not None and (not isinstance(clip, (int, float)) or clip < 0):
        raise ConfigError(f"trainer.gradient_clip_val must be null or a number >= 0 (got {clip!r})")


def options(node: DictConfig, *, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A group's node as plain keyword arguments, without its bookkeeping keys."""
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop}


def instantiate(node: DictConfig, *, drop: tuple[str, ...] = ("name",), **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` on a group's node, without its bookkeeping keys."""
    return hydra.utils.instantiate(options(node, drop=drop), **kwargs)


def chosen_options(cfg: DictConfig) -> dict[str, str]:
    """The option picked in each config group, e.g. ``{"cell": "lstm", "task": "adding"}``."""
    return {
        group: node.name for group, node in cfg.items() if isinstance(node, DictConfig) and "name" in node
    }
