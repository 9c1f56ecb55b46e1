"""Where runs are recorded (MLflow), and what each record holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger

import seqexp
from seqexp.config import chosen_options

CONFIG_ARTIFACT = "config.yaml"


def tracking_uri(outputs: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite file in the outputs dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{outputs.resolve() / 'mlflow.db'}"


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri``, on this machine only."""
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"


def run_name(cfg: DictConfig) -> str:
    """E.g. ``lstm-uni-adding-T50-seed0``."""
    return f"{cfg.cell.name}-{cfg.topology.name}-{cfg.task.name}-T{cfg.task.seq_len}-seed{cfg.seed}"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The chosen group options (``cell``, ``task``, ...) and the whole resolved config, dotted."""
    return chosen_options(cfg) | flatten(OmegaConf.to_container(cfg, resolve=True))


def run_tags() -> dict[str, str]:
    """Version, git state and, inside a Hydra app, its overrides and sweep position."""
    source = Path(seqexp.__file__).parent
    tags = {"seqexp.version": seqexp.__version__} | git_tags(source)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        tags["seqexp.overrides"] = " ".join(hydra_cfg.overrides.task)
        if hydra_cfg.mode.name == "MULTIRUN":
            tags["seqexp.sweep_dir"] = str(Path(hydra_cfg.sweep.dir).resolve())
            tags["seqexp.job"] = str(hydra_cfg.job.num)
    return tags


def git_tags(source: Path) -> dict[str, str]:
    """The commit the code came from, and whether the tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "seqexp.git_commit": git("rev-parse", "HEAD"),
            "seqexp.git_dirty": str(bool(git("status", "--porcelain"))),
        }
    except (OSError, subprocess.CalledProcessError):
        return {}


def make_logger(cfg: DictConfig, outputs: Path) -> MLFlowLogger:
    """An MLflow logger for this run; the run is created at once, with its params and tags."""
    uri = tracking_uri(outputs)
    local = uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI")
    logger = MLFlowLogger(
        experiment_name=cfg.logger.experiment,
        run_name=run_name(cfg),
        tracking_uri=uri,
        tags=run_tags(),
        log_model=cfg.logger.log_model,
        artifact_location=(outputs.resolve() / "artifacts").as_uri() if local else None,
    )
    logger.log_hyperparams(run_params(cfg))
    return logger


def log_config(logger: MLFlowLogger, cfg: DictConfig, run_dir: Path) -> None:
    """Save the resolved config beside the run and as an artifact: enough to rerun it."""
    path = run_dir / CONFIG_ARTIFACT
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger.experiment.log_artifact(logger.run_id, str(path))
