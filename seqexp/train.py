"""The ``seqexp`` command: one training run (or, with ``-m``, a sweep) from the Hydra config."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from rich.console import Console
from rich.table import Table

from seqexp.build import build_data, build_model, build_task
from seqexp.config import ConfigError, check_config, instantiate, options
from seqexp.tracking import log_config, make_logger, tracking_uri, ui_command

console = Console()
# Lightning's own deprecation notice, of no use to a seqexp user.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
CONF = Path(__file__).parents[1] / "conf"
"""The Hydra config, at the top of the source tree (seqexp is installed editable)."""


@dataclass(frozen=True)
class RunResult:
    metrics: dict[str, float]
    """The last logged value of every metric."""
    headline: str
    """The task's headline metric, e.g. ``val/mse``."""
    run_id: str | None
    """The MLflow run, if one was recorded."""


def train(cfg: DictConfig, run_dir: Path) -> RunResult:
    """Check and build everything the config describes, train, and return the final metrics."""
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task = build_task(cfg)
    model = build_model(cfg, task)
    data = build_data(cfg, task)
    outputs = Path(cfg.paths.outputs)
    logger = make_logger(cfg, outputs) if cfg.logger.name == "mlflow" else None
    callbacks: list[pl.Callback] = [ModelCheckpoint(run_dir / "checkpoints", monitor="val/loss")]
    callbacks += [instantiate(node, drop=()) for node in cfg.callbacks.values() if node is not None]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(RichProgressBar())
    trainer = pl.Trainer(
        **options(cfg.trainer), logger=logger or False, callbacks=callbacks, default_root_dir=run_dir
    )
    if logger:
        log_config(logger, cfg, run_dir)
    trainer.fit(model, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    result = RunResult(metrics, f"val/{task.spec.metric}", logger.run_id if logger else None)
    report(result, cfg, outputs)
    return result


def report(result: RunResult, cfg: DictConfig, outputs: Path) -> None:
    """Print the final metrics, where the run is recorded and how to look at it."""
    table = Table("metric", "final value", title="seqexp run")
    for name, value in sorted(result.metrics.items()):
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    if result.run_id:
        uri = tracking_uri(outputs)
        console.print(
            f"MLflow run {result.run_id} in experiment '{cfg.logger.experiment}' at {uri}", soft_wrap=True
        )
        console.print(f"open it with: {ui_command(uri)}", soft_wrap=True)


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Hydra's entry point; returns the headline metric, which sweepers minimise."""
    try:
        result = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:
        console.print(f"[bold red]seqexp: bad config:[/] {error}", soft_wrap=True)
        sys.exit(2)
    return result.metrics[result.headline]
