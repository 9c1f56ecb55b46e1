"""Embedded Reber grammar: valid strings, the right legal next symbols, padding ignored."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

import pytest
import torch

from seqexp.tasks.reber import (
    IGNORE,
    PAD,
    REBER,
    SYMBOLS,
    ReberTask,
    classic_path,
    reber_strings,
    uniform_path,
)

NODE3 = "(?:XT*VP)*(?:S|XT*VV)"
EMBEDDED = re.compile(rf"B([TP])B(?:TS*X{NODE3}|PT*V(?:V|P{NODE3}))E\1E")
"""The embedded Reber language as a regular expression, written from the grammar's graph."""


def strings(inputs: torch.Tensor, targets: torch.Tensor) -> list[str]:
    """Each whole string: the inputs plus the last target."""
    out = []
    for x, y in zip(inputs, targets, strict=True):
        steps = int((y[:, 0] != IGNORE).sum())
        out.append(ReberTask.decode(x[:steps]) + SYMBOLS[y[steps - 1, 0]])
    return out


def legal(targets_row: torch.Tensor) -> str:
    return "".join(s for s, m in zip(SYMBOLS, targets_row[1:].tolist(), strict=True) if m)


def test_hand_checked_string_with_its_legal_next_symbols() -> None:
    inputs, targets = ReberTask(seq_len=12).generate(2, seed=0)
    assert strings(inputs, targets)[1] == "BTBPVPSETE"
    assert ReberTask.decode(inputs[1]) == "BTBPVPSET" and inputs[1, 9:].tolist() == [PAD] * 3
    y = targets[1]
    assert "".join(SYMBOLS[i] for i in y[:9, 0].tolist()) == "TBPVPSETE"
    assert y[9:, 0].tolist() == [IGNORE] * 3
    #          after B     T    B     P     V     P     S    E    T
    expected = ["TP", "B", "TP", "TV", "PV", "SX", "E", "T", "E"]
    assert [legal(y[t]) for t in range(9)] == ["".join(sorted(e, key=SYMBOLS.index)) for e in expected]
    assert legal(y[7]) == "T", "after the inner E only the second symbol may come: the long-range step"


@pytest.mark.parametrize("seq_len", [8, 12, 30, 60])
def test_random_strings_are_in_the_language_and_fit(seq_len: int) -> None:
    inputs, targets = ReberTask(seq_len=seq_len).generate(1000, seed=seq_len)
    assert inputs.shape == (1000, seq_len) and targets.shape == (1000, seq_len, 8)
    for string in strings(inputs, targets):
        assert EMBEDDED.fullmatch(string), string
        assert string[1] == string[-2] and len(string) <= seq_len + 1
    real = targets[..., 0] != IGNORE
    assert torch.equal(real, inputs != PAD), "targets are ignored exactly where inputs are padding"
    assert torch.all(targets[..., 1:][~real] == 0)
    assert torch.equal(inputs[:, 1:][real[:, 1:]], targets[:, :-1, 0][real[:, 1:]]), "target = next input"
    lengths = real.sum(1)
    if seq_len >= 30:
        assert lengths.max() > 20 and lengths.min() == 8, "lengths vary"


def test_legal_sets_are_exactly_the_continuations_that_occur() -> None:
    """Over many strings, the symbols seen after a prefix are the ones marked legal after it."""
    inputs, targets = ReberTask(seq_len=40).generate(5000, seed=1)
    seen: dict[str, set[str]] = defaultdict(set)
    count: dict[str, int] = defaultdict(int)
    marked: dict[str, str] = {}
    for string, y in zip(strings(inputs, targets), targets, strict=True):
        for t in range(len(string) - 1):
            prefix = string[: t + 1]
            seen[prefix].add(string[t + 1])
            count[prefix] += 1
            assert marked.setdefault(prefix, legal(y[t])) == legal(y[t])
    for prefix, symbols in seen.items():
        assert symbols <= set(marked[prefix])
        if count[prefix] >= 30:
            assert symbols == set(marked[prefix]), prefix


