"""The arithmetic of a comparison over seeds: the mean with its t-interval, a solve rate with its
Wilson interval, and verdicts that need the two intervals apart.

An interval stays within the range its metric's values can take. A metric that cannot be negative
(an MSE, a cross-entropy, a loss, a perplexity) gets the t-interval of the mean of its logarithms,
back-transformed: an interval of the geometric mean, positive, and as skewed as such metrics are
over seeds (one seed at 1e-4, another at 0.1). A metric in [0, 1] (an accuracy) keeps the t-interval
of its mean, clipped to [0, 1]: the mean lies in that range, so the clipping loses no coverage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

CONFIDENCE = 0.95
NON_NEGATIVE = ("mse", "xent", "loss", "perplexity", "bits_per_char", "nll")
"""Metrics whose name contains one of these cannot be negative."""
FRACTIONS = ("accuracy", "exact_match")
"""Metrics whose name contains one of these lie in [0, 1]."""


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
    geometric_mean: float | None = None
    """Set where ``interval`` is an interval of the geometric mean (:func:`estimate_positive`)."""

    @property
    def centre(self) -> float:
        """What ``interval`` is an interval of: the geometric mean where set, else the mean."""
        return self.mean if self.geometric_mean is None else self.geometric_mean


@dataclass(frozen=True)
class RateEstimate:
    """``successes`` of ``n`` with the Wilson score interval of the rate (``None`` when n = 0)."""

    successes: int
    n: int
    interval: Interval | None

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else math.nan


def estimate_mean(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    within: tuple[float, float] = (-math.inf, math.inf),
) -> MeanEstimate:
    """``mean ± t_{(1+confidence)/2, n-1} · s / √n`` with the sample std ``s``, clipped to
    ``within``, the range the values can take (and so their mean)."""
    n = len(values)
    if n == 0:
        return MeanEstimate(0, math.nan, None, None)
    mean = math.fsum(values) / n
    if n == 1:
        return MeanEstimate(1, mean, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    low, high = within
    return MeanEstimate(n, mean, std, Interval(max(low, mean - half), min(high, mean + half)))


def estimate_positive(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanEstimate:
    """For values that cannot be negative: the mean and std as :func:`estimate_mean`'s, and the
    t-interval of the mean of ``log(values)`` back-transformed, ``exp(m ± t · s_log / √n)``: an
    interval of the geometric mean ``exp(m)``, always above zero. Where a value is 0 (no logarithm)
    the mean's t-interval clipped at 0 instead (``geometric_mean`` then ``None``)."""
    plain = estimate_mean(values, confidence, within=(0.0, math.inf))
    if plain.n == 0 or min(values) <= 0:
        return plain
    logs = estimate_mean([math.log(v) for v in values], confidence)
    interval = logs.interval and Interval(math.exp(logs.interval.low), math.exp(logs.interval.high))
    return MeanEstimate(plain.n, plain.mean, plain.std, interval, math.exp(logs.mean))


def metric_range(metric: str) -> Literal["non-negative", "fraction"] | None:
    """What values ``metric`` can take, by its name (``val/mse``, ``test/accuracy``); ``None``: any."""
    name = metric.rpartition("/")[2]
    if any(word in name for word in NON_NEGATIVE):
        return "non-negative"
    return "fraction" if any(word in name for word in FRACTIONS) else None


EXPLAINED = (
    "for a metric that cannot be negative (mse, xent, loss, perplexity) the t-interval of the mean of "
    "the logarithms, back-transformed, an interval of the geometric mean that stays above 0; for an "
    "accuracy the t-interval of the mean clipped to [0, 1]; else the t-interval of the mean"
)
"""Which interval :func:`estimate_metric` gives, by the metric's range: for a report's footnote."""


def interval_explained(metric: str) -> str:
    """Which 95% interval :func:`estimate_metric` gives ``metric``, for a footnote that names it."""
    kind = metric_range(metric)
    if kind == "non-negative":
        return (
            f"{metric} cannot be negative: the t-interval of the mean of its logarithms, back-transformed, "
            "an interval of the geometric mean that stays above 0"
        )
    if kind == "fraction":
        return f"{metric} lies in [0, 1]: the t-interval of the mean, clipped to [0, 1]"
    return f"{metric}: the t-interval of the mean"


def estimate_metric(metric: str, values: Sequence[float], confidence: float = CONFIDENCE) -> MeanEstimate:
    """``values`` of ``metric`` estimated within their range: a geometric-mean interval for a
    non-negative metric, a t-interval clipped to [0, 1] for a fraction, else a t-interval."""
    kind = metric_range(metric)
    if kind == "non-negative":
        return estimate_positive(values, confidence)
    return estimate_mean(values, confidence, (0.0, 1.0) if kind == "fraction" else (-math.inf, math.inf))


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


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """A distribution-free interval of the median: the order statistics ``x_(j)`` and ``x_(n+1-j)``
    for the largest ``j`` with ``P(Bin(n, 1/2) < j) <= (1 - confidence) / 2``, so that it covers the
    median with at least ``confidence``; ``None`` where ``n`` is too small for any (n < 6 at 95%)."""
    ordered = sorted(values)
    # the smallest k with P(Bin <= k) >= tail: then P(Bin < k) = P(Bin <= k - 1) < tail
    j = int(stats.binom.ppf((1 - confidence) / 2, len(ordered), 0.5))
    if j < 1:
        return None
    return Interval(ordered[j - 1], ordered[len(ordered) - j])


def sizes(a: int, b: int) -> str:
    return f"n = {a}" if a == b else f"n = {a} and {b}"


def mean_verdict(a: str, a_mean: MeanEstimate, b: str, b_mean: MeanEstimate, higher_is_better: bool) -> str:
    """``"A beats B"`` where the two intervals do not overlap, else ``"no difference at n = …"``."""
    if a_mean.interval is None or b_mean.interval is None or a_mean.interval.overlaps(b_mean.interval):
        return f"no difference at {sizes(a_mean.n, b_mean.n)}"
    a_higher = a_mean.interval.low > b_mean.interval.high
    winner, loser = (a, b) if a_higher == higher_is_better else (b, a)
    return f"{winner} beats {loser}"


def paired_verdict(a: str, b: str, difference: MeanEstimate, higher_is_better: bool) -> str:
    """From the per-seed differences ``A − B``: ``"A beats B (n = …, A − B = d [low, high])"`` where
    their t-interval is clear of 0, else ``"no difference at n = … (…)"``."""
    interval = difference.interval
    said = f"n = {difference.n}, {a} − {b} = {difference.mean:+.3g}"
    if interval is not None:
        said += f" [{interval.low:+.3g}, {interval.high:+.3g}]"
    if interval is None or interval.low <= 0 <= interval.high:
        return f"no difference at {said}"
    winner, loser = (a, b) if (interval.low > 0) == higher_is_better else (b, a)
    return f"{winner} beats {loser} ({said})"


def rate_verdict(a: str, a_rate: RateEstimate, b: str, b_rate: RateEstimate) -> str:
    """``"A solves more often than B"`` where the Wilson intervals do not overlap."""
    if a_rate.interval is None or b_rate.interval is None or a_rate.interval.overlaps(b_rate.interval):
        return f"no difference at {sizes(a_rate.n, b_rate.n)}"
    winner, loser = (a, b) if a_rate.rate > b_rate.rate else (b, a)
    return f"{winner} solves more often than {loser}"
