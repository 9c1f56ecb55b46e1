"""The encoder–decoder LightningModule (T_x ≠ T_y): separate encoder and decoder weights, teacher
forcing in training, greedy and beam-search decoding, optional additive attention."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqexp.checks import at_least
from seqexp.layers import Stack
from seqexp.layers.attention import AdditiveAttention, Bridge
from seqexp.layers.recurrent import StackRun, StackState
from seqexp.models.attention_plots import plot_attention
from seqexp.models.sequence import OptimizerFactory, SchedulerFactory, TaskModule
from seqexp.tasks import Task

ATTENTION_PLOT = "attention.png"


def check_decoder(decoder: Stack) -> None:
    if decoder.num_directions != 1:
        raise ValueError(
            "topology: a decoder must be unidirectional, it produces its outputs one step at a time "
            "and cannot read the future; bidirectional topologies (bi, deep_bi) apply to the encoder only"
        )


def after_end(tokens: Tensor, end_token: int) -> Tensor:
    """Which steps of ``tokens`` (B, T) come after the first ``end_token`` of their row."""
    is_end = tokens == end_token
    return (is_end.cumsum(-1) - is_end.long()) > 0


def sequence_log_prob(log_probs: Tensor, tokens: Tensor, end_token: int) -> tuple[Tensor, Tensor]:
    """``log P(y<1..T_y>)`` of each row of ``tokens`` (B, T) under per-step ``log_probs`` (B, T, V),
    up to and including the first ``end_token``; and that length."""
    chosen = log_probs.gather(-1, tokens[..., None]).squeeze(-1)
    counted = ~after_end(tokens, end_token)
    return (chosen * counted).sum(-1), counted.sum(-1)


class Seq2SeqModel(TaskModule):
    """An encoder stack reads the source; a decoder stack with its own weights writes the target.

    ``encoder`` embeds the source tokens and ``stack`` runs over them (its final state, through
    :class:`Bridge`, starts the decoder). The decoder is fed ``<SOS>`` and then, in training, the
    true previous character (teacher forcing), or in decoding its own choice:
    ``x<t> = [embed(y<t-1>), context<t>]`` with attention, ``embed(y<t-1>)`` without;
    ``ŷ<t> = softmax(W_y s<t> + b_y)``.

    Validation logs ``val/exact_match`` of beam search of ``beam_width`` (1: greedy), and
    ``val/exact_match_greedy`` and ``val/exact_match_beam`` for both decodings."""

    def __init__(
        self,
        task: Task,
        stack: Stack,
        encoder: nn.Embedding,
        decoder: Stack,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_options: dict[str, Any] | None = None,
        attention: bool = False,
        attention_size: int = 32,
        beam_width: int = 3,
        length_penalty: float = 0.7,
        attention_plots: int = 3,
        clip_val: float | None = None,
        clip_algorithm: str = "norm",
    ) -> None:
        super().__init__(task, optimizer, scheduler, scheduler_options, clip_val, clip_algorithm)
        check_decoder(decoder)
        at_least("decoder.beam_width", beam_width, 1)
        at_least("decoder.length_penalty", length_penalty, 0)
        at_least("decoder.attention_plots", attention_plots, 0)
        spec = task.spec
        self.encoder = encoder
        self.stack = stack
        probe = stack.run(encoder(torch.zeros(1, 1, dtype=torch.long)))  # for the shape of the state
        self.bridge = Bridge(stack.num_directions, stack.hidden_size, len(probe.state))
        self.target_embedding = nn.Embedding(spec.output_size, encoder.embedding_dim)
        self.attention = (
            AdditiveAttention(decoder.hidden_size, stack.output_size, attention_size) if attention else None
        )
        self.decoder = decoder
        self.head = nn.Linear(decoder.hidden_size, spec.output_size)
        self.beam_width = beam_width
        self.length_penalty = length_penalty
        self.attention_plots = attention_plots
        self.plotted: tuple[Tensor, Tensor, Tensor] | None = None

    def encode(self, x: Tensor, keep_steps: bool = False) -> StackRun:
        """The encoder's run over the source ``x`` (B, T_x), with the mask of its real positions."""
        pad = self.task.spec.pad_token
        run = self.stack.run(self.encoder(x), keep_steps=keep_steps)
        return run if pad is None else replace(run, mask=x != pad)

    def decode_step(
        self, token: Tensor, state: StackState, memory: Tensor, keys: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, StackState, Tensor | None]:
        """Feed ``y<t-1>`` (B,) from ``state``: the logits of ``ŷ<t>`` (B, V), the new state and ``α<t>``."""
        x = self.target_embedding(token)
        alpha = None
        if self.attention is not None:
            context, alpha = self.attention(state[0][-1], memory, keys, mask)
            x = torch.cat([x, context], -1)
        run = self.decoder.run(x[:, None], state)
        return self.head(run.outputs[:, 0]), run.state, alpha

    def decode(self, run: StackRun, forced: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Decode from the encoder's ``run`` for ``output_length`` steps, feeding ``forced`` (the
        target, teacher forcing) or else each step's most probable token (greedy).
        Returns the logits (B, T_y, V), the most probable tokens (B, T_y; after a greedy ``<EOS>``,
        ``<EOS>`` again) and ``α`` (B, T_y, T_x)."""
        spec = self.task.spec
        memory, state = run.outputs, self.bridge(run.state)
        keys = self.attention.W_h(memory) if self.attention is not None else None
        token = memory.new_full((len(memory),), spec.start_token, dtype=torch.long)
        steps = spec.output_length if forced is None else forced.shape[1]
        logits, tokens, alphas = [], [], []
        for t in range(steps):
            step_logits, state, alpha = self.decode_step(token, state, memory, keys, run.mask)
            logits.append(step_logits)
            alphas.append(alpha)
            token = step_logits.argmax(-1) if forced is None else forced[:, t]
            tokens.append(step_logits.argmax(-1))
        alpha = torch.stack(alphas, 1) if self.attention is not None else None
        chosen = torch.stack(tokens, 1)
        if forced is None:
            chosen = chosen.masked_fill(after_end(chosen, spec.end_token), spec.end_token)
        return torch.stack(logits, 1), chosen, alpha

    def read_out(self, run: StackRun) -> Tensor:
        """The greedy decoding's logits from a run of the encoder (what the gradient-flow
        diagnostics differentiate)."""
        return self.decode(run)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Greedy decoding: the logits of every output step (B, T_y, V)."""
        return self.read_out(self.encode(x))

    def beam_search(self, run: StackRun, width: int) -> tuple[Tensor, Tensor, Tensor]:
        """Beam search of ``width``: keep the ``width`` most probable partial outputs at every step;
        a finished one (``<EOS>``) carries on unchanged. Of the last beams, the one with the best
        ``log P / T_y^length_penalty``. Returns its tokens (B, T_y), ``log P`` and that score."""
        spec = self.task.spec
        end, V = spec.end_token, spec.output_size
        B, k = run.outputs.shape[0], width
        memory = run.outputs.repeat_interleave(k, 0)
        mask = None if run.mask is None else run.mask.repeat_interleave(k, 0)
        state = tuple(s.repeat_interleave(k, 1) for s in self.bridge(run.state))
        keys = self.attention.W_h(memory) if self.attention is not None else None
        scores = memory.new_full((B, k), float("-inf"))
        scores[:, 0] = 0.0
        token = torch.full((B * k,), spec.start_token, dtype=torch.long, device=memory.device)
        history = token.new_zeros(B * k, 0)
        finished = torch.zeros(B, k, dtype=torch.bool, device=memory.device)
        lengths = torch.zeros(B, k, device=memory.device)
        only_end = memory.new_full((V,), float("-inf"))
        only_end[end] = 0.0
        for _ in range(spec.output_length):
            logits, state, _ = self.decode_step(token, state, memory, keys, mask)
            log_p = torch.where(finished[..., None], only_end, logits.log_softmax(-1).view(B, k, V))
            scores, index = (scores[..., None] + log_p).view(B, k * V).topk(k, -1)
            beam, chosen = index // V, index % V
            rows = (torch.arange(B, device=memory.device)[:, None] * k + beam).view(-1)
            state = tuple(s[:, rows] for s in state)
            history = torch.cat([history[rows], chosen.view(-1, 1)], 1)
            lengths = lengths.gather(1, beam) + (~finished.gather(1, beam)).float()
            finished = finished.gather(1, beam) | (chosen == end)
            token = chosen.view(-1)
        normalised = scores / lengths.clamp(min=1) ** self.length_penalty
        best = normalised.argmax(-1)
        pick = torch.arange(B, device=memory.device) * k + best
        at_best = best[:, None]
        return history[pick], scores.gather(1, at_best).squeeze(1), normalised.gather(1, at_best).squeeze(1)

    def decode_beam(self, run: StackRun, width: int) -> tuple[Tensor, Tensor]:
        """Beam search's output, or greedy's where that scores better (beam search can drop the
        greedy path, so greedy's output competes too: the result is never worse than greedy's).
        Returns the tokens (B, T_y) and their ``log P``."""
        tokens, log_p, score = self.beam_search(run, width)
        logits, greedy, _ = self.decode(run)
        greedy_log_p, length = sequence_log_prob(logits.log_softmax(-1), greedy, self.task.spec.end_token)
        greedy_score = greedy_log_p / length.clamp(min=1).float() ** self.length_penalty
        better = greedy_score > score
        return torch.where(better[:, None], greedy, tokens), torch.where(better, greedy_log_p, log_p)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.log_training_metrics(batch)
        x, y = batch
        loss = self.task.loss(self.decode(self.encode(x), forced=y)[0], y)
        self.log_training_loss(loss, len(x))
        return loss

    def evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> dict[str, Tensor]:
        """The teacher-forced loss; the metric of beam search's outputs, and of both decodings'."""
        x, y = batch
        run = self.encode(x)
        forced = self.decode(run, forced=y)[0]
        _, greedy, alpha = self.decode(run)
        beam = self.decode_beam(run, self.beam_width)[0]
        exact = {"greedy": exact_match(greedy, y), "beam": exact_match(beam, y)}
        if stage == "val" and batch_idx == 0 and alpha is not None and self.attention_plots:
            n = self.attention_plots
            self.plotted = (x[:n].cpu(), greedy[:n].cpu(), alpha[:n].cpu())
        metric = self.task.spec.metric
        return {
            "loss": self.task.loss(forced, y),
            metric: exact["beam"],
            **{f"{metric}_{name}": value for name, value in exact.items()},
        }

    def on_validation_epoch_end(self) -> None:
        """The baseline and the solved flag, and the attention plot."""
        super().on_validation_epoch_end()
        if self.plotted is not None and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self.save_attention_plot()

    def save_attention_plot(self) -> None:
        x, tokens, alpha = self.plotted
        path = Path(self.trainer.default_root_dir) / ATTENTION_PLOT
        sources = [self.task.decode_source(row) for row in x]
        outputs = [self.task.decode_target(row) for row in tokens]
        plot_attention(sources, outputs, alpha, path, f"step {self.trainer.global_step}")
        self.recorder.log_artifact(path)


def exact_match(outputs: Tensor, target: Tensor) -> Tensor:
    """Share of rows of ``outputs`` (token ids) equal to ``target`` at every step."""
    return (outputs[:, : target.shape[1]] == target).all(-1).float().mean()
