"""The embedded Reber grammar (Cleeremans et al. 1989; Hochreiter & Schmidhuber 1997, exp. 1)."""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

SYMBOLS = "BTPSXVE"
"""Token ids 0..6; :data:`PAD` (7) fills sequences past their end."""
PAD = len(SYMBOLS)
IGNORE = -1
"""Target of a padded step: no loss, no metric."""
REBER = {
    0: (("T", 1), ("P", 2)),
    1: (("S", 1), ("X", 3)),
    2: (("T", 2), ("V", 4)),
    3: (("X", 2), ("S", 5)),
    4: (("P", 3), ("V", 5)),
    5: (("E", None),),
}
"""The Reber grammar after its leading B: node -> (symbol, next node), each edge equally likely."""
MIN_LENGTH = 9
"""The shortest embedded string: B T BTXSE T E."""
LENGTHS = ("classic", "exact")
"""How long strings are: the grammar's own lengths, up to ``seq_len + 1`` symbols; or exactly
``seq_len + 1`` symbols each (:class:`ReberTask`)."""
Path = list[tuple[str, int | None]]
"""A Reber string after its leading B, as the (symbol, next node) of each edge taken."""


@cache
def path_counts(length: int) -> tuple[dict[int | None, int], ...]:
    """For each ``remaining`` in ``0..length``, how many paths of exactly ``remaining`` symbols lead
    from each node out of the grammar (``None``: out already), by dynamic programming over
    (node, remaining length)."""
    rows: list[dict[int | None, int]] = [{None: 1} | {node: 0 for node in REBER}]
    for _ in range(length):
        rows.append({None: 0} | {node: sum(rows[-1][nxt] for _, nxt in REBER[node]) for node in REBER})
    return tuple(rows)


def reber_strings(node: int | None, length: int) -> int:
    """How many paths of exactly ``length`` symbols lead from ``node`` out of the grammar (the
    Reber strings after their leading B, from node 0)."""
    return path_counts(length)[length][node]


def classic_path(rng: random.Random) -> Path:
    """A Reber string by the grammar's own process: each edge out of a node equally likely."""
    path: Path = []
    node: int | None = 0
    while node is not None:
        path.append(rng.choice(REBER[node]))
        node = path[-1][1]
    return path


def uniform_path(rng: random.Random, length: int) -> Path:
    """A Reber string of exactly ``length`` symbols, each of them equally likely: every edge is
    drawn in proportion to the strings that can still end in the remaining length
    (:func:`reber_strings`), exactly, in integers. The grammar's own process gives every string of
    ``length`` symbols the same probability, ``2^-(length - 1)``, so this is that distribution
    conditioned on the length."""
    counts = path_counts(length)
    if counts[length][0] == 0:
        raise ValueError(f"no Reber string has {length} symbols")
    path: Path = []
    node: int | None = 0
    for remaining in range(length, 0, -1):
        assert node is not None
        pick = rng.randrange(counts[remaining][node])
        for symbol, nxt in REBER[node]:
            pick -= counts[remaining - 1][nxt]
            if pick < 0:
                path.append((symbol, nxt))
                node = nxt
                break
    return path


def embedded(outer: str, path: Path, exact: bool = False) -> tuple[str, list[tuple[int, ...]]]:
    """The embedded string ``B outer B <path> outer E`` and, for each of its symbols but the last,
    the :func:`mask` of what may come next. With ``exact``, a symbol the grammar allows but that
    could not end the string in its length is marked as such (2), not as one that can come (1)."""
    counts = path_counts(len(path)) if exact else None
    string, masks = ["B", outer, "B"], [mask("TP"), mask("B"), mask("TP")]
    for step, (symbol, node) in enumerate(path):
        string.append(symbol)
        if node is None:
            masks.append(mask(outer))
            continue
        legal = "".join(s for s, _ in REBER[node])
        left = len(path) - step - 1
        possible = legal if counts is None else "".join(s for s, nxt in REBER[node] if counts[left - 1][nxt])
        masks.append(mask(possible, legal))
    string += [outer, "E"]
    masks.append(mask("E"))
    return "".join(string), masks


def embedded_reber(rng: random.Random) -> tuple[str, list[tuple[int, ...]]]:
    """One embedded Reber string by the grammar's own process, with the masks of its legal next
    symbols: ``B {T|P} <Reber string> {same T|P} E``."""
    outer = rng.choice("TP")
    return embedded(outer, classic_path(rng))


def exact_embedded_reber(rng: random.Random, symbols: int) -> tuple[str, list[tuple[int, ...]]]:
    """One embedded Reber string of exactly ``symbols`` symbols, uniform over them (T or P
    outside, equally likely; the inner string uniform over those of ``symbols - 5``), with the masks
    of what may come next in that length."""
    outer = rng.choice("TP")
    return embedded(outer, uniform_path(rng, symbols - 5), exact=True)


@cache
def mask(possible: str, legal: str = "") -> tuple[int, ...]:
    """Over :data:`SYMBOLS`: 1 for a symbol that can come next, 2 for one the grammar allows (in
    ``legal``) but the string's length rules out, 0 for one the grammar forbids."""
    return tuple(1 if s in possible else 2 if s in legal else 0 for s in SYMBOLS)


