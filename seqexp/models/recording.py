"""What the models and the diagnostics record beside their metrics (tags, texts, files), through
a :class:`Recorder` that the tracking layer implements and hands in: this layer names no tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Recorder(Protocol):
    """Where a run's tags, texts and files go (:class:`seqexp.tracking.runs.RunRecorder`: its
    MLflow run)."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tag the run with each ``name: value``."""

    def log_text(self, text: str, path: str) -> None:
        """Record ``text`` as the run's file ``path`` (e.g. ``samples/step_0000100.txt``)."""

    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        """Record the file at ``path`` with the run, in ``directory`` (``None``: at the top)."""


class NoRecorder:
    """A :class:`Recorder` that records nothing: a run without a tracker (``logger=none``), or a
    model used outside a run."""

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_text(self, text: str, path: str) -> None:
        pass

    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        pass


def recorder_of(module: object) -> Recorder:
    """The recorder of ``module`` (a seqexp model's ``recorder``); none for a module without one."""
    return getattr(module, "recorder", None) or NoRecorder()
