"""Checks on a composed config, and building objects from its groups."""

from __future__ import annotations

import difflib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import ReduceLROnPlateau

from seqexp.checks import ConfigError
from seqexp.config.location import CONF, shipped_config_dir  # noqa: F401 (seqexp.config.checking.CONF)

CLIP_ALGORITHMS = ("norm", "value")


LOGGERS = ("mlflow", "none")
SCHEDULER_INTERVALS = ("step", "epoch")
DETERMINISTIC = (True, False, "warn")
TRAINER_SET_BY_SEQEXP = ("logger", "callbacks", "default_root_dir")
MAX_SEED = 2**32 - 1
"""Lightning seeds numpy too, whose seeds are 32-bit."""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Checks:
    """The problems found in one config, all of them, each naming its key and what is allowed."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.problems: list[str] = []

    def value(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key, default=None)

    def expect(self, key: str, ok: bool, allowed: str) -> None:
        if not ok:
            self.problems.append(f"{key} must be {allowed} (got {self.value(key)!r})")

    def integer(self, key: str, minimum: int = 1, maximum: int | None = None, nullable: bool = False) -> None:
        value = self.value(key)
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if maximum is not None:
            allowed = f"an integer in [{minimum}, {maximum}]"
        in_range = is_int(value) and value >= minimum and (maximum is None or value <= maximum)
        ok = (nullable and value is None) or in_range
        self.expect(key, ok, f"null or {allowed}" if nullable else allowed)

    def number(self, key: str, minimum: float = 0.0, strict: bool = False, nullable: bool = False) -> None:
        value = self.value(key)
        finite = is_number(value) and math.isfinite(value)
        ok = (nullable and value is None) or (finite and (value > minimum if strict else value >= minimum))
        allowed = f"a finite number {'>' if strict else '>='} {minimum:g}"
        self.expect(key, ok, f"null or {allowed}" if nullable else allowed)

    def boolean(self, key: str) -> None:
        self.expect(key, isinstance(self.value(key), bool), "true or false")

    def one_of(self, key: str, allowed: tuple[Any, ...]) -> None:
        self.expect(key, self.value(key) in allowed, f"one of {list(allowed)}")


def check_config(cfg: DictConfig, trial: Callable[[], object] | None = None) -> None:
    """Fail fast, before anything is built or recorded, on every value that no group checks for
    itself; the error lists all the problems found, not only the first. Where there are any,
    ``trial()`` (building what the config describes: its task and model) runs too, and its first
    error joins them, so that one look shows a bad value and, say, a bad cell option."""
    checks = Checks(cfg)
    check_run(checks)
    check_optimization(checks)
    check_trainer(checks)
    problems = checks.problems
    if problems and trial is not None:
        problems += trial_error(trial)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems:\n  " + "\n  ".join(problems))


def trial_error(trial: Callable[[], object]) -> list[str]:
    """The error that ``trial()`` raises, if any (a config error as it is; anything else, most likely
    a consequence of the problems already found, with its type)."""
    try:
        trial()
    except ConfigError as error:
        return [str(error)]
    except Exception as error:
        return [f"building the task and model failed: {cause(error)}"]
    return []


def check_run(checks: Checks) -> None:
    """Sizes, seed, logger, sampling and decoder."""
    for key in ("model.hidden_size", "model.embedding_size", "data.batch_size", "data.batches_per_epoch"):
        checks.integer(key)
    checks.integer("seed", minimum=0, maximum=MAX_SEED)
    checks.integer("threads", nullable=True)
    checks.integer("training.tbptt_steps", nullable=True)
    checks.one_of("logger.name", LOGGERS)
    if checks.value("logger.name") == "mlflow":
        experiment = checks.value("logger.experiment")
        checks.expect("logger.experiment", isinstance(experiment, str) and experiment.strip(), "a name")
        checks.boolean("logger.log_model")
        if checks.value("logger.system_metrics") is not None:  # records written before it hold none
            checks.boolean("logger.system_metrics")
            checks.number("logger.system_metrics_interval_s", strict=True)
    checks.integer("sampling.count")
    checks.integer("sampling.max_length")
    checks.number("sampling.temperature", strict=True)
    checks.boolean("sampling.reject_unk")
    checks.boolean("decoder.attention")
    checks.integer("decoder.attention_size")
    checks.integer("decoder.beam_width")
    checks.number("decoder.length_penalty")
    checks.integer("decoder.attention_plots", minimum=0)


def check_optimization(checks: Checks) -> None:
    """The optimizer's and scheduler's values, then both built once on a trial parameter and
    stepped, which catches what their own checks let through until a run is under way."""
    cfg = checks.cfg
    checks.number("optimizer.lr", strict=True)
    for group in ("optimizer", "scheduler.lr_scheduler"):
        node = checks.value(group)
        for key, value in node.items() if isinstance(node, DictConfig) else ():
            if key != "lr" and is_number(value) and not math.isfinite(value):
                checks.expect(f"{group}.{key}", False, "a finite number")
    scheduler = checks.value("scheduler.lr_scheduler")
    if scheduler is not None:
        for key in ("step_size", "T_max", "T_0"):
            if key in scheduler:
                checks.integer(f"scheduler.lr_scheduler.{key}")
        if "patience" in scheduler:
            checks.integer("scheduler.lr_scheduler.patience", minimum=0)
        checks.one_of("scheduler.interval", SCHEDULER_INTERVALS)
    if checks.problems:
        return  # the trial would fail on what is already reported
    parameter = torch.zeros(1, requires_grad=True)
    try:
        optimizer = instantiate(cfg.optimizer, _partial_=True)([parameter])
    except Exception as error:
        checks.problems.append(f"optimizer ({cfg.optimizer.get('name')}) cannot be built: {cause(error)}")
        return
    if scheduler is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stepping a scheduler before its optimizer, on purpose
            lr_scheduler = hydra.utils.instantiate(scheduler, _partial_=True)(optimizer)
            for _ in range(3):
                optimizer.step()
                lr_scheduler.step(*([0.0] if isinstance(lr_scheduler, ReduceLROnPlateau) else []))
    except Exception as error:
        checks.problems.append(
            f"scheduler.lr_scheduler ({cfg.scheduler.get('name')}) fails on a trial step: {cause(error)}"
        )


def check_trainer(checks: Checks) -> None:
    """``trainer.*``: each key a keyword argument of Lightning's Trainer, the values seqexp relies on."""
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", *TRAINER_SET_BY_SEQEXP}
    for key in checks.cfg.trainer:
        if key != "name" and key not in accepted:
            close = difflib.get_close_matches(str(key), accepted, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            checks.problems.append(
                f"trainer.{key} is not a keyword argument of pytorch_lightning.Trainer that seqexp "
                f"passes on{hint}; {', '.join(TRAINER_SET_BY_SEQEXP)} are seqexp's own"
            )
    checks.integer("trainer.max_steps")
    checks.integer("trainer.log_every_n_steps")
    checks.one_of("trainer.gradient_clip_algorithm", CLIP_ALGORITHMS)
    checks.number("trainer.gradient_clip_val", nullable=True)
    checks.one_of("trainer.deterministic", DETERMINISTIC)
    for key in ("enable_progress_bar", "enable_model_summary"):
        checks.boolean(f"trainer.{key}")


@contextmanager
def build_errors(what: str) -> Iterator[None]:
    """Report what building ``what`` rejected as a :class:`ConfigError`, not a traceback."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, InstantiationException, MisconfigurationException) as error:
        raise ConfigError(f"{what} cannot be built: {cause(error)}") from error


def cause(error: Exception) -> str:
    """What went wrong, without Hydra's wrapping."""
    error = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
    return f"{type(error).__name__}: {error}"


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
