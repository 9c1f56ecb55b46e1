"""The arithmetic of a comparison over seeds: the mean with its t-interval, a solve rate with its
Wilson interval, and verdicts that need the two intervals apart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True)
class MeanEstimate:
    """The mean of ``n`` values; its sample std (``ddof = 1``) and its two-sided t-interval only
    where there are two values or more (``None`` otherwise: one value says nothing of spread)."""

    n: int
    mean: float
    std: float | None
    interval: Interval | None


@dataclass(frozen=True)
class RateEstimate:
    """``successes`` of ``n`` with the Wilson score interval of the rate (``None`` when n = 0)."""

    successes: int
    n: int
    interval: Interval | None

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else math.nan


def estimate_mean(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanEstimate:
    """``mean ± t_{(1+confidence)/2, n-1} · s / √n`` with the sample std ``s``."""
    n = len(values)
    if n == 0:
        return MeanEstimate(0, math.nan, None, None)
    mean = math.fsum(values) / n
    if n == 1:
        return MeanEstimate(1, mean, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return MeanEstimate(n, mean, std, Interval(mean - half, mean + half))


def estimate_rate(successes: int, n: int, confidence: float = CONFIDENCE) -> RateEstimate:
    """The Wilson score interval: ``(p + z²/2n ± z √(p(1-p)/n + z²/4n²)) / (1 + z²/n)``."""
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n] (got {successes} of {n})")
    if n == 0:
        return RateEstimate(0, 0, None)
    z = float(stats.norm.ppf((1 + confidence) / 2))
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return RateEstimate(successes, n, Interval(max(0.0, centre - half), min(1.0, centre + half)))


def sizes(a: int, b: int) -> str:
    return f"n = {a}" if a == b else f"n = {a} and {b}"


def mean_verdict(a: str, a_mean: MeanEstimate, b: str, b_mean: MeanEstimate, higher_is_better: bool) -> str:
    """``"A beats B"`` where the two intervals do not overlap, else ``"no difference at n = …"``."""
    if a_mean.interval is None or b_mean.interval is None or a_mean.interval.overlaps(b_mean.interval):
        return f"no difference at {sizes(a_mean.n, b_mean.n)}"
    a_higher = a_mean.mean > b_mean.mean
    winner, loser = (a, b) if a_higher == higher_is_better else (b, a)
    return f"{winner} beats {loser}"


def rate_verdict(a: str, a_rate: RateEstimate, b: str, b_rate: RateEstimate) -> str:
    """``"A solves more often than B"`` where the Wilson intervals do not overlap."""
    if a_rate.interval is None or b_rate.interval is None or a_rate.interval.overlaps(b_rate.interval):
        return f"no difference at {sizes(a_rate.n, b_rate.n)}"
    winner, loser = (a, b) if a_rate.rate > b_rate.rate else (b, a)
    return f"{winner} solves more often than {loser}"
