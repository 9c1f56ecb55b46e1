"""A fair comparison: every config tuned with the same search and trial budget on validation, then
its tuned config trained over fresh seeds and judged on test, with intervals."""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded when a comparison starts, not for seqexp-compare --help
    import optuna
    import pandas as pd

DEFAULT_SEARCH = "optimizer.lr=tag(log, interval(1e-4, 3e-2))"
"""What is tuned unless ``--search`` says otherwise: the learning rate, log-uniform."""


@dataclass
class Compared:
    """One config of the comparison: what tuning chose and what its seeds scored on test."""

    label: str
    """The compared overrides (``cell=gru``)."""
    overrides: list[str]
    """Every override of this config (shared and compared)."""
    study: str
    chosen: dict[str, Any] = field(default_factory=dict)
    """The best trial's values of the searched keys (empty if no trial completed)."""
    best_value: float = math.nan
    """The best trial's validation metric."""
    trials: dict[str, int] = field(default_factory=dict)
    """Tuning's trials by state (complete, pruned, fail)."""
    test: list[float] = field(default_factory=list)
    """The headline test metric of each seed's run that finished."""
    solved: list[bool] = field(default_factory=list)
    """Whether each seed's run solved the task on test."""
    seeds_failed: int = 0
    sequences: list[float] = field(default_factory=list)
    """The training sequences each seed's run that finished drew until its first solved validation
    (:func:`seqexp.tracking.report.sequences_to_solve`), for those solved at some validation."""

    def chosen_overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.chosen.items()]

    def chosen_text(self) -> str:
        return values_text(self.chosen) or "no trial completed"

    def trials_text(self) -> str:
        return "/".join(str(self.trials.get(state, 0)) for state in ("complete", "pruned", "fail"))


def values_text(values: dict[str, Any]) -> str:
    """``optimizer.lr=0.00312 model.hidden_size=64``: floats to 3 significant digits."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def trial_names(label: str, study: optuna.Study) -> dict[str, str]:
    """The MLflow run of each of a config's tuning trials, with the name that says what it is:
    ``tuning cell=gru trial 3 optimizer.lr=0.00312``."""
    from seqexp.search.trials import RUN

    return {
        trial.system_attrs[RUN]: f"tuning {label} trial {trial.number} {values_text(trial.params)}".strip()
        for trial in study.get_trials(deepcopy=False)
        if trial.system_attrs.get(RUN)
    }


def seed_name(label: str, seed: str) -> str:
    """The name of the run of a config's tuned config at ``seed``: ``seeds cell=gru seed=3``."""
    return f"seeds {label} seed={seed}"


def digest(*parts: Any) -> str:
    """A short name for what a comparison is: the same command, the same studies and directory."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:10]


SAFE_LENGTH = 80
"""The longest name :func:`safe` gives: a directory name may not exceed 255 bytes, and a config
that sweeps nothing is labelled by all its overrides."""


def safe(label: str) -> str:
    """A label as a directory or study name: a long one cut, with a digest of the whole."""
    name = re.sub(r"[^\w.\-]+", "_", label)
    if len(name) <= SAFE_LENGTH:
        return name
    return f"{name[: SAFE_LENGTH - 11]}-{digest(label)}"


def tuned(compared: Compared, study: optuna.Study) -> None:
    """Fill in what tuning chose: the best completed trial's searched values, and the trial counts."""
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    compared.trials = {
        state.name.lower(): states.count(state)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    if TrialState.COMPLETE in states:
        compared.chosen = dict(study.best_params)
        compared.best_value = study.best_value


def summary(compared: list[Compared], metric: str) -> pd.DataFrame:
    """The comparison's table: per config, the chosen values, tuning's trials and best validation
    metric, and the test metric over seeds (mean ± std, its 95% interval within the metric's range)
    with the solve rate, and the median training sequences the seeds drew until their first solved
    validation."""
    import pandas as pd

    from seqexp.tracking.intervals import estimate_metric, estimate_rate, metric_range
    from seqexp.tracking.report import interval_text, mean_text, rate_text, sequences_text

    geometric = metric_range(metric) == "non-negative"
    rows = []
    for item in compared:
        test = estimate_metric(f"test/{metric}", item.test)
        rate = estimate_rate(sum(item.solved), len(item.solved) + item.seeds_failed)
        rows.append(
            {
                "config": item.label,
                "tuned": item.chosen_text(),
                "trials (done/pruned/failed)": item.trials_text(),
                f"best val/{metric}": f"{item.best_value:.4g}",
                f"test/{metric}": mean_text(test),
                "95% CI" + (" (geom. mean)" if geometric else ""): interval_text(test, geometric),
                "seeds": f"{test.n} of {len(item.solved) + item.seeds_failed}" if item.chosen else "–",
                "solved (test)": rate_text(rate),
                "sequences to solve": sequences_text(item.sequences, len(item.solved) + item.seeds_failed)
                if item.chosen
                else "–",
            }
        )
    return pd.DataFrame(rows)


def headline_metrics(compared: list[Compared], metric: str) -> dict[str, float]:
    """The comparison's numbers for its parent run: per config, the mean test metric over its seeds
    (``test_<metric>/<config>``), its test solve rate (``solved/<config>``) and, where a seed was
    solved at some validation, the median training sequences until then
    (``sequences_to_solve/<config>``)."""
    numbers = {}
    for item in compared:
        seeds = len(item.solved) + item.seeds_failed
        if item.test:
            numbers[f"test_{metric}/{safe(item.label)}"] = math.fsum(item.test) / len(item.test)
        if seeds:
            numbers[f"solved/{safe(item.label)}"] = sum(item.solved) / seeds
        if item.sequences:
            numbers[f"sequences_to_solve/{safe(item.label)}"] = statistics.median(item.sequences)
    return numbers
