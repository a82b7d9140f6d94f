"""Bootstrap intervals and the paired sign-flip test: coverage, exact p-values, NaN handling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from segcam.errors import SegcamError
from segcam.evaluation import Interval, bootstrap_mean, paired_comparison


def test_the_95_interval_covers_the_true_mean_about_95_percent_of_the_time():
    mu, covered = 2.0, 0
    for seed in range(200):
        values = mu + torch.randn(30, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        found = bootstrap_mean(values, resamples=2000, seed=seed)
        assert found.low < found.mean < found.high and found.n == 30 and found.level == 0.95
        covered += found.low <= mu <= found.high
    assert 0.88 <= covered / 200 <= 0.99  # the percentile bootstrap runs a little short at n = 30


def test_bootstrap_is_deterministic_for_a_seed_and_narrows_with_the_level(rng):
    values = torch.randn(40, generator=rng).tolist()
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    assert bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)
    wide, narrow = bootstrap_mean(values, level=0.99), bootstrap_mean(values, level=0.5)
    assert wide.low < narrow.low < narrow.mean < narrow.high < wide.high
    assert wide.mean == pytest.approx(float(np.mean(values)))


def test_lists_arrays_and_tensors_agree(rng):
    values = torch.randn(25, generator=rng, dtype=torch.float64)
    assert bootstrap_mean(values) == bootstrap_mean(values.numpy()) == bootstrap_mean(values.tolist())


def test_nan_values_are_dropped_and_edge_counts():
    found = bootstrap_mean([1.0, float("nan"), 3.0, 2.0])
    assert found.n == 3 and found.mean == 2.0 and 1.0 <= found.low <= found.high <= 3.0
    one = bootstrap_mean([float("nan"), 4.5])
    assert (one.mean, one.low, one.high, one.n) == (4.5, 4.5, 4.5, 1)
    none = bootstrap_mean([float("nan")] * 3)
    assert none.n == 0 and all(math.isnan(v) for v in (none.mean, none.low, none.high))
    assert bootstrap_mean([]).n == 0
    assert Interval(1.0, 0.5, 1.5, 4, 0.9).to_dict() == {"mean": 1.0, "low": 0.5, "high": 1.5, "n": 4, "level": 0.9}


def enumerated_p(d: list[float]) -> float:
    """The sign-flip p-value written out: every sign pattern, one at a time."""
    observed = abs(sum(d))
    sums = [abs(sum(s * x for s, x in zip(signs, d))) for signs in itertools.product((1, -1), repeat=len(d))]
    return sum(s >= observed - 1e-12 for s in sums) / len(sums)


def test_exact_p_values_for_small_n(rng):
    assert paired_comparison([1, 2, 3, 4], [0, 0, 0, 0]).p_value == 2 / 16  # only all-+ and all-- reach 10
    assert paired_comparison([1, 2, -0.5], [0, 0, 0]).p_value == 4 / 8  # |±1±2±0.5| ≥ 2.5 in 4 of 8
    for n in (5, 9, 12):
        a, b = torch.randn(n, generator=rng), torch.randn(n, generator=rng) + 0.5
        d = (a.double() - b.double()).tolist()
        assert paired_comparison(a, b).p_value == pytest.approx(enumerated_p(d), abs=1e-12)


def test_sampled_p_values_approach_the_exact_one(rng):
    d = (torch.randn(18, generator=rng, dtype=torch.float64) + 0.4).tolist()
    exact = enumerated_p(d)
    sampled = paired_comparison(d, [0.0] * 18, resamples=20_000).p_value
    assert sampled == pytest.approx(exact, abs=0.015)
    assert paired_comparison(d, [0.0] * 18, seed=5) == paired_comparison(d, [0.0] * 18, seed=5)


def test_identical_samples_give_p_one_and_ties():
    same = paired_comparison([0.3, 0.1, 0.7], [0.3, 0.1, 0.7])
    assert same.p_value == 1.0 and same.ties == 3 and same.wins == same.losses == 0 and same.mean_diff == 0.0
    many = paired_comparison([0.5] * 40, [0.5] * 40, resamples=500)
    assert many.p_value == 1.0  # every sampled pattern ties the observed zero


def test_a_clear_shift_gives_a_small_p(rng):
    a = torch.randn(60, generator=rng, dtype=torch.float64) + 1.0
    b = torch.randn(60, generator=rng, dtype=torch.float64)
    found = paired_comparison(a, b, resamples=2000)
    assert found.p_value == pytest.approx(1 / 2001)  # no sampled pattern reaches the observed sum
    assert found.interval.low > 0 and found.mean_diff == pytest.approx(float((a - b).mean()))
    assert found.wins > found.losses and found.wins + found.losses + found.ties == 60


def test_pairs_with_a_nan_are_dropped():
    found = paired_comparison([1.0, float("nan"), 3.0, 2.0], [0.0, 1.0, float("nan"), 3.0])
    assert found.n == 2 and found.wins == 1 and found.losses == 1 and found.mean_diff == 0.0
    assert found.p_value == 1.0  # |1 - 1| = 0 is matched by every pattern
    empty = paired_comparison([float("nan")], [1.0])
    assert empty.n == 0 and math.isnan(empty.p_value) and math.isnan(empty.mean_diff)
    data = found.to_dict()
    assert data["interval"]["n"] == 2 and data["p_value"] == 1.0 and set(data) >= {"wins", "losses", "ties"}


def test_bad_arguments_are_refused():
    with pytest.raises(SegcamError, match="pair up"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(SegcamError, match="infinite"):
        bootstrap_mean([1.0, float("inf")])
    with pytest.raises(SegcamError, match="flat sequence"):
        bootstrap_mean(torch.ones(2, 2))
    with pytest.raises(SegcamError, match="list, array or tensor"):
        bootstrap_mean("1 2 3")
    with pytest.raises(SegcamError, match="numbers only"):
        bootstrap_mean(["a", "b"])
    with pytest.raises(SegcamError, match="level"):
        bootstrap_mean([1.0, 2.0], level=1.0)
    with pytest.raises(SegcamError, match="resamples"):
        paired_comparison([1.0], [2.0], resamples=0)
    with pytest.raises(SegcamError, match="seed"):
        bootstrap_mean([1.0, 2.0], seed=-1)
