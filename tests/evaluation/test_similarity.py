"""Map similarity: ranks and Spearman's rho against scipy, Pearson, SSIM against a direct loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from segcam.errors import SegcamError
from segcam.evaluation import pearson, rankdata, spearman, ssim
from segcam.evaluation.similarity import gaussian_window


def tied(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Values with many ties: a ReLU'd plateau of zeros and a few repeated levels."""
    return (torch.randint(-4, 4, shape, generator=gen).double() / 2).clamp_min(0)


def test_rankdata_matches_scipy_with_ties(rng):
    for _ in range(20):
        x = tied(rng, (97,))
        assert (x == 0).sum() > 30  # a real plateau
        np.testing.assert_array_equal(rankdata(x).numpy(), scipy.stats.rankdata(x.numpy()))
    x = torch.randn(50, generator=rng)
    np.testing.assert_array_equal(rankdata(x).numpy(), scipy.stats.rankdata(x.numpy()))
    assert rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_spearman_matches_scipy_on_maps_with_plateaus(rng):
    for shape in [(16, 16), (6, 7, 8)]:
        for _ in range(10):
            a, b = tied(rng, shape), tied(rng, shape)
            expected = scipy.stats.spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic
            assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
            assert spearman(a.numpy(), b.float()) == pytest.approx(expected, abs=1e-6)


def test_a_shared_zero_plateau_is_one_tie_not_agreement():
    a, b = torch.zeros(10, 10), torch.zeros(10, 10)
    a[0, :5] = torch.arange(1.0, 6.0)
    b[0, :5] = torch.arange(5.0, 0.0, -1.0)  # the same pixels, in the opposite order
    expected = scipy.stats.spearmanr(a.flatten(), b.flatten()).statistic
    assert spearman(a, b) == pytest.approx(expected)
    assert spearman(a, b) < spearman(a, a) == pytest.approx(1.0)


def test_pearson_matches_numpy_and_is_affine_invariant(rng):
    a, b = torch.randn(12, 9, generator=rng), torch.randn(12, 9, generator=rng)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.flatten(), b.flatten())[0, 1], abs=1e-12)
    assert pearson(a, 3 * a + 2) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert spearman(a, a.exp()) == pytest.approx(1.0)  # monotone: ranks agree, values do not
    assert pearson(a, a.exp()) < 0.99


@pytest.mark.parametrize("measure", [spearman, pearson])
def test_constant_maps_convention(measure):
    zeros, ones, varying = torch.zeros(4, 5), torch.ones(4, 5), torch.arange(20.0).reshape(4, 5)
    assert measure(zeros, zeros.clone()) == 1.0
    assert measure(zeros, ones) == 0.0
    assert measure(zeros, varying) == 0.0 and measure(varying, ones) == 0.0


def direct_ssim(a: np.ndarray, b: np.ndarray, span: float) -> float:
    """Wang et al.'s SSIM by a loop over every window that fits (written out, no convolution)."""
    radii = [min(5, (n - 1) // 2) for n in a.shape]
    axes = [np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * 1.5**2)) for r in radii]
    window = axes[0]
    for w in axes[1:]:
        window = np.multiply.outer(window, w)
    window /= window.sum()
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    values = []
    for corner in np.ndindex(*[n - 2 * r for n, r in zip(a.shape, radii)]):
        cut = tuple(slice(c, c + 2 * r + 1) for c, r in zip(corner, radii))
        x, y = a[cut], b[cut]
        mx, my = (window * x).sum(), (window * y).sum()
        vx, vy = (window * (x - mx) ** 2).sum(), (window * (y - my) ** 2).sum()
        cov = (window * (x - mx) * (y - my)).sum()
        values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape", [(16, 19), (5, 30), (12, 12, 13), (3, 14, 15), (1, 12)])
def test_ssim_matches_a_direct_loop(rng, shape):
    a = torch.rand(shape, generator=rng, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(shape, generator=rng, dtype=torch.float64)).clamp(0, 1)
    assert ssim(a, b) == pytest.approx(direct_ssim(a.numpy(), b.numpy(), 1.0), abs=1e-10)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-14)  # symmetric
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) < 1.0


def test_ssim_of_constant_maps_is_the_luminance_term():
    for c1, c2 in [(0.2, 0.7), (0.0, 1.0), (0.5, 0.5)]:
        expected = (2 * c1 * c2 + 0.01**2) / (c1**2 + c2**2 + 0.01**2)  # no variance: only luminance is left
        assert ssim(torch.full((20, 20), c1), torch.full((20, 20), c2)) == pytest.approx(expected, rel=1e-6)


def test_ssim_scales_with_the_data_range(rng):
    a, b = torch.rand(2, 20, 20, generator=rng, dtype=torch.float64).unbind(0)
    assert ssim(255 * a, 255 * b, data_range=255) == pytest.approx(ssim(a, b), abs=1e-9)
    assert ssim(a, 1 - a) < -0.9  # the same mean, opposite structure


def test_gaussian_window_shrinks_for_short_axes():
    assert len(gaussian_window(64)) == 11 and len(gaussian_window(7)) == 7 and len(gaussian_window(6)) == 5
    assert len(gaussian_window(1)) == 1
    assert float(gaussian_window(64).sum()) == pytest.approx(1.0)
    assert math.isclose(float(gaussian_window(64)[5] / gaussian_window(64)[6]), math.exp(1 / (2 * 1.5**2)))


@pytest.mark.parametrize("measure", [spearman, pearson, ssim])
def test_bad_maps_are_refused(measure):
    good = torch.rand(8, 8)
    with pytest.raises(SegcamError, match="shapes"):
        measure(good, torch.rand(8, 9))
    with pytest.raises(SegcamError, match="non-finite"):
        measure(good, torch.full((8, 8), float("nan")))
    with pytest.raises(SegcamError, match="2-D"):
        measure(torch.rand(64), torch.rand(64))
    with pytest.raises(SegcamError, match="real tensor or array"):
        measure([[1.0]], [[1.0]])
    with pytest.raises(SegcamError, match="real tensor or array"):
        measure(good > 0.5, good > 0.5)


def test_bad_arguments_are_refused():
    with pytest.raises(SegcamError, match="data_range"):
        ssim(torch.rand(8, 8), torch.rand(8, 8), data_range=0)
    with pytest.raises(SegcamError, match="1-D tensor"):
        rankdata(torch.rand(3, 3))
    with pytest.raises(SegcamError, match="non-finite"):
        rankdata(torch.tensor([1.0, float("nan")]))
