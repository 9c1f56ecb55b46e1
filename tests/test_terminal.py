"""What a user sees at the terminal: ``seqexp --help`` without the heavy libraries, no advertisements,
a progress bar in steps of ``max_steps``, no download progress bars, and optional system metrics."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from sizes import TINY

from seqexp.commands.terminal import ADVERTISEMENT, StepProgressBar, no_advertisements
from seqexp.commands.train import train
from seqexp.config.build import build_data, build_model, build_task, trainer_options
from seqexp.tracking.runs import quiet_artifact_downloads

HEAVY = ("torch", "pytorch_lightning", "lightning_fabric", "mlflow")
COMMAND = """
import sys
sys.argv = ["seqexp", *sys.argv[1:]]
from seqexp.commands.train import main
try:
    main()
except SystemExit:
    pass
print("heavy:", sorted(m for m in {heavy} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job", "cell.impl=loop"]])
def test_help_and_the_config_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    command = [sys.executable, "-c", COMMAND.format(heavy=HEAVY), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout.rstrip().endswith("heavy: []"), done.stdout[-500:] + done.stderr[-2000:]
    if "job" in args:
        assert "  impl: loop\n" in done.stdout.split("\nmodel:\n", 1)[1].split("\n\n")[0] + "\n"


def test_a_run_shows_no_advertisement_and_lightning_is_left_as_it_was(outputs, caplog, compose) -> None:
    caplog.set_level(logging.INFO)
    train(compose(*TINY, "logger=none", "trainer.max_steps=2"), outputs / "run")
    assert ADVERTISEMENT not in caplog.text
    caplog.clear()
    pl.Trainer(logger=False, enable_progress_bar=False)
    assert ADVERTISEMENT in caplog.text, "outside seqexp's runs Lightning's messages are untouched"
    caplog.clear()
    with no_advertisements():
        logging.getLogger("pytorch_lightning.utilities.rank_zero").info("GPU available: False")
    assert "GPU available" in caplog.text, "Lightning's other messages still show"


def test_the_progress_bar_counts_steps_towards_max_steps(tmp_path: Path, compose) -> None:
    cfg = compose(*TINY, "trainer.max_steps=7", "data.batches_per_epoch=3")
    task = build_task(cfg)
    bar = StepProgressBar()
    options = trainer_options(cfg) | {
        "enable_progress_bar": True,
        "logger": False,
        "enable_checkpointing": False,
    }
    trainer = pl.Trainer(**options, callbacks=[bar], default_root_dir=tmp_path)
    seen: list[tuple[float, float, str]] = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, *args: object) -> None:
            task_ = bar.progress.tasks[bar.train_progress_bar_id]
            seen.append((task_.completed, task_.total, task_.description))

    trainer.callbacks.append(Watch())
    trainer.fit(build_model(cfg, task), datamodule=build_data(cfg, task))

    assert [completed for completed, _, _ in seen] == [1, 2, 3, 4, 5, 6, 7], "across epochs, not per epoch"
    assert {total for _, total, _ in seen} == {7}
    assert {description.strip() for _, _, description in seen} == {"Step"}


def test_system_metrics_are_recorded_when_asked(outputs, compose, records) -> None:
    assert not compose().logger.system_metrics, "off by default"
    on = ["logger.system_metrics=true", "logger.system_metrics_interval_s=0.2", "trainer.max_steps=30"]
    result = train(compose(*TINY, *on, "data.batches_per_epoch=10"), outputs / "run")
    metrics = records.get_run(result.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics


def test_download_progress_bars_are_off_only_inside_the_block(monkeypatch) -> None:
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    monkeypatch.delenv(key, raising=False)
    with quiet_artifact_downloads():
        assert os.environ[key] == "false"
    assert key not in os.environ
    monkeypatch.setenv(key, "true")
    with quiet_artifact_downloads():
        pass
    assert os.environ[key] == "true"