class ReberTask(Task):
    """Next-symbol prediction on embedded Reber strings: each step reads a symbol and predicts
    the next (a distribution over the 7 symbols, many-to-many, cross-entropy on the symbol that
    came). The second symbol (T or P) must come back as the second-to-last, across the whole
    inner string: the long-range dependency.

    ``lengths: classic`` (the default): strings come from the grammar's own process (each edge
    out of a node equally likely), so they vary in length and are mostly short; those longer than
    ``seq_len + 1`` symbols are redrawn, and an input (every symbol but the last: at most
    ``seq_len`` steps) is padded on the right with ``PAD``. ``seq_len`` is then only an upper
    bound, and sets no distance. ``lengths: exact``: every string has exactly ``seq_len + 1``
    symbols, uniform over the embedded strings of that length (the classic distribution conditioned
    on the length: it gives every string of one length the same probability), drawn by counting
    paths through the grammar, never by rejection; the two symbols that must agree are then
    ``seq_len - 2`` steps apart, and ``seq_len`` is the task's dependency length.

    Targets are ``(n, seq_len, 8)``: column 0 the next symbol (``-1`` on padding), columns 1..7
    the :func:`mask` of the next symbols (1: can come; 0: the grammar forbids it; 2, in exact
    lengths only: the grammar allows it but the length rules it out). Padded steps count in
    neither loss nor metrics; a unidirectional stack's outputs at real steps never see the padding
    after them (a bidirectional one would, and would also see the answer: use ``topology=uni`` or
    ``deep``).

    ``string_accuracy`` is Hochreiter & Schmidhuber's criterion: a string is right when at every
    step the legal next symbols are the most probable ones (the ``k`` largest outputs are the ``k``
    legal symbols). In exact lengths, "legal" is what can still come: near its end a string of a
    fixed length rules out some of the grammar's continuations (it must end in time), and those may
    rank anywhere, so that a model need not count steps to be right. A model that learnt the
    grammar but not the long-range dependency has to guess the second-to-last symbol: right half
    the time, the baseline 0.5. Solved above 0.95. ``recall_accuracy`` is that one step alone
    (baseline 0.5); ``step_accuracy`` all real steps."""

    length_hint = "task.lengths=exact makes task.seq_len the distance"

    spec = TaskSpec(
        input_size=len(SYMBOLS) + 1,
        output_size=len(SYMBOLS),
        shape="many_to_many",
        metric="string_accuracy",
        baseline=0.5,
        solved_at=0.95,
        tokens=True,
        higher_is_better=True,
    )

    fresh = True

    def __init__(
        self,
        seq_len: int = 30,
        train_size: int | None = None,
        val_size: int = 1_000,
        test_size: int | None = None,
        lengths: str = "classic",
    ) -> None:
        if lengths not in LENGTHS:
            raise ValueError(f"task.lengths must be one of {list(LENGTHS)} (got {lengths!r})")
        at_least("task.seq_len", seq_len, MIN_LENGTH - 1, f"the shortest string has {MIN_LENGTH} symbols")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.lengths = lengths
        self.length_key = "task.seq_len" if lengths == "exact" else None
        """Only exact lengths make ``seq_len`` the distance to bridge."""

    def distinct_inputs(self) -> float:
        """Embedded strings of at most (``classic``) or exactly (``exact``) ``seq_len + 1`` symbols:
        two outer symbols, each around every inner Reber string four symbols shorter."""
        counts = path_counts(self.seq_len - 4)  # paths after the inner B: 5 symbols fewer
        if self.lengths == "exact":
            return float(2 * counts[-1][0])
        return float(2 * sum(row[0] for row in counts))

    def strings(self, n: int, seed: int) -> list[tuple[str, list[tuple[int, ...]]]]:
        """``n`` strings of at most (``classic``) or exactly (``exact``) ``seq_len + 1`` symbols, with
        their legal next symbols."""
        rng = random.Random(seed)
        if self.lengths == "exact":
            return [exact_embedded_reber(rng, self.seq_len + 1) for _ in range(n)]
        drawn: list[tuple[str, list[tuple[int, ...]]]] = []
        while len(drawn) < n:
            string, legal = embedded_reber(rng)
            if len(string) <= self.seq_len + 1:
                drawn.append((string, legal))
        return drawn

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        inputs = np.full((n, self.seq_len), PAD, dtype=np.int64)
        targets = np.zeros((n, self.seq_len, 1 + len(SYMBOLS)), dtype=np.int64)
        targets[..., 0] = IGNORE
        for i, (string, legal) in enumerate(self.strings(n, seed)):
            ids = [SYMBOLS.index(s) for s in string]
            steps = len(ids) - 1
            inputs[i, :steps] = ids[:-1]
            targets[i, :steps, 0] = ids[1:]
            targets[i, : len(legal), 1:] = legal
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction.flatten(0, 1), target[..., 0].flatten(), ignore_index=IGNORE)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        real = target[..., 0] != IGNORE
        possible, forbidden = target[..., 1:] == 1, target[..., 1:] == 0
        # The k legal symbols are the k most probable: every one that can come beats every one the
        # grammar forbids (one the length rules out, in exact lengths, may rank anywhere).
        lowest_legal = prediction.masked_fill(~possible, float("inf")).amin(-1)
        highest_illegal = prediction.masked_fill(~forbidden, float("-inf")).amax(-1)
        step_right = (lowest_legal > highest_illegal) | ~real
        lengths = real.sum(1)
        recall = step_right[torch.arange(len(target)), lengths - 2]
        return {
            "string_accuracy": step_right.all(1).float().mean(),
            "recall_accuracy": recall.float().mean(),
            "step_accuracy": step_right[real].float().mean(),
        }

    @staticmethod
    def decode(sequence: Tensor) -> str:
        """Token ids as symbols, padding dropped."""
        return "".join(SYMBOLS[i] for i in sequence.tolist() if i != PAD)
