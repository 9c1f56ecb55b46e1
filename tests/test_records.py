"""Records are data: a recorded config that could run code, read this machine's environment or read
files outside the working directory is refused before anything in it is resolved or built."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.commands import sample
from seqexp.commands.rerun import recorded_config, rerun, rerun_main, resume
from seqexp.commands.train import train
from seqexp.tracking.records import (
    CORPUS_TAG,
    MOVED_TARGETS,
    TRUSTED_MODULES_ENV,
    check_record,
    corpus_digest,
    migrated,
    untrusted_targets,
)
from seqexp.tracking.runs import TAG_RUN_DIR


@pytest.fixture
def record(outputs: Path, compose: Callable[..., DictConfig], records: MlflowClient) -> Callable[..., str]:
    """``record(CHANGES, *OVERRIDES, tags=TAGS)``: a run recorded with the tiny config plus ``changes``
    (dotted keys, written unresolved), as a tampered or a foreign record would be; returns its run id."""

    def make(changes: dict[str, Any], *overrides: str, tags: dict[str, str] | None = None) -> str:
        cfg = compose(*TINY, *overrides)
        OmegaConf.resolve(cfg)
        for key, value in changes.items():
            OmegaConf.update(cfg, key, value, force_add=True)
        outputs.mkdir(parents=True, exist_ok=True)
        path = outputs / "config.yaml"
        path.write_text(OmegaConf.to_yaml(cfg))
        experiment = records.create_experiment("records", artifact_location=(outputs / "artifacts").as_uri())
        run = records.create_run(experiment, tags={TAG_RUN_DIR: str(outputs / "runs" / "x"), **(tags or {})})
        records.log_artifact(run.info.run_id, str(path))
        return run.info.run_id

    return make


def run_count(records: MlflowClient) -> int:
    return len(records.search_runs([e.experiment_id for e in records.search_experiments()]))


def shell(marker: Path) -> dict[str, str]:
    """A node that, if instantiated, runs a shell command that creates ``marker``."""
    return {"_target_": "torch.utils.collect_env.run", "command": f"touch {marker}"}


def exec_node(marker: Path) -> dict[str, Any]:
    return {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w').close()"]}


ADVERSARIAL = {
    "a nested torch function that runs a shell command": lambda m: {"optimizer.hook": shell(m)},
    "a seqexp. prefix that locates subprocess.run": lambda m: {
        "callbacks.evil": {"_target_": "seqexp.tracking.runs.subprocess.run", "_args_": [["touch", str(m)]]}
    },
    "builtins.exec at depth 3": lambda m: {"callbacks.nan_guard.hook": exec_node(m)},
    "an oc.create value": lambda m: {
        "callbacks.evil": f"${{oc.create:{{_target_: torch.utils.collect_env.run, command: 'touch {m}'}}}}"
    },
    "an oc.decode value": lambda m: {
        "callbacks.evil": "${oc.decode:'"
        + f'{{_target_: torch.utils.collect_env.run, command: "touch {m}"}}'
        + "'}"
    },
    "an oc.env value": lambda m: {"optimizer.lr": "${oc.env:SECRET_TOKEN}"},
}


@pytest.mark.parametrize("changes", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_an_adversarial_record_is_refused_and_nothing_runs(
    changes, outputs, tmp_path, monkeypatch, record, records
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "0.1")
    marker = tmp_path / "marker"
    run_id = record(changes(marker))

    with pytest.raises(ConfigError, match=r"the recorded config is refused: .*--trust"):
        rerun(records, run_id, outputs)
    with pytest.raises(ConfigError, match=r"--trust"):
        resume(records, run_id, outputs)

    assert not marker.exists(), "nothing in the record ran"
    assert run_count(records) == 1, "no new run was recorded"


def test_the_check_can_fail_with_trust_the_nested_target_does_run(outputs, tmp_path, record, records) -> None:
    marker = tmp_path / "marker"
    run_id = record({"optimizer.hook": shell(marker)}, "logger=none")

    with pytest.raises(Exception):  # noqa: B017 - whatever the optimizer makes of the hook's result
        rerun(records, run_id, outputs, trust=True)

    assert marker.exists(), "--trust is the way past the check, and the record's code ran"


def test_every_target_at_any_depth_is_checked_in_omegaconf_nodes_and_plain_containers(compose) -> None:
    cfg = compose(*TINY)
    assert untrusted_targets(cfg) == []
    OmegaConf.update(
        cfg, "callbacks.nan_guard.inner", {"deeper": [{"_target_": "os.system"}]}, force_add=True
    )
    expected = ["callbacks.nan_guard.inner.deeper[0]._target_ = 'os.system'"]
    assert untrusted_targets(cfg) == expected
    assert untrusted_targets(OmegaConf.to_container(cfg)) == expected
    assert untrusted_targets({"a": ({"_target_": "seqexp.commands.train.torch.load"},)}) == [
        "a[0]._target_ = 'seqexp.commands.train.torch.load'"
    ]


def test_a_user_names_their_own_modules_once_as_trusted(tmp_path, monkeypatch) -> None:
    (tmp_path / "mylab_cells.py").write_text("import os\n\n\nclass MyCell:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    node = {"cell": {"_target_": "mylab_cells.MyCell"}, "x": {"_target_": "mylab_cells.os.system"}}
    assert len(untrusted_targets(node)) == 2
    assert "mylab_cells" not in sys.modules, "an untrusted module is not even imported to check it"

    monkeypatch.setenv(TRUSTED_MODULES_ENV, "otherlab, mylab_cells")
    assert untrusted_targets(node) == ["x._target_ = 'mylab_cells.os.system'"]


def lm_record(record: Callable[..., str], corpus: Path, digest: str | None) -> str:
    return record(
        {"task.path": str(corpus)},
        "task=lm",
        "logger=none",
        tags={CORPUS_TAG: digest} if digest else None,
    )


def test_a_corpus_outside_the_working_directory_is_refused(
    outputs, tmp_path, monkeypatch, record, records
) -> None:
    corpus = tmp_path / "secret.txt"
    corpus.write_text("not for training\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_id = lm_record(record, corpus, None)

    with pytest.raises(ConfigError, match=r"task.path .*secret.txt.* is outside the working directory"):
        rerun(records, run_id, outputs)
    assert run_count(records) == 1


def test_a_language_model_records_its_corpus_and_a_changed_corpus_is_refused(
    outputs, tmp_path, monkeypatch, capsys, compose, records
) -> None:
    monkeypatch.chdir(tmp_path)
    corpus = Path("corpus.txt")
    lines = [f"the cat sat on mat number {i}.\n" for i in range(300)]
    corpus.write_text("".join(lines))
    cfg = compose(
        "task=lm",
        "task.path=corpus.txt",
        "task.seq_len=8",
        "task.train_size=32",
        "task.val_size=16",
        "data.batch_size=16",
        "model.hidden_size=8",
        "model.embedding_size=4",
        "trainer.max_steps=2",
        "data.batches_per_epoch=2",
        "trainer.enable_progress_bar=false",
        "callbacks.gradient_flow=null",
        "sampling.count=1",
        "sampling.max_length=5",
    )
    result = train(cfg, outputs / "runs" / "lm")
    assert records.get_run(result.run_id).data.tags[CORPUS_TAG] == corpus_digest(cfg)
    recorded = recorded_config(records, result.run_id)
    assert "${" not in OmegaConf.to_yaml(recorded), "records are written resolved"
    sample.main([result.run_id, "--outputs", str(outputs), "--count", "1"])
    capsys.readouterr()

    corpus.write_text("".join(reversed(lines)))
    with pytest.raises(SystemExit, match=r"corpus at task.path 'corpus.txt' has changed"):
        sample.main([result.run_id, "--outputs", str(outputs)])
    [checkpoint] = (outputs / "runs" / "lm" / "checkpoints").glob("epoch=*.ckpt")
    with pytest.raises(SystemExit, match=r"has changed since the run was recorded"):
        sample.main([str(checkpoint)])
    with pytest.raises(ConfigError, match=r"has changed since the run was recorded"):
        rerun(records, result.run_id, outputs)
    sample.main([result.run_id, "--outputs", str(outputs), "--count", "1", "--trust"])
    assert capsys.readouterr().out.strip()


def test_resume_writes_only_under_the_outputs_directory(outputs, tmp_path, record, records) -> None:
    run_id = record({})
    records.set_tag(run_id, TAG_RUN_DIR, str(tmp_path / "elsewhere"))

    with pytest.raises(ConfigError, match=r"run dir .*elsewhere is outside the outputs dir"):
        resume(records, run_id, outputs)
    assert not (tmp_path / "elsewhere").exists()


def test_the_command_refuses_without_a_traceback(outputs, tmp_path, monkeypatch, capsys, record) -> None:
    run_id = record({"callbacks.nan_guard.hook": exec_node(tmp_path / "marker")})
    monkeypatch.setattr(sys, "argv", ["seqexp-rerun", run_id, "--outputs", str(outputs)])

    with pytest.raises(SystemExit, match=r"seqexp-rerun: the recorded config is refused.*builtins.exec"):
        rerun_main()
    assert not (tmp_path / "marker").exists()


def test_a_record_written_before_the_layers_became_folders_still_builds(compose) -> None:
    """A record of the flat layout (callbacks at ``seqexp.diagnostics.*``, ``seqexp.solved``) names
    targets that moved: migrated, every one is allowed and locates the class it always meant."""
    record = compose(*TINY)
    record.callbacks = {
        "nan_guard": {"_target_": "seqexp.diagnostics.NonFiniteGuard"},
        "gradient_norms": {"_target_": "seqexp.diagnostics.GradientNorms"},
        "gradient_flow": {"_target_": "seqexp.diagnostics.GradientFlow", "every_n_steps": 100},
        "early_stopping": {"_target_": "seqexp.solved.StopOnceSolved"},
    }
    record = OmegaConf.create(OmegaConf.to_container(record, resolve=True))
    moved = migrated(record)

    check_record(moved, trust=False)
    for name, node in moved.callbacks.items():
        old = record.callbacks[name]._target_
        assert node._target_ == MOVED_TARGETS[old]
        assert hydra.utils.get_class(node._target_).__name__ == old.rsplit(".", 1)[1]