def oracle(targets: torch.Tensor, knows_the_outer_symbol: bool = True) -> torch.Tensor:
    """Logits that split the probability over the legal next symbols; without the long-range
    memory, the step after the inner E gives T and P the same odds (plus a nudge towards T)."""
    logits = torch.where(targets[..., 1:].bool(), 0.0, -20.0)
    if not knows_the_outer_symbol:
        steps = (targets[..., 0] != IGNORE).sum(1)
        rows = torch.arange(len(targets))
        logits[rows, steps - 2] = -20.0
        logits[rows, steps - 2, SYMBOLS.index("T")] = 0.01
        logits[rows, steps - 2, SYMBOLS.index("P")] = 0.0
    return logits


def test_the_criterion_the_grammar_alone_scores_the_baseline_and_padding_is_ignored() -> None:
    task = ReberTask(seq_len=30)
    inputs, targets = task.generate(4000, seed=2)
    perfect = task.metrics(oracle(targets), targets)
    assert perfect["string_accuracy"] == perfect["recall_accuracy"] == perfect["step_accuracy"] == 1.0
    forgetful = task.metrics(oracle(targets, knows_the_outer_symbol=False), targets)
    outer_is_t = (inputs[:, 1] == SYMBOLS.index("T")).float().mean().item()
    assert forgetful["string_accuracy"].item() == pytest.approx(outer_is_t) == pytest.approx(0.5, abs=0.03)
    assert forgetful["recall_accuracy"].item() == pytest.approx(outer_is_t)
    assert task.spec.baseline == 0.5 and task.spec.higher_is_better and task.spec.shape == "many_to_many"

    noisy = oracle(targets)
    padded = targets[..., 0] == IGNORE
    noisy[padded] = torch.randn(int(padded.sum()), 7) * 100
    assert task.metrics(noisy, targets) == perfect
    assert task.loss(noisy, targets) == task.loss(oracle(targets), targets)
    one_wrong_step = oracle(targets)
    one_wrong_step[0, 0] = torch.tensor([5.0, 0, 0, 0, 0, 0, 0])  # B is illegal after B
    assert task.metrics(one_wrong_step, targets)["string_accuracy"].item() == pytest.approx(1 - 1 / 4000)


def test_loss_is_the_cross_entropy_over_real_steps_only() -> None:
    task = ReberTask(seq_len=20)
    _, targets = task.generate(50, seed=3)
    logits = torch.randn(50, 20, 7)
    real = targets[..., 0] != IGNORE
    expected = torch.nn.functional.cross_entropy(logits[real], targets[..., 0][real])
    torch.testing.assert_close(task.loss(logits, targets), expected)
    grammar = oracle(targets)  # probability 1/k on each of k legal symbols: ln 2 at each branch
    branches = (targets[..., 1:].sum(-1) == 2) & real
    assert task.loss(grammar, targets).item() == pytest.approx(
        branches.sum().item() * torch.log(torch.tensor(2.0)).item() / real.sum().item(), rel=1e-4
    )


@pytest.mark.parametrize("seq_len", [7, 0])
def test_too_short_a_length_is_refused(seq_len: int) -> None:
    with pytest.raises(ValueError, match=rf"task.seq_len must be >= 8.*\(got {seq_len}\)"):
        ReberTask(seq_len=seq_len)


def paths(node: int | None, length: int) -> list[str]:
    """Every Reber string of exactly ``length`` symbols from ``node``, by walking the grammar."""
    if node is None or length == 0:
        return [""] if node is None and length == 0 else []
    return [symbol + rest for symbol, nxt in REBER[node] for rest in paths(nxt, length - 1)]


def test_counting_paths_agrees_with_walking_the_grammar() -> None:
    for length in range(15):
        assert reber_strings(0, length) == len(paths(0, length)), length
    assert reber_strings(0, 3) == 0 and reber_strings(0, 4) == 2, "TXSE and PVVE are the shortest"


