"""Embedded Reber grammar: valid strings, the right legal next symbols, padding ignored."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import torch

from seqexp.tasks.reber import IGNORE, PAD, SYMBOLS, ReberTask

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
