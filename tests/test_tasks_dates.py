"""Date translation (encoder–decoder): the generator's dates, beam search against greedy
decoding, the decoder's topology, and a tiny model through the framework."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from sizes import ONE_BATCH

from seqexp.cells import LSTMCell
from seqexp.checks import ConfigError
from seqexp.commands.train import train
from seqexp.config.build import build_model, build_task
from seqexp.layers.recurrent import RecurrentStack
from seqexp.models.encoder_decoder import Seq2SeqModel, sequence_log_prob
from seqexp.tasks.dates import EOS, FORMATS, LONGEST, PAD, SOS, DatesTask, ordinal


def test_the_formats_of_one_hand_checked_date() -> None:
    day = datetime.date(1979, 5, 3)
    assert [render(day) for render in FORMATS.values()] == [
        "3 May 1979",
        "Thursday, May 3, 1979",
        "03/05/79",
        "3rd of May '79",
        "May 3, 1979",
        "May 3rd, 1979",
        "03.05.1979",
        "3-May-79",
        "thu 3 may 1979",
        "the 3rd of may 1979",
    ]
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th",
    ]  # fmt: skip
    assert len("Wednesday, September 27, 2001") == LONGEST


def test_every_source_says_its_iso_date() -> None:
    """The day, month and year of the ISO date are in the source (two-digit years: 50-99 are
    19xx, 00-49 are 20xx); the weekday, where there is one, is the date's own."""
    task = DatesTask()
    months = [datetime.date(2000, m, 1).strftime("%B") for m in range(1, 13)]
    for human, iso in task.dates(500, seed=0):
        day = datetime.date.fromisoformat(iso)
        assert human in {render(day) for render in FORMATS.values()}
        assert str(day.day) in human and (str(day.year) in human or f"{day:%y}" in human)
        assert months[day.month - 1][:3].lower() in human.lower() or f"{day:%m}" in human
    assert "'49" in [render(datetime.date(2049, 1, 1)) for render in FORMATS.values()][3]
    assert FORMATS["dd/mm/yy"](datetime.date(1950, 12, 31)) == "31/12/50"


def test_inputs_are_left_padded_characters_and_targets_iso_characters_then_eos() -> None:
    task = DatesTask(seq_len=32)
    x, y = task.generate(20, seed=1)
    assert x.shape == (20, 32) and y.shape == (20, 11)
    for row, target, (human, iso) in zip(x, y, task.dates(20, seed=1), strict=True):
        assert task.decode_source(row) == human
        assert (row[: 32 - len(human)] == PAD).all() and (row[32 - len(human) :] != PAD).all()
        assert task.decode_target(target) == iso and target[-1] == EOS
    assert task.spec.start_token == SOS and task.spec.output_length == 11
    assert task.spec.baseline == pytest.approx(1 / 36525)


def model(compose: Callable[..., DictConfig], *overrides: str) -> tuple[Seq2SeqModel, DatesTask]:
    torch.manual_seed(0)
    cfg = compose("task=dates", "model.hidden_size=16", "model.embedding_size=8", *overrides)
    task = build_task(cfg)
    return build_model(cfg, task).eval(), task


@pytest.mark.parametrize("overrides", [["decoder.attention=true"], ["topology=bi", "cell=gru_simple"]])
def test_beam_search_of_width_one_is_greedy_decoding(overrides: list[str], compose) -> None:
    m, task = model(compose, *overrides)
    with torch.no_grad():
        run = m.encode(task.generate(16, seed=0)[0])
        beam, log_p, _ = m.beam_search(run, 1)
        logits, greedy, _ = m.decode(run)
    assert torch.equal(beam, greedy)
    expected, _ = sequence_log_prob(logits.log_softmax(-1), greedy, EOS)
    assert torch.allclose(log_p, expected, atol=1e-5)