def test_exact_sampling_is_uniform_over_the_strings_of_its_length() -> None:
    """16 Reber strings have 9 symbols; 16,000 draws put 1,000 on each, within 5 standard deviations."""
    every = paths(0, 9)
    rng = random.Random(0)
    drawn = Counter("".join(s for s, _ in uniform_path(rng, 9)) for _ in range(16_000))
    assert set(drawn) == set(every) and len(every) == 16
    sd = (16_000 * (1 / 16) * (15 / 16)) ** 0.5
    assert all(abs(count - 1_000) < 5 * sd for count in drawn.values()), drawn


def test_exact_sampling_is_the_classic_distribution_given_the_length() -> None:
    """Classic strings of one length, drawn by rejection, are spread over the same strings alike."""
    rng = random.Random(1)
    classic = Counter()
    while sum(classic.values()) < 4_000:
        path = "".join(s for s, _ in classic_path(rng))
        if len(path) == 7:
            classic[path] += 1
    assert set(classic) == set(paths(0, 7)) and len(classic) == 7
    assert max(classic.values()) / min(classic.values()) < 1.3


@pytest.mark.parametrize("seq_len", [8, 20, 50])
def test_exact_lengths_set_the_distance_between_the_symbols_that_agree(seq_len: int) -> None:
    task = ReberTask(seq_len=seq_len, lengths="exact")
    inputs, targets = task.generate(300, seed=seq_len)
    assert not (inputs == PAD).any() and not (targets[..., 0] == IGNORE).any(), "no padding"
    for string in strings(inputs, targets):
        assert EMBEDDED.fullmatch(string) and len(string) == seq_len + 1
        assert string[1] == string[seq_len - 1], "the outer symbol comes back seq_len - 2 steps later"
    assert task.length_key == "task.seq_len"
    assert task.distinct_inputs() == 2 * reber_strings(0, seq_len - 4)


def test_exact_lengths_draw_long_strings_without_rejection() -> None:
    """A string of 2,001 symbols: one in about 10^190 classic strings, drawn directly."""
    inputs, targets = ReberTask(seq_len=2_000, lengths="exact").generate(3, seed=0)
    [string, *_] = strings(inputs, targets)
    assert len(string) == 2_001 and EMBEDDED.fullmatch(string)


def test_classic_lengths_are_the_default_and_set_no_dependency_length() -> None:
    task = ReberTask(seq_len=30)
    assert task.lengths == "classic" and task.length_key is None
    with pytest.raises(ValueError, match="task.lengths must be one of"):
        ReberTask(lengths="longest")


def test_exact_lengths_mark_what_the_length_rules_out_and_need_no_counting() -> None:
    """A string of 13 symbols that reaches node 2 with 5 to go cannot take V (from node 4 no string
    ends in 4), so V is marked 2; a model that ranks every symbol the grammar allows alike (it does
    not count steps) is right, as is one that knows the length, and one without the long-range
    memory is at the baseline."""
    task = ReberTask(seq_len=12, lengths="exact")
    inputs, targets = task.generate(4000, seed=0)
    assert ReberTask.decode(inputs[0]) == "BPBPTTTVPSEP"
    assert targets[0, 5, 1:].tolist() == [0, 1, 0, 0, 0, 2, 0], "after BPBPTT: T can come, V cannot"
    assert set(targets[..., 1:].unique().tolist()) == {0, 1, 2}
    knows_the_length = torch.where(targets[..., 1:] == 1, 0.0, -20.0)
    grammar_only = torch.where(targets[..., 1:] >= 1, 0.0, -20.0)
    for logits in (knows_the_length, grammar_only):
        assert task.metrics(logits, targets)["string_accuracy"] == 1.0
    forgetful = task.metrics(oracle(targets.clamp(max=1), knows_the_outer_symbol=False), targets)
    assert forgetful["string_accuracy"].item() == pytest.approx(0.5, abs=0.03)
