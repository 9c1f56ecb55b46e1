"""What a study leaves on its MLflow parent run: the trials as a table, the best trial's config and
Optuna's plots (optimisation history, parameter importances) as PNGs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
import yaml
from matplotlib import pyplot as plt
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from seqexp.search.trials import RUN, TRIAL_CALLBACK
from seqexp.tracking.runs import CONFIG_ARTIFACT, PatientClient

log = logging.getLogger(__name__)
ARTIFACTS = "optuna"
"""The parent run's artifact folder for the study."""


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial, if any completed."""
    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def write_best(study: optuna.Study, client: PatientClient, out: Path) -> None:
    """``best_trial.yaml`` (its number, value, parameters and MLflow run) and the best trial's
    full config, from its run."""
    best = best_trial(study)
    if best is None:
        return
    run = best.system_attrs.get(RUN)
    summary = {
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "fixed": best.user_attrs,
        "mlflow_run": run,
    }
    (out / "best_trial.yaml").write_text(yaml.safe_dump(summary, sort_keys=False))
    if run:
        config = yaml.safe_load(Path(client.download_artifacts(run, CONFIG_ARTIFACT, str(out))).read_text())
        (config.get("callbacks") or {}).pop(TRIAL_CALLBACK, None)  # the trial's link, of no use again
        (out / "best_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (out / CONFIG_ARTIFACT).unlink()


def plot(study: optuna.Study, out: Path) -> None:
    """Optuna's optimisation history and parameter importances, drawn with matplotlib, as PNGs
    (importances need two completed trials that differ)."""
    drawings = {
        "optimization_history.png": optuna_plots.plot_optimization_history,
        "param_importances.png": optuna_plots.plot_param_importances,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw in drawings.items():
            try:
                axes = draw(study)
            except (ValueError, RuntimeError) as error:
                log.warning("no %s: %s", name, error)
                continue
            axes.figure.savefig(out / name, dpi=100, bbox_inches="tight")
            plt.close(axes.figure)


def report_study(study: optuna.Study, client: PatientClient, parent: str, out: Path) -> None:
    """Write the study's report to ``out`` and log it to the parent run under ``optuna/``."""
    out.mkdir(parents=True, exist_ok=True)
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    write_best(study, client, out)
    plot(study, out)
    client.log_artifacts(parent, str(out), ARTIFACTS)
    best = best_trial(study)
    if best is not None:
        log.info("best trial %d: %.6g with %s", best.number, best.value, best.params)