@pytest.mark.parametrize("width", [2, 3, 5])
def test_beam_search_never_scores_worse_than_greedy_in_log_probability(width: int, compose) -> None:
    m, task = model(compose, "decoder.attention=true", "decoder.length_penalty=0.0")
    with torch.no_grad():
        run = m.encode(task.generate(32, seed=0)[0])
        logits, greedy, _ = m.decode(run)
        greedy_log_p, _ = sequence_log_prob(logits.log_softmax(-1), greedy, EOS)
        tokens, log_p = m.decode_beam(run, width)
        forced = m.decode(run, forced=tokens)[0]
    assert (log_p >= greedy_log_p - 1e-5).all()
    assert (log_p > greedy_log_p + 1e-3).any(), "and on an untrained model it finds better outputs"
    rescored, _ = sequence_log_prob(forced.log_softmax(-1), tokens, EOS)
    assert torch.allclose(rescored, log_p, atol=1e-4), "log P is the model's own for those tokens"


def test_attention_never_reads_the_padding(compose) -> None:
    """Every step's ``α`` is a distribution over the source's own characters: exactly 0 on the
    left padding."""
    m, task = model(compose, "decoder.attention=true")
    x, _ = task.generate(16, seed=0)
    padding = x == PAD
    assert padding.any(1).all(), "every source in this batch is padded"
    with torch.no_grad():
        run = m.encode(x)
        _, _, alpha = m.decode(run)
        torch.testing.assert_close(alpha.sum(-1), torch.ones(alpha.shape[:2]))
        assert (alpha.masked_select(padding[:, None].expand_as(alpha)) == 0).all()


def test_sequence_log_prob_counts_up_to_the_first_eos() -> None:
    log_probs = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    log_p, length = sequence_log_prob(log_probs, torch.tensor([[0, 1, 1]]), end_token=1)
    assert log_p.item() == pytest.approx(float(torch.log(torch.tensor(0.5 * 0.75))))
    assert length.item() == 2


def test_a_bidirectional_decoder_is_refused(compose) -> None:
    m, task = model(compose)
    bi = RecurrentStack(LSTMCell, input_size=8, hidden_size=16, bidirectional=True)
    with pytest.raises(ValueError, match=r"topology: a decoder must be unidirectional.*encoder only"):
        Seq2SeqModel(task, m.stack, m.encoder, bi, optimizer=torch.optim.Adam)


def test_a_tiny_encoder_decoder_with_attention_fits_a_small_batch_and_logs_its_attention(
    outputs: Path, compose, records
) -> None:
    cfg = compose(
        "task=dates",
        "decoder.attention=true",
        "decoder.attention_plots=2",
        *ONE_BATCH,
        "optimizer.lr=0.02",
        "trainer.max_steps=150",
        "data.batches_per_epoch=150",
        "trainer.enable_progress_bar=false",
        "callbacks.gradient_flow.every_n_steps=1000",
    )
    result = train(cfg, outputs / "run")
    metrics = result.metrics
    assert metrics["train/loss"] < 0.1, "far below log 13, a uniform guess"
    assert {"val/exact_match_greedy", "val/exact_match_beam", "val/loss"} <= metrics.keys()
    assert metrics["val/exact_match_baseline"] == pytest.approx(1 / 36525)
    assert metrics["val/solved"] == float(metrics["val/exact_match"] > 0.95)
    artifacts = {a.path for a in records.list_artifacts(result.run_id)}
    assert {"attention.png", "gradient_flow.png", "config.yaml", "checkpoints"} <= artifacts
    tags = records.get_run(result.run_id).data.tags
    assert (tags["seqexp.kernel"], tags["seqexp.kernel.decoder"]) == ("native", "native")  # LSTMs, auto


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("task.seq_len=20", r"task.seq_len must be >= 29, the longest formatted date"),
        ("decoder.beam_width=0", r"decoder.beam_width must be >= 1"),
        ("decoder.length_penalty=-1", r"decoder.length_penalty must be >= 0"),
        ("training.tbptt_steps=5", r"training.tbptt_steps must be null for an encoder–decoder task"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(bad: str, message: str, compose) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg = compose("task=dates", bad)
        build_model(cfg, build_task(cfg))
