"""The language model: a SequenceModel that predicts the next token at every step, steps one token
at a time for sampling, and records samples (through its recorder) at every validation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqexp.layers.recurrent import StackState
from seqexp.models.sampling import sample
from seqexp.models.sequence import SequenceModel

SAMPLES_DIR = "samples"


def check_unidirectional(num_directions: int) -> None:
    if num_directions != 1:
        raise ValueError(
            "topology: a language model must be unidirectional, it predicts one step at a time and "
            "cannot read the future; bidirectional topologies (bi, deep_bi) are for tagging, "
            "classification and encoders: use topology=uni or deep"
        )


class LanguageModel(SequenceModel):
    """``ŷ<t> = softmax(W_y a<t> + b_y)``, the distribution of ``y<t>`` given ``x<1..t>``.

    ``sampling`` (the config's ``sampling`` node: ``count``, ``max_length``, ``temperature``,
    ``reject_unk``) says what to sample at the end of every validation; the samples go to the
    module's recorder (with MLflow: the run) as ``samples/step_<global step>.txt``."""

    def __init__(self, *args: Any, sampling: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_unidirectional(self.stack.num_directions)
        self.sampling = sampling

    @torch.no_grad()
    def step(self, x: Tensor, state: StackState | None) -> tuple[Tensor, StackState]:
        """Feed ``x<t>`` (B,) from ``state`` (``None``: ``a<0> = 0``): the logits of ``ŷ<t>`` (B, V),
        on the CPU, and the new state."""
        run = self.stack.run(self.encoder(x.to(self.device)[:, None]), state)
        return self.head(run.outputs[:, 0]).float().cpu(), run.state

    def sample(
        self,
        count: int,
        max_length: int,
        temperature: float = 1.0,
        reject_unk: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """``count`` novel texts, in eval mode."""
        spec = self.task.spec
        training = self.training
        self.eval()
        ids = sample(
            self.step,
            count,
            spec.start_token,
            spec.end_token,
            max_length,
            temperature,
            spec.unknown_token if reject_unk else None,
            generator,
        )
        self.train(training)
        return [self.task.detokenize(row) for row in ids]

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        generator = torch.Generator().manual_seed(self.trainer.global_step)
        texts = self.sample(generator=generator, **self.sampling)
        text = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts)) + "\n"
        self.recorder.log_text(text, f"{SAMPLES_DIR}/step_{self.trainer.global_step:07d}.txt")
