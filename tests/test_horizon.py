"""The memory-horizon search, on synthetic solvers whose success is a known function of T: no training."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from seqexp.search.horizon import decided, find_horizon, probe_bound


class Synthetic:
    """Seed ``s`` solves every length up to ``horizons[s]``; remembers each length it was asked."""

    def __init__(self, *horizons: int) -> None:
        self.horizons = horizons
        self.asked: list[int] = []

    def __call__(self, length: int) -> list[bool]:
        self.asked.append(length)
        return [length <= h for h in self.horizons]


def test_doubling_then_bisection_finds_the_horizon_with_the_promised_probes() -> None:
    solver = Synthetic(57, 57, 57)
    found = find_horizon(solver, start=10, k=2, n=3, resolution=0.1)
    # doubling 10 20 40 80 (fails); bisection of [40, 80]: 60 (fails), 50, 55; [55, 60] is within 10%
    assert solver.asked == [10, 20, 40, 80, 60, 50, 55]
    assert found.horizon == 55 and found.bracket == (55, 60)
    assert [p.passed for p in found.probes] == [True, True, True, False, False, True, True]
    assert len(found.probes) <= probe_bound(10, 57, 0.1) == 8


def test_halving_when_the_start_fails() -> None:
    solver = Synthetic(23, 23, 23)
    found = find_horizon(solver, start=100, k=2, n=3, resolution=0.1)
    assert solver.asked[:3] == [100, 50, 25] and solver.asked[3] == 12
    assert found.horizon is not None and found.horizon <= 23 < found.failed_above  # type: ignore[operator]
    assert found.failed_above - found.horizon <= max(1, 0.1 * found.horizon)  # type: ignore[operator]
    assert len(found.probes) <= probe_bound(100, 23, 0.1)


@pytest.mark.parametrize("resolution", [0.05, 0.1, 0.25, 0.5])
def test_every_horizon_is_bracketed_within_the_resolution_and_the_probe_bound(resolution: float) -> None:
    for start in (1, 3, 10, 37, 100):
        for horizon in (1, 2, 5, 9, 10, 11, 57, 99, 100, 101, 640, 1000):
            found = find_horizon(Synthetic(horizon), start=start, k=1, n=1, resolution=resolution)
            assert found.horizon is not None and found.failed_above is not None
            assert found.horizon <= horizon < found.failed_above
            assert found.failed_above - found.horizon <= max(1, resolution * found.horizon)
            assert len(found.probes) <= probe_bound(start, horizon, resolution), (start, horizon)


def test_k_of_n_seeds_decides_a_length() -> None:
    """Seeds that bridge 30, 80 and 200: two of three solve up to 80, one up to 200, all three up to 30."""
    seeds = (30, 80, 200)
    assert find_horizon(Synthetic(*seeds), start=10, k=2, n=3, resolution=0.01).horizon == 80
    assert find_horizon(Synthetic(*seeds), start=10, k=1, n=3, resolution=0.01).horizon == 200
    assert find_horizon(Synthetic(*seeds), start=10, k=3, n=3, resolution=0.01).horizon == 30


def test_the_lengths_stay_within_their_bounds() -> None:
    always = find_horizon(Synthetic(10**9), start=100, max_length=1000, k=1, n=1)
    assert always.bracket == (1000, None) and [p.length for p in always.probes] == [100, 200, 400, 800, 1000]
    never = find_horizon(Synthetic(0), start=16, min_length=2, k=1, n=1)
    assert never.bracket == (None, 2) and [p.length for p in never.probes] == [16, 8, 4, 2]


def test_recorded_probes_are_reused_and_nothing_is_trained_again() -> None:
    first = find_horizon(Synthetic(57, 57, 57), start=10)
    assert first.new_probes == len(first.probes)
    again = Synthetic(57, 57, 57)
    second = find_horizon(again, start=10, recorded={p.length: p.solved for p in first.probes})
    assert again.asked == [] and second.new_probes == 0
    assert second.bracket == first.bracket and second.probes == tuple(
        type(p)(p.length, p.solved, p.passed, False) for p in first.probes
    )


def test_a_recorded_length_without_a_verdict_is_run_again() -> None:
    """One seed recorded, solved: 2 of 3 needs another; one failed of three with k=3 is decided."""
    solver = Synthetic(57, 57, 57)
    found = find_horizon(solver, start=10, recorded={10: [True], 20: [False]}, k=3, n=3)
    assert solver.asked[0] == 10 and 20 not in solver.asked
    assert found.bracket == (19, 20), "the recorded failure at 20 stands"


def test_a_solver_may_stop_once_the_verdict_is_known() -> None:
    def lazy(length: int) -> Sequence[bool]:
        outcomes: list[bool] = []
        while not decided(outcomes, 2, 3):
            outcomes.append(length <= 40)
        return outcomes

    found = find_horizon(lazy, start=10, k=2, n=3)
    assert all(len(p.solved) == 2 for p in found.probes) and found.horizon == 40
    with pytest.raises(ValueError, match="too few to tell 2 of 3"):
        find_horizon(lambda length: [True], start=10, k=2, n=3)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"k": 4, "n": 3}, "k must be between 1 and n"),
        ({"resolution": 0.0}, "resolution must be in"),
        ({"start": 5, "min_length": 8}, "min_length <= start <= max_length"),
    ],
)
def test_bad_search_options_are_named(options: dict[str, float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        find_horizon(Synthetic(5), **{"start": 10} | options)  # type: ignore[arg-type]
