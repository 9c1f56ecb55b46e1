"""Tasks: seeded data generators with their loss, metrics and baseline. They know no models: may
import seqexp.checks only."""

from seqexp.tasks.base import Task, TaskSpec

__all__ = ["Task", "TaskSpec"]
