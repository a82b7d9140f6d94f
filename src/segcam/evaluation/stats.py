"""Summaries with their uncertainty: a bootstrap interval of a mean, a paired comparison.

* :func:`bootstrap_mean` — the percentile bootstrap (Efron, 1979): resample the ``n`` values
  with replacement ``R`` times, take each resample's mean, and report the ``(1 - level)/2`` and
  ``(1 + level)/2`` quantiles of those means around the plain mean.
* :func:`paired_comparison` — two scores per item (two methods on the same images, say): the mean
  difference ``d̄ = mean(a - b)`` with its bootstrap interval, wins/losses/ties, and a two-sided
  sign-flip permutation test of ``d̄``.  Under the null hypothesis that the two are exchangeable,
  every difference's sign is a coin flip, so ::

      p = P(|sum(s · d)| ≥ |sum(d)|)      over sign patterns s ∈ {-1, +1}^n

  enumerated exactly for ``n ≤ 16`` (all ``2^n`` patterns, the observed one included), else
  estimated from ``R`` random patterns as ``p = (1 + #{≥}) / (1 + R)``.

NaN values (a metric undefined on some image) are dropped, pairs with a NaN on either side too;
``n`` counts what is left.  With nothing left every number is NaN — the only NaN these return.
Everything runs in torch (float64), seeded by ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_float, check_int, shown
from ..errors import SegcamError

__all__ = ["Interval", "PairedComparison", "bootstrap_mean", "paired_comparison"]

EXACT_UP_TO = 16  # 2^16 sign patterns enumerated; more are sampled
CHUNK = 2**22  # numbers per resampling chunk (32 MB of float64)


@dataclass(frozen=True)
class Interval:
    """A mean and its ``level`` confidence interval ``[low, high]`` from ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """``a`` against ``b`` over ``n`` pairs: the mean of ``a - b``, its interval, the
    permutation p-value, and how often ``a > b`` (wins), ``a < b`` (losses), ``a == b`` (ties)."""

    n: int
    mean_diff: float
    interval: Interval
    p_value: float
    wins: int
    losses: int
    ties: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval": self.interval.to_dict()}


def bootstrap_mean(values: Any, *, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """The mean of ``values`` (NaNs dropped) with its percentile-bootstrap ``level`` interval.

    One value gives ``low = high = mean``; none gives an interval of NaNs with ``n = 0``.

    >>> bootstrap_mean([1.0, 2.0, 3.0, float("nan")]).n
    3
    """
    x = _values(values, "values")
    level, resamples, seed = _settings(level, resamples, seed)
    return _bootstrap(x[~x.isnan()], level, resamples, seed)


def paired_comparison(a: Any, b: Any, *, level: float = 0.95, resamples: int = 10_000,
                      seed: int = 0) -> PairedComparison:
    """Compare paired scores ``a[i]`` and ``b[i]``: mean difference, interval, p-value, counts."""
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise SegcamError(f"a and b must pair up one to one, got {len(x)} and {len(y)} values; "
                          "pass one score per item for each.")
    level, resamples, seed = _settings(level, resamples, seed)
    d = (x - y)[~(x.isnan() | y.isnan())]
    interval = _bootstrap(d, level, resamples, seed)
    return PairedComparison(n=len(d), mean_diff=interval.mean, interval=interval,
                            p_value=sign_flip_p(d, resamples, seed), wins=int((d > 0).sum()),
                            losses=int((d < 0).sum()), ties=int((d == 0).sum()))


def sign_flip_p(d: Tensor, resamples: int, seed: int) -> float:
    """Two-sided sign-flip p-value of ``mean(d)`` (exact for ``n ≤ 16``); NaN for no pairs."""
    n = len(d)
    if n == 0:
        return math.nan
    observed = float(d.sum().abs())
    slack = 1e-12 * float(d.abs().sum())  # the same sum in another order must count as equal
    if n <= EXACT_UP_TO:
        bits = (torch.arange(2**n).unsqueeze(1) >> torch.arange(n)) & 1
        sums = (1 - 2 * bits).double() @ d
        return float((sums.abs() >= observed - slack).double().mean())
    gen = torch.Generator().manual_seed(seed)
    hits = 0
    for rows in _chunks(resamples, n):
        signs = 1 - 2 * torch.randint(0, 2, (rows, n), generator=gen)
        hits += int(((signs.double() @ d).abs() >= observed - slack).sum())
    return (1 + hits) / (1 + resamples)


def _bootstrap(x: Tensor, level: float, resamples: int, seed: int) -> Interval:
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1, level)
    gen = torch.Generator().manual_seed(seed)
    means = torch.cat([x[torch.randint(0, n, (rows, n), generator=gen)].mean(1) for rows in _chunks(resamples, n)])
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Interval(mean, low, high, n, level)


def _chunks(rows: int, width: int) -> list[int]:
    """``rows`` split into chunks of at most :data:`CHUNK` numbers of ``width`` each."""
    step = max(1, CHUNK // width)
    return [min(step, rows - start) for start in range(0, rows, step)]


def _values(values: Any, name: str) -> Tensor:
    """A flat float64 tensor of finite numbers or NaNs."""
    if isinstance(values, Tensor):
        x = values.detach().to("cpu")
    elif isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray)):
        raise SegcamError(f"{name} must be a list, array or tensor of numbers, got {shown(values)}.")
    else:
        try:
            x = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):
            raise SegcamError(f"{name} must hold numbers only, got {shown(values)}.") from None
    if x.ndim != 1 or x.dtype == torch.bool or x.is_complex():
        raise SegcamError(f"{name} must be a flat sequence of real numbers, got shape {tuple(x.shape)} "
                          f"and dtype {x.dtype}; flatten it or pass one number per item.")
    x = x.double()
    if bool(x.isinf().any()):
        raise SegcamError(f"{name} holds infinite values; a mean needs finite numbers (NaN marks a missing one).")
    return x


def _settings(level: Any, resamples: Any, seed: Any) -> tuple[float, int, int]:
    return (check_float(level, "level", low=0, high=1, open_low=True, open_high=True),
            check_int(resamples, "resamples", low=1), check_int(seed, "seed", low=0))
