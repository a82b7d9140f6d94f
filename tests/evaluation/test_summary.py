"""Benchmark rows → means with intervals per group, and the papers' claims as paired tests."""

from __future__ import annotations

import math

import pytest

from segcam import SegcamError
from segcam.evaluation import Claim, check_claims, paper_claims, summarise


def _rows(diff: float, n: int = 12, metric: str = "mask_kept") -> list[dict]:
    rows = []
    for i in range(n):
        base = 0.1 + 0.05 * i
        for method, value in (("a", base + diff), ("b", base)):
            rows.append({"model": "m", "image": f"img{i}", "case": "c", "kind": "pixel", "layer": "L",
                         "method": method, metric: value})
    return rows


def test_summarise_groups_rows_and_gives_means_with_intervals():
    rows = _rows(0.2)
    out = summarise(rows, by=("method",), metrics=["mask_kept"])
    means = {g["method"]: g["mask_kept"]["mean"] for g in out}
    assert means["b"] == pytest.approx(sum(0.1 + 0.05 * i for i in range(12)) / 12)
    assert means["a"] == pytest.approx(means["b"] + 0.2)
    for g in out:
        assert g["n"] == 12 and g["mask_kept"]["low"] <= g["mask_kept"]["mean"] <= g["mask_kept"]["high"]


def test_summarise_skips_missing_values_and_metrics_nobody_has():
    rows = [{"method": "a", "share_true": 0.5}, {"method": "a", "share_true": math.nan}, {"method": "a"}]
    [g] = summarise(rows, by=("method",))
    assert g["share_true"]["n"] == 1 and g["share_true"]["mean"] == 0.5
    assert "mask_dice" not in g  # no row has it


@pytest.mark.parametrize("diff, higher, verdict", [
    (0.2, True, "holds"), (0.2, False, "reversed"), (-0.2, True, "reversed"), (0.0, True, "not shown"),
])
def test_claims_are_paired_tests_with_plain_verdicts(diff, higher, verdict):
    claim = Claim("a beats b", "a", "b", "mask_kept", higher, {"kind": "pixel"})
    [out] = check_claims(_rows(diff), [claim])
    assert out["verdict"] == verdict and out["n"] == 12
    assert out["mean_diff"] == pytest.approx(diff)


def test_claims_pair_only_matching_cases_and_skip_absent_methods():
    rows = _rows(0.2)
    rows = [r for r in rows if not (r["method"] == "b" and r["image"] == "img0")]  # one unpaired case
    [out] = check_claims(rows, [Claim("x", "a", "b", "mask_kept", True, {})])
    assert out["n"] == 11
    assert check_claims(rows, [Claim("x", "a", "missing", "mask_kept", True, {})]) == []


def test_a_self_claim_compares_the_dilated_metric_with_its_plain_twin():
    rows = [{"image": f"i{i}", "method": "x", "layer": "L", "mask_dice": 0.5, "mask_dice_dilated": 0.9}
            for i in range(10)]
    [out] = check_claims(rows, [Claim("dilation helps", "x", "x", "mask_dice_dilated", True, {"layer": "L"})])
    assert out["verdict"] == "holds" and out["mean_diff"] == pytest.approx(0.4)


def test_paper_claims_name_the_methods_the_benchmark_labels():
    claims = paper_claims("downs.2")
    assert {c.a for c in claims} | {c.b for c in claims} == {"seg-xres-cam (max)", "seg-xres-cam (mean)", "seg-grad-cam"}
    assert all(c.where["layer"] == "downs.2" for c in claims)


def test_bad_rows_are_refused():
    with pytest.raises(SegcamError, match="list of dicts"):
        summarise("rows")
    with pytest.raises(SegcamError, match="alpha"):
        check_claims([], [], alpha=1.5)
