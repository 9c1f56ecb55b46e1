#!/usr/bin/env bash
# seqexp as a user installs it: build the wheel, install it in a fresh virtual environment (reusing
# the torch and other dependencies of the python running this script, but seqexp itself from the
# wheel), and run a short seqexp from a directory outside the checkout; the run must record the
# onednn kernel. Works from a plain interpreter and from inside a virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

python -m pip wheel --quiet --no-deps --no-build-isolation . -w "$scratch/wheel"
rm -rf build
# The fresh venv imports from the directories this python imports from (its sys.path, one a line
# in a .pth file, after the venv's own site-packages), less the checkout. `venv --system-site-packages`
# would give it the *base* interpreter's site-packages, not those of the venv this script may run in,
# where a contributor's hydra and torch are. The directories' own .pth files are not run: the
# checkout's editable seqexp stays out of sight, and seqexp comes from the wheel.
python -m venv "$scratch/venv"
site_packages=$("$scratch/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
python - "$checkout" >"$site_packages/current_env.pth" <<'PY'
import sys
from pathlib import Path

checkout = Path(sys.argv[1]).resolve()
for entry in sys.path:
    path = Path(entry or ".").resolve()
    if path.is_dir() and not path.is_relative_to(checkout):
        print(path)
PY
"$scratch/venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$scratch"/wheel/seqexp-*.whl

mkdir "$scratch/elsewhere"
cd "$scratch/elsewhere"
"$scratch/venv/bin/seqexp" cell=peephole trainer.max_steps=5 data.batches_per_epoch=3 task.seq_len=6 \
    task.train_size=64 task.val_size=32 data.batch_size=16 model.hidden_size=8 threads=1 \
    trainer.enable_progress_bar=false callbacks.gradient_flow=null
"$scratch/venv/bin/python" - "$scratch" "$checkout" <<'PY'
import sys
from pathlib import Path

from mlflow import MlflowClient

import seqexp
from seqexp.config.location import CONF

scratch, checkout = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
assert Path(seqexp.__file__).resolve().is_relative_to(scratch / "venv"), f"seqexp from {seqexp.__file__}"
assert CONF.resolve().is_relative_to(scratch / "venv") and (CONF / "config.yaml").is_file(), CONF
store = Path("outputs/mlflow.db").resolve()
assert store.is_relative_to(scratch / "elsewhere"), "outputs under the current directory"
client = MlflowClient(f"sqlite:///{store}")
[run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
assert run.info.status == "FINISHED", run.info.status
assert run.data.tags["seqexp.kernel"] == "onednn", run.data.tags.get("seqexp.kernel")
assert not Path(run.data.tags["seqexp.run_dir"]).resolve().is_relative_to(checkout)
print(f"installed wheel: run {run.info.run_id} FINISHED on the onednn kernel, from {Path.cwd()}")
PY

# The Optuna sweeper from the wheel: Hydra's own scan of hydra_plugins finds it (no registration),
# and a 2-trial study runs to its end in a sweep directory of its own.
"$scratch/venv/bin/python" -c "
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
assert any(c.__module__ == 'hydra_plugins.seqexp_sweeper.optuna_sweeper' for c in Plugins.instance().discover(Sweeper))"
SEQEXP_OUTPUTS=sweep "$scratch/venv/bin/seqexp" -m hydra/sweeper=optuna hydra.sweeper.n_trials=2 \
    'optimizer.lr=tag(log, interval(1e-4, 3e-2))' trainer.max_steps=5 data.batches_per_epoch=3 task.seq_len=6 \
    task.train_size=64 task.val_size=32 data.batch_size=16 model.hidden_size=8 threads=1 \
    trainer.enable_progress_bar=false
"$scratch/venv/bin/python" -c "
import optuna
[study] = optuna.get_all_study_summaries('sqlite:///sweep/optuna.db')
assert study.n_trials == 2 and study.best_trial is not None, study
print(f'installed wheel: the Optuna sweeper found by Hydra, study {study.study_name} of 2 trials done')"
