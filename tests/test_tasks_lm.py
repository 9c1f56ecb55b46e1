"""The language model (one-to-many): its text, vocabulary and examples; sampling as the course
describes it; a tiny model through the framework, its logged samples and ``seqexp-sample``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient
from sizes import ONE_BATCH
from torch.utils.data import DataLoader

from seqexp.checks import ConfigError
from seqexp.commands import sample as sample_command
from seqexp.commands.train import train
from seqexp.config.build import build_model, build_task
from seqexp.models.sampling import draw, sample
from seqexp.tasks.lm import EOS, UNK, LanguageModelTask, tokenize, vocabulary


def test_tokens_at_character_and_word_level() -> None:
    assert tokenize("ab a\nb\n", "char") == ["a", "b", " ", "a", EOS, "b", EOS]
    assert tokenize("The cat sat.\nIt's\n", "word") == ["The", "cat", "sat", ".", EOS, "It", "'", "s", EOS]


def test_the_vocabulary_is_the_most_frequent_tokens_after_eos_and_unk() -> None:
    words = tokenize("the cat sat . the dog sat .\n", "word")
    assert vocabulary(words, 2) == [EOS, UNK, ".", "sat"]  # ".", "sat", "the": 2 each; "." < "sat" < "the"
    assert vocabulary(words, None) == [EOS, UNK, ".", "sat", "the", "cat", "dog"]


def test_examples_start_after_an_eos_and_targets_are_the_next_tokens(tmp_path: Path) -> None:
    lines = [f"line {i % 7} é" for i in range(1000)]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = LanguageModelTask(seq_len=12, level="char", path=str(text))
    assert "é" in task.vocab
    x, y = task.generate(50, seed=0)
    assert (x[:, 0] == 0).all(), "x<1> = <EOS>, the start token"
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert task.detokenize(x[0, 1:8].tolist()).startswith("line ")
    tokens = len(tokenize(text.read_text(), "char"))
    assert [len(part) for part in task.splits.values()] == pytest.approx(
        [0.8 * tokens, 0.1 * tokens, 0.1 * tokens], abs=2
    )
    assert sum(len(part) - 1 for part in task.splits.values()) == tokens, "three parts, no token in two"


def test_each_split_draws_from_its_own_part_of_the_text() -> None:
    task = LanguageModelTask(seq_len=4, level="word", corpus_sentences=200)
    for split, text in task.splits.items():
        windows = text.unfold(0, 5, 1)
        x, y = task.examples(split, 20, seed=2)
        for row in torch.cat([x, y[:, -1:]], 1):
            assert (windows == row).all(1).any()
    assert torch.equal(task.generate(20, seed=2)[0], task.examples("train", 20, seed=2)[0])


def test_the_baseline_is_the_unigram_models_cross_entropy(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("aab\n" * 200)  # per line a, a, b, <EOS>
    task = LanguageModelTask(seq_len=4, level="char", path=str(text))
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert task.spec.baseline == pytest.approx(entropy / math.log(2), rel=0.01)
    assert task.spec.metric == "bits_per_char"
    words = LanguageModelTask(seq_len=4, level="word", path=str(text))
    assert words.spec.metric == "perplexity" and words.spec.baseline == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("task.level=byte", r"task.level must be one of \['char', 'word'\]"),
        ("task.path=/no/such/file.txt", r"task.path must be a UTF-8 text file"),
        ("task.seq_len=100000", r"task.seq_len=100000 is longer than the training text"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(bad: str, message: str, compose) -> None:
    with pytest.raises(ConfigError, match=message):
        build_task(compose("task=lm", "task.corpus_sentences=100", bad))


def test_perplexity_is_e_to_the_mean_cross_entropy_over_all_validation_tokens(compose) -> None:
    """Over batches of unequal cross-entropy the mean of each batch's perplexity is larger (Jensen):
    the logged perplexity is the unbiased one, e to the logged mean cross-entropy."""
    cfg = compose("task=lm", "task.level=word", "task.corpus_sentences=200", "task.seq_len=8", "logger=none")
    task = build_task(cfg)
    model = build_model(cfg, task)
    with torch.no_grad():  # the model all but sure of token 2: a batch of 2s is easy, one of 3s hard
        model.head.bias[2] = 8.0
    x, _ = task.examples("val", 48, seed=0)
    batches = [(x[:16], torch.full_like(x[:16], 2)), (x[16:], torch.full_like(x[16:], 3))]
    with torch.no_grad():
        per_batch = [model.evaluate(batch, 0, "val") for batch in batches]
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    [logged] = trainer.validate(model, DataLoader(batches, batch_size=None), verbose=False)

    xent = (per_batch[0]["xent"] * 16 + per_batch[1]["xent"] * 32) / 48
    assert logged["val/xent"] == pytest.approx(xent.item(), rel=1e-5)
    assert logged["val/perplexity"] == pytest.approx(math.exp(logged["val/xent"]), rel=1e-5)
    mean_of_batches = (per_batch[0]["perplexity"] * 16 + per_batch[1]["perplexity"] * 32) / 48
    assert logged["val/perplexity"] < mean_of_batches.item() / 2


def frequencies(tokens: torch.Tensor, size: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=size).float() / len(tokens)


def test_draws_follow_the_distribution_its_temperature_and_unk_rejection() -> None:
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = p.log().expand(40_000, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(frequencies(draw(logits, generator=g), 4), p, atol=0.01)
    hot = p.sqrt() / p.sqrt().sum()  # temperature 2: softmax(log p / 2)
    assert torch.allclose(frequencies(draw(logits, temperature=2.0, generator=g), 4), hot, atol=0.01)
    without_0 = torch.cat([torch.zeros(1), p[1:] / p[1:].sum()])
    assert torch.allclose(frequencies(draw(logits, reject=0, generator=g), 4), without_0, atol=0.01)
    with pytest.raises(ValueError, match="sampling.temperature must be > 0"):
        draw(logits, temperature=0.0)


def counting_step(vocab: int, end: int, stop_after: int):
    """A model whose next token is the previous one plus one, and ``end`` after ``stop_after``."""
    seen: list[tuple[torch.Tensor, object]] = []

    def step(x: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        seen.append((x.clone(), state))
        t = 0 if state is None else state
        nxt = torch.full_like(x, end) if t == stop_after else (x + 1) % vocab
        return torch.nn.functional.one_hot(nxt, vocab).float() * 50, t + 1

    return step, seen


def test_sampling_starts_from_zero_state_and_the_start_token_feeds_back_and_stops_at_eos() -> None:
    step, seen = counting_step(vocab=10, end=0, stop_after=3)
    assert sample(step, count=2, start=5, end=0, max_length=20) == [[6, 7, 8], [6, 7, 8]]
    assert seen[0][1] is None and seen[0][0].tolist() == [5, 5], "a<0> = 0 (no state) and x<1> = start"
    assert [x.tolist()[0] for x, _ in seen] == [5, 6, 7, 8], "each y<t> is fed back as x<t+1>"
    step, _ = counting_step(vocab=10, end=0, stop_after=100)
    assert sample(step, count=1, start=1, end=0, max_length=4) == [[2, 3, 4, 5]], "or stops at max_length"


def test_sampling_with_unk_rejection_never_gives_unk() -> None:
    p = torch.tensor([0.05, 0.9, 0.05])  # <EOS>, <UNK>, a word

    def step(x: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        return p.log().expand(len(x), 3), state

    g = torch.Generator().manual_seed(0)
    drawn = sample(step, count=200, start=0, end=0, max_length=30, reject=1, generator=g)
    assert all(1 not in row for row in drawn)
    assert all(set(row) <= {2} for row in drawn)
    with_unk = sample(step, count=20, start=0, end=0, max_length=30, generator=g)
    assert any(1 in row for row in with_unk)


def test_a_tiny_language_model_learns_logs_samples_and_samples_from_its_record(
    outputs: Path, capsys: pytest.CaptureFixture, compose, records: MlflowClient
) -> None:
    cfg = compose(
        "task=lm",
        "task.seq_len=24",
        "task.corpus_sentences=400",
        *ONE_BATCH,
        "optimizer.lr=0.02",
        "trainer.max_steps=120",
        "data.batches_per_epoch=60",
        "trainer.enable_progress_bar=false",
        "callbacks.gradient_flow=null",
        "sampling.count=3",
        "sampling.max_length=40",
    )
    result = train(cfg, outputs / "run")
    metrics = result.metrics
    assert metrics["train/loss"] < 0.5 * math.log(build_task(cfg).spec.output_size), "far below uniform"
    assert metrics["val/bits_per_char_baseline"] > 3.5
    assert metrics["val/solved"] == float(
        metrics["val/bits_per_char"] < 0.6 * metrics["val/bits_per_char_baseline"]
    )
    logged = [a.path for a in records.list_artifacts(result.run_id, "samples")]
    assert logged == ["samples/step_0000060.txt", "samples/step_0000120.txt"]
    text = Path(records.download_artifacts(result.run_id, logged[-1])).read_text()
    assert text.startswith("1. ") and len(text.splitlines()) >= 3

    capsys.readouterr()
    sample_command.main([result.run_id, "--outputs", str(outputs), "--count", "4", "--seed", "1"])
    by_run = capsys.readouterr().out.splitlines()
    [checkpoint] = (outputs / "run" / "checkpoints").glob("epoch=*.ckpt")
    sample_command.main([str(checkpoint), "--count", "4", "--seed", "1"])
    assert capsys.readouterr().out.splitlines() == by_run and len(by_run) >= 4
    with pytest.raises(SystemExit, match="sampling.temperature must be > 0"):
        sample_command.main([str(checkpoint), "--temperature", "0"])
