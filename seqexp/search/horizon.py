"""A cell's memory horizon: the longest dependency length T it solves in at least k of n seeds,
found by doubling, then bisection, over a "solver" (T -> whether each seed's run solved).

The search knows nothing of training: :mod:`seqexp.commands.horizon` gives it a solver that trains
(or reuses recorded runs); tests give it one whose answer is a known function of T.

Bisection assumes success is monotone in T (solved at T, solved at every shorter length). Training
is noisy, so the result is stated as what was measured: the longest length that passed, and the
bracket ``[longest passed, shortest failed above it]`` the horizon was narrowed to.

Probes: with a solver that passes up to H and fails above, a search from ``start <= H`` makes
``floor(log2(H / start)) + 2`` doubling probes (the last one fails), then at most
``ceil(log2(1 / resolution))`` bisection probes (each halves the bracket; it stops once the
bracket is at most ``resolution`` of its lower end, or one step). From ``start > H`` it halves
instead: ``ceil(log2(start / H)) + 1`` probes down to the first that passes (the first fails),
then bisection on a bracket that halving leaves up to one step wider than its lower end: at most
``ceil(log2(1 / resolution)) + 1`` probes. :func:`probe_bound` is that number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Solver = Callable[[int], Sequence[bool]]
"""T -> for each seed run at length T, whether it solved the task within the step budget. A solver
may return fewer than n results once the verdict is known (k successes, or too many failures)."""


@dataclass(frozen=True)
class Probe:
    """One length tried: each seed's outcome, the verdict, and whether it was run now (``False``:
    taken from the results recorded before)."""

    length: int
    solved: tuple[bool, ...]
    passed: bool
    new: bool


@dataclass(frozen=True)
class Horizon:
    """The outcome of a search."""

    horizon: int | None
    """The longest length that passed; ``None`` if even ``min_length`` failed."""
    failed_above: int | None
    """The shortest length above :attr:`horizon` that failed; ``None`` if ``max_length`` passed."""
    probes: tuple[Probe, ...]
    """Every length tried, in order."""

    @property
    def bracket(self) -> tuple[int | None, int | None]:
        """``(longest passed, shortest failed)``: the true horizon is at least the first and below
        the second (if success is monotone in T)."""
        return self.horizon, self.failed_above

    @property
    def new_probes(self) -> int:
        return sum(probe.new for probe in self.probes)


def passes(solved: Sequence[bool], k: int) -> bool:
    """At least ``k`` seeds solved."""
    return sum(solved) >= k


def decided(solved: Sequence[bool], k: int, n: int) -> bool:
    """Whether the verdict on a length is known from the seeds run so far: ``k`` solved, or more than
    ``n - k`` failed (the rest cannot make up ``k``)."""
    return sum(solved) >= k or len(solved) - sum(solved) > n - k


def check_search(k: int, n: int, resolution: float, start: int, min_length: int, max_length: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(
            f"k must be between 1 and n (got k={k}, n={n}): a length passes when k of n seeds solve it"
        )
    if not 0 < resolution < 1:
        raise ValueError(f"resolution must be in (0, 1), a share of the horizon (got {resolution})")
    if not 1 <= min_length <= start <= max_length:
        raise ValueError(
            f"the lengths must satisfy 1 <= min_length <= start <= max_length "
            f"(got min_length={min_length}, start={start}, max_length={max_length})"
        )


def find_horizon(
    solver: Solver,
    *,
    start: int,
    k: int = 2,
    n: int = 3,
    resolution: float = 0.1,
    min_length: int = 1,
    max_length: int = 4096,
    recorded: Mapping[int, Sequence[bool]] | None = None,
) -> Horizon:
    """The longest length in ``[min_length, max_length]`` that ``solver`` solves in ``k`` of ``n`` seeds:
    doubling (or halving) from ``start`` until the verdict changes, then bisection until the bracket is
    at most ``resolution`` of its lower end (or one step). ``recorded`` holds outcomes already known
    (T -> each seed's outcome): a length whose verdict they decide is not run again."""
    check_search(k, n, resolution, start, min_length, max_length)
    known = dict(recorded or {})
    probes: list[Probe] = []

    def probe(length: int) -> bool:
        before = tuple(known.get(length, ()))
        new = not decided(before, k, n)
        solved = tuple(solver(length)) if new else before
        if not decided(solved, k, n):
            raise ValueError(
                f"the solver gave {len(solved)} results at T={length}: too few to tell {k} of {n}"
            )
        known[length] = solved
        probes.append(Probe(length, solved, passes(solved, k), new))
        return probes[-1].passed

    lo: int | None
    hi: int | None
    if probe(start):
        lo, hi = start, None
        while hi is None and lo < max_length:
            length = min(2 * lo, max_length)
            if probe(length):
                lo = length
            else:
                hi = length
    else:
        lo, hi = None, start
        while lo is None and hi > min_length:
            length = max(hi // 2, min_length)
            if probe(length):
                lo = length
            else:
                hi = length
    if lo is None or hi is None:
        return Horizon(lo, hi, tuple(probes))
    while hi - lo > max(1.0, resolution * lo):
        middle = (lo + hi) // 2
        if probe(middle):
            lo = middle
        else:
            hi = middle
    return Horizon(lo, hi, tuple(probes))


def probe_bound(start: int, horizon: int, resolution: float) -> int:
    """The most probes :func:`find_horizon` makes from ``start`` for a solver that passes exactly up
    to ``horizon`` (within ``[min_length, max_length]``)."""
    bisection = math.ceil(math.log2(1 / resolution))
    if horizon >= start:
        return math.floor(math.log2(horizon / start)) + 2 + bisection
    return math.ceil(math.log2(start / horizon)) + 1 + bisection + 1
