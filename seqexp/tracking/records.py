"""Records are data: what a recorded config may name before seqexp runs it again.

A record (a run's resolved ``config.yaml``) may name with ``_target_`` only what seqexp's own
``conf/`` names, or an object defined in seqexp (or in a module the user trusts through
:data:`TRUSTED_MODULES_ENV`); it holds no ``${...}`` interpolation, since records are written
resolved; and a language model's corpus is the file the run was trained on, inside the working
directory. ``--trust`` is the only way past these checks.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, OmegaConf

from seqexp.checks import ConfigError
from seqexp.config.checking import CONF

OWN_MODULE = "seqexp"
TRUSTED_MODULES_ENV = "SEQEXP_TRUSTED_MODULES"
"""Comma-separated modules (with their submodules) whose objects a record may name, e.g. ``mylab``."""
CORPUS_TAG = "seqexp.corpus_sha256"
CORPUS_FILE = "corpus.sha256"
"""Beside a run's ``config.yaml``: the SHA-256 of the file its ``task.path`` named."""
INTERPOLATION = re.compile(r"\$\{")
TRUST_HINT = "Pass --trust if you trust this record."


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every value in ``node``, at any depth, unresolved."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, node


def trusted_modules() -> tuple[str, ...]:
    """seqexp, and the modules the user named in ``$SEQEXP_TRUSTED_MODULES``."""
    named = os.environ.get(TRUSTED_MODULES_ENV, "").replace(",", " ").split()
    return (OWN_MODULE, *named)


@cache
def shipped_targets(conf: Path = CONF) -> frozenset[str]:
    """Every ``_target_`` that a YAML file of seqexp's ``conf/`` names."""
    found = set()
    for file in conf.rglob("*.yaml"):
        found |= {v for k, v in leaves(yaml.safe_load(file.read_text()) or {}) if k.endswith("_target_")}
    return frozenset(found)


def within(module: str, modules: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(f"{m}.") for m in modules)


def defined_in_trusted_module(target: str, modules: tuple[str, ...]) -> bool:
    """Is what Hydra would call for ``target`` defined in one of ``modules``? Only a trusted
    module is imported to find out; the object found is never called."""
    if not within(target, modules):
        return False
    try:
        found = _locate(target)
    except Exception:  # not found, for whatever reason: not trusted
        return False
    module = getattr(found, "__module__", None)
    return not isinstance(found, ModuleType) and isinstance(module, str) and within(module, modules)


def allowed_target(target: Any) -> bool:
    return isinstance(target, str) and (
        target in shipped_targets() or defined_in_trusted_module(target, trusted_modules())
    )


def untrusted_targets(node: Any) -> list[str]:
    """``key = target`` for every ``_target_``, at any depth, that a record may not name."""
    return [
        f"{key} = {value!r}"
        for key, value in leaves(node)
        if key.rsplit(".", 1)[-1] == "_target_" and not allowed_target(value)
    ]


def interpolations(node: Any) -> list[str]:
    """``key = value`` for every value, at any depth, that still holds a ``${...}``."""
    return [
        f"{key} = {value!r}"
        for key, value in leaves(node)
        if isinstance(value, str) and INTERPOLATION.search(value)
    ]


MOVED_TARGETS = {
    "seqexp.diagnostics.NonFiniteGuard": "seqexp.diagnostics.gradients.NonFiniteGuard",
    "seqexp.diagnostics.GradientNorms": "seqexp.diagnostics.gradients.GradientNorms",
    "seqexp.diagnostics.GradientFlow": "seqexp.diagnostics.gradients.GradientFlow",
    "seqexp.solved.StopOnceSolved": "seqexp.diagnostics.solved.StopOnceSolved",
    "seqexp.sweep.SweepRun": "seqexp.tracking.sweep.SweepRun",
}
"""Targets that records written before seqexp's layers became folders name, and where they are now."""


def migrated(node: Any) -> Any:
    """``node`` (a loaded record) with every moved ``_target_`` at any depth renamed where it now is."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.create(migrated(OmegaConf.to_container(node, resolve=False)))
    if isinstance(node, dict):
        return {
            key: MOVED_TARGETS.get(value, value) if key == "_target_" else migrated(value)
            for key, value in node.items()
        }
    if isinstance(node, list | tuple):
        return [migrated(value) for value in node]
    return node


def check_record(cfg: DictConfig, trust: bool) -> None:
    """Refuse, unless ``trust``, a record that names code seqexp does not ship or still holds an
    interpolation: nothing in it is resolved or instantiated before this check."""
    if trust:
        return
    problems = []
    if untrusted := untrusted_targets(cfg):
        problems.append(
            f"it names code outside seqexp's conf/ and modules ({', '.join(trusted_modules())}; "
            f"add yours to ${TRUSTED_MODULES_ENV}): {'; '.join(untrusted)}"
        )
    if unresolved := interpolations(cfg):
        problems.append(
            "it holds interpolations, which records never do (they are written resolved) and which "
            f"would be resolved on this machine: {'; '.join(unresolved)}"
        )
    if problems:
        raise ConfigError(f"the recorded config is refused: {'. And '.join(problems)}. {TRUST_HINT}")


def corpus_path(cfg: DictConfig) -> Path | None:
    """The text file ``task.path`` names, if any."""
    path = OmegaConf.select(cfg, "task.path", default=None)
    return Path(path) if path else None


def corpus_digest(cfg: DictConfig) -> str | None:
    """SHA-256 of the corpus file the run trains on (``None`` for a generated corpus)."""
    path = corpus_path(cfg)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def check_corpus(cfg: DictConfig, recorded_digest: str | None, trust: bool) -> None:
    """Refuse, unless ``trust``, a ``task.path`` outside the working directory, or a corpus that
    is not the one the run recorded (a record from before seqexp recorded digests has none)."""
    path = corpus_path(cfg)
    if path is None or trust:
        return
    here = Path.cwd().resolve()
    if not path.resolve().is_relative_to(here):
        raise ConfigError(
            f"task.path {str(path)!r} is outside the working directory {here}: a record may only "
            f"read a corpus inside it. {TRUST_HINT}"
        )
    digest = corpus_digest(cfg)
    if recorded_digest is not None and digest is not None and digest != recorded_digest:
        raise ConfigError(
            f"the corpus at task.path {str(path)!r} has changed since the run was recorded (sha256 "
            f"{recorded_digest} then, {digest} now). {TRUST_HINT}"
        )


def under(path: Path, outputs: Path, what: str) -> Path:
    """``path``, which must lie inside the outputs dir."""
    if not path.resolve().is_relative_to(outputs.resolve()):
        raise ConfigError(f"{what} {path} is outside the outputs dir {outputs.resolve()} (see --outputs)")
    return path
