"""One owner per concern: the models and callbacks record through a Recorder handed in from above,
the module's clipping is what a loop without Lightning applies too, and the kernel choice is
``model.impl`` (``cell.impl`` on a command line or in an old record moves there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from sizes import TINY

from seqexp.checks import ConfigError
from seqexp.config.build import build_data, build_model, build_task, trainer_options
from seqexp.config.renamed import renamed_override, with_keys_moved
from seqexp.diagnostics.gradients import FLOW_FILES, GradientFlow
from seqexp.diagnostics.solved import TAG_HIGHER_IS_BETTER, SolvedStep
from seqexp.models.recording import NoRecorder
from seqexp.models.sequence import KERNEL_TAG, GradientClipping


class FakeRecorder:
    """Keeps what it is given."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self.files: list[tuple[Path, str | None]] = []

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags |= tags

    def log_text(self, text: str, path: str) -> None:
        self.texts[path] = text

    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        self.files.append((Path(path), directory))


def test_the_model_and_its_callbacks_record_through_the_recorder_handed_in(tmp_path: Path, compose) -> None:
    cfg = compose(*TINY, "model.impl=custom")
    task = build_task(cfg)
    model = build_model(cfg, task)
    assert isinstance(model.recorder, NoRecorder), "a model records nothing until a recorder is handed in"
    model.recorder = recorder = FakeRecorder()
    callbacks = [SolvedStep(), GradientFlow(every_n_steps=3)]
    trainer = pl.Trainer(
        **trainer_options(cfg) | {"logger": False, "enable_checkpointing": False},
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=build_data(cfg, task))

    assert recorder.tags == {
        KERNEL_TAG: model.stack.kernel(next(model.parameters())),
        TAG_HIGHER_IS_BETTER: "False",
    }
    assert recorder.files == [(tmp_path / name, None) for name in FLOW_FILES]
    assert all(path.is_file() for path, _ in recorder.files)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_the_modules_clipping_outside_lightning_is_lightnings(algorithm: str) -> None:
    """What a plain loop (the bench's) applies is what Lightning's ``clip_gradients`` does."""
    clipping = GradientClipping(0.05, algorithm)
    torch.manual_seed(0)
    grads = [torch.randn(4, 3), torch.randn(5)]
    ours = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, q, g in zip(ours, theirs, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    assert clipping.acts(ours, torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
    clipping.apply(ours)
    optimizer = torch.optim.SGD(theirs, lr=1.0)
    pl.plugins.precision.Precision().clip_gradients(optimizer, 0.05, algorithm)

    assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, theirs, strict=True))
    assert not GradientClipping(None, algorithm).acts(ours, torch.tensor(1.0)), "no value: no clipping"
    with pytest.raises(ValueError, match=r"gradient_clip_algorithm must be one of \['norm', 'value'\]"):
        GradientClipping(1.0, "norm2")


@pytest.mark.parametrize(
    ("override", "now"),
    [
        ("cell.impl=loop", "model.impl=loop"),
        ("+cell.impl=loop", "model.impl=loop"),
        ("++cell.impl=custom", "++model.impl=custom"),
        ("cell.impl=custom,native", "model.impl=custom,native"),
        ("cell.forget_bias=2", "cell.forget_bias=2"),
        ("cell=gru", "cell=gru"),
    ],
)
def test_a_command_line_naming_cell_impl_sets_model_impl(override: str, now: str) -> None:
    assert renamed_override(override) == now


def old_record(compose: Callable[..., DictConfig], impl: str) -> OmegaConf:
    """Today's config as a record written before the move holds it: ``cell.impl``, no ``model.impl``."""
    cfg = compose(*TINY)
    with open_dict(cfg):
        cfg.cell.impl = impl
        del cfg.model["impl"]
    return cfg


def test_a_record_naming_cell_impl_runs_on_that_kernel(compose) -> None:
    cfg = old_record(compose, "loop")
    model = build_model(cfg, build_task(cfg))
    assert model.stack.impl == "loop"
    moved = with_keys_moved(cfg)
    assert moved.model.impl == "loop" and "impl" not in moved.cell
    assert "impl" in cfg.cell, "the record itself is left as it was"


def test_cell_impl_and_model_impl_that_disagree_are_refused(compose) -> None:
    cfg = old_record(compose, "loop")
    with open_dict(cfg):
        cfg.model.impl = "native"
    with pytest.raises(ConfigError, match=r"cell.impl \(now model.impl\) = 'loop' and model.impl = 'native'"):
        with_keys_moved(cfg)
