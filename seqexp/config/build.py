"""Objects from a composed config: the task, the model, the data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seqexp.checks import ConfigError
from seqexp.config.checking import instantiate, options
from seqexp.config.renamed import with_keys_moved
from seqexp.layers import BlockStack, RecurrentStack, Stack
from seqexp.layers.initialization import initialized
from seqexp.layers.recurrent import CellFactory
from seqexp.models.budget import hidden_size_for_budget, trainable_parameters
from seqexp.models.data import TaskData
from seqexp.models.encoder_decoder import Seq2SeqModel
from seqexp.models.language import LanguageModel
from seqexp.models.sequence import SequenceModel
from seqexp.tasks import Task


def build_task(cfg: DictConfig) -> Task:
    with config_errors():
        return instantiate(cfg.task)


def build_model(cfg: DictConfig, task: Task) -> SequenceModel | Seq2SeqModel:
    """The model the config describes, shaped by what the task's spec asks for; with
    ``model.param_budget`` set, of the hidden size that spends that budget. Its stacks run on the
    kernel ``model.impl`` chooses (``cell.impl`` in records written before it moved); it clips
    by ``trainer.gradient_clip_val`` and ``trainer.gradient_clip_algorithm``."""
    cfg = with_keys_moved(cfg)
    if cfg.model.get("param_budget") is not None:
        cfg = sized(cfg, budget_hidden_size(cfg, task))
    cell_options = options(cfg.cell, drop=("name", "_target_"))
    spec = task.spec
    if spec.tokens:
        encoder: nn.Module = nn.Embedding(spec.input_size, cfg.model.embedding_size)
        input_size = cfg.model.embedding_size
    else:
        encoder, input_size = nn.Identity(), spec.input_size
    with config_errors():
        make_cell = partial(hydra.utils.get_class(cfg.cell._target_), **cell_options)
        stack = build_stack(cfg, initialized(make_cell, cfg.init.scheme), input_size)
        if spec.shape == "encoder_decoder":
            return build_seq2seq(cfg, task, stack, encoder, make_cell)
        model_class, extra = SequenceModel, {}
        if spec.shape == "one_to_many":
            model_class, extra = LanguageModel, {"sampling": options(cfg.sampling, drop=())}
        return model_class(
            task,
            stack,
            encoder,
            **optimization(cfg),
            **clipping(cfg),
            tbptt_steps=cfg.training.tbptt_steps,
            **extra,
        )


def build_stack(cfg: DictConfig, make_cell: CellFactory, input_size: int) -> Stack:
    """The topology's stack of cells: residual blocks where ``topology.block`` is set (and
    ``topology.bidirectional`` false), else layers of one direction or two."""
    topology = cfg.topology
    common = {"num_layers": topology.num_layers, "dropout": topology.dropout, "impl": cfg.model.impl}
    common |= {"input_dropout": topology.input_dropout}
    if topology.get("block") is None:
        return RecurrentStack(
            make_cell, input_size, cfg.model.hidden_size, bidirectional=topology.bidirectional, **common
        )
    if topology.bidirectional:
        raise ValueError(
            "topology.bidirectional must be false with topology.block: the blocks run left to right"
        )
    return BlockStack(
        make_cell, input_size, cfg.model.hidden_size, **options(topology.block, drop=()), **common
    )


def budget_hidden_size(cfg: DictConfig, task: Task) -> int:
    """The hidden size whose whole model (encoder, stacks, head: all it trains) has about
    ``model.param_budget`` parameters, counted on models built on the meta device (no memory),
    among the sizes the cell takes (multiples of :meth:`Recurrence.hidden_size_multiple`)."""
    with config_errors():
        cell_class = hydra.utils.get_class(cfg.cell._target_)
    multiple = cell_class.hidden_size_multiple(**options(cfg.cell, drop=("name", "_target_")))

    def count(hidden_size: int) -> int:
        with torch.device("meta"):
            return trainable_parameters(build_model(sized(cfg, hidden_size), task))

    return hidden_size_for_budget(count, cfg.model.param_budget, multiple=multiple)


def sized(cfg: DictConfig, hidden_size: int) -> DictConfig:
    """``cfg`` with ``model.hidden_size`` set and no ``model.param_budget``."""
    return OmegaConf.merge(cfg, {"model": {"hidden_size": hidden_size, "param_budget": None}})


def build_seq2seq(
    cfg: DictConfig,
    task: Task,
    stack: Stack,
    encoder: nn.Module,
    make_cell: CellFactory,
) -> Seq2SeqModel:
    """An encoder–decoder: ``stack`` (the topology's) encodes; the decoder has the same cell and
    ``num_layers`` in one direction, and reads ``[embed(y<t-1>), context<t>]`` with attention."""
    if cfg.training.tbptt_steps is not None:
        raise ValueError("training.tbptt_steps must be null for an encoder–decoder task (full BPTT only)")
    if not isinstance(stack, RecurrentStack):
        raise ValueError(
            "topology: an encoder–decoder task (task=dates) takes uni, bi, deep or deep_bi; "
            "topology=block is for the sequence and language tasks"
        )
    cell = stack.layers[0][0]
    if stack.num_directions == 2 and not cell.bridgeable:
        raise ValueError(
            f"topology: a bidirectional encoder hands its last states to the decoder through a learned "
            f"bridge; {type(cell).__name__}'s state is not one to bridge (a normaliser, a complex or a "
            "per-channel state: Recurrence.bridgeable): use topology=uni or deep"
        )
    context = stack.output_size if cfg.decoder.attention else 0
    decoder = RecurrentStack(
        initialized(make_cell, cfg.init.scheme),
        input_size=cfg.model.embedding_size + context,
        hidden_size=cfg.model.hidden_size,
        num_layers=cfg.topology.num_layers,
        dropout=cfg.topology.dropout,
        impl=cfg.model.impl,
    )
    decoding = options(cfg.decoder, drop=())
    return Seq2SeqModel(task, stack, encoder, decoder, **optimization(cfg), **clipping(cfg), **decoding)


def optimization(cfg: DictConfig) -> dict[str, Any]:
    """The optimizer and scheduler factories, and the scheduler's options for Lightning."""
    scheduler = cfg.scheduler.lr_scheduler
    return {
        "optimizer": instantiate(cfg.optimizer, _partial_=True),
        "scheduler": hydra.utils.instantiate(scheduler, _partial_=True) if scheduler else None,
        "scheduler_options": options(cfg.scheduler, drop=("name", "lr_scheduler")),
    }


CLIPPING_KEYS = {"gradient_clip_val": "clip_val", "gradient_clip_algorithm": "clip_algorithm"}
"""The ``trainer.*`` keys of gradient clipping, and the model's arguments they go to."""


def clipping(cfg: DictConfig) -> dict[str, Any]:
    """The model's clipping arguments, from the user-facing ``trainer.gradient_clip_val`` and
    ``trainer.gradient_clip_algorithm`` (the module clips in both training modes)."""
    return {argument: cfg.trainer.get(key) for key, argument in CLIPPING_KEYS.items() if key in cfg.trainer}


def trainer_options(cfg: DictConfig) -> dict[str, Any]:
    """The Trainer's keyword arguments: the ``trainer`` group but its clipping keys, which go to
    the model (:func:`clipping`; Lightning would refuse them under manual optimisation)."""
    return {k: v for k, v in options(cfg.trainer).items() if k not in CLIPPING_KEYS}


def build_data(cfg: DictConfig, task: Task) -> TaskData:
    return TaskData(task, cfg.data.batch_size, cfg.data.batches_per_epoch, cfg.seed)


@contextmanager
def config_errors() -> Iterator[None]:
    """Report what building rejected (a bad size, an unknown option) as a :class:`ConfigError`."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
        raise ConfigError(str(cause)) from error
