"""What ``segcam evaluate`` writes: the tables, the figures and a report a person wants to read.

The report leads with the headline table (each method at the bottleneck, means with 95%
bootstrap intervals), then the papers' claims as paired tests with a plain verdict, the
sanity checks (a method that fails says so), tables by region kind and by layer, the curves,
example maps, and the exact command and versions that produced it.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import LoadedModel, __version__
from ..evaluation import BenchmarkResult, check_claims, metric_name, paper_claims, summarise
from ..viz import Row, save_curves, save_rows, save_sanity
from .page import Page


@dataclass
class ModelRun:
    """One model's benchmark and what it ran on."""

    name: str
    loaded: LoadedModel
    result: BenchmarkResult
    data: str
    label_check: str


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as CSV (columns: the union of the rows' keys, in first-seen order)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> bool:
    """Rows as Parquet when pyarrow is installed; ``False`` otherwise."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    columns = list(dict.fromkeys(k for r in rows for k in r))
    pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in columns}), path)
    return True


def versions() -> dict[str, str]:
    """What produced a report: segcam, torch, Python, the platform and the threads used."""
    return {"segcam": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "threads": str(torch.get_num_threads())}


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")


HEADLINE = ("share_true", "pointing", "mask_dice", "mask_kept", "sufficiency_area", "deletion_prob_area",
            "insertion_prob_area", "rise_spearman", "empty", "ms")
BY_KIND = ("share_true", "lift_object", "share_context", "share_bias", "mask_kept", "rise_spearman")
BY_LAYER = ("share_true", "pointing", "mask_dice", "mask_kept", "deletion_dice_area", "insertion_dice_area",
            "rise_spearman")


def write_outputs(out: Path, runs: Sequence[ModelRun], settings: Mapping[str, Any], command: str, seconds: float) -> None:
    """Every file of an evaluation in ``out``."""
    rows = [r for run in runs for r in run.result.rows]
    curves = [c for run in runs for c in run.result.curves]
    sanity = [s for run in runs for s in run.result.sanity_rows]
    write_table(out / "results.csv", rows)
    parquet = write_parquet(out / "results.parquet", rows)
    write_table(out / "curves.csv", curves)
    if sanity:
        write_table(out / "sanity.csv", sanity)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    page = Page("segcam evaluation")
    page.text(f"{len(rows)} explanations scored in {seconds / 60:.1f} minutes"
              f" (settings: {', '.join(f'{k}={v}' for k, v in settings.items())}). Tables: `results.csv`"
              + (", `results.parquet`" if parquet else "") + ", `curves.csv`, `sanity.csv`, `summary.json`.")
    summary: dict[str, Any] = {"command": command, "versions": versions(), "seconds": round(seconds, 1),
                               "settings": dict(settings),
                               "models": []}
    for i, run in enumerate(runs):
        summary["models"].append(_model_section(page, run, figures, i))
    page.heading("How this report was made")
    page.code(command)
    page.bullets([f"{k}: {v}" for k, v in versions().items()] + [f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}"])
    page.text("Every measurement is a mean over cases with a 95% percentile-bootstrap interval (10,000 resamples); "
              "paired comparisons use a two-sided sign-flip permutation test on the same cases. "
              "Evidence shares need known evidence (synthetic scenes, or ground truth for the object only).")
    (out / "report.md").write_text(page.to_markdown())
    (out / "report.html").write_text(page.to_html())
    dump_json(out / "summary.json", summary)


def _model_section(page: Page, run: ModelRun, figures: Path, i: int) -> dict[str, Any]:
    result, bottleneck = run.result, run.result.layers[0]
    page.heading(f"{run.name}: {run.data}")
    page.text(f"Layers: {', '.join(result.layers)}; the headline and the claims are measured at the first, "
              f"`{bottleneck}` (the bottleneck unless --layers chose otherwise). Input methods (RISE, saliency) "
              "explain the input and appear under layer `input`. Means with 95% bootstrap intervals; a metric's "
              "mean leaves out the cases where it does not apply (an empty map has no evidence shares).")
    at = [r for r in result.rows if r["layer"] in (bottleneck, "input")]
    headline = summarise(at, by=("method",), metrics=HEADLINE)
    verdicts = _sanity_by_method(result.sanity_rows, bottleneck)
    page.text("**Headline** — every method at the first layer, all region kinds together (↑/↓: higher/lower is better).")
    page.table(["method", "n"] + [metric_name(m) for m in HEADLINE] + ["sanity (telling step)"],
               [[g["method"], g["n"]] + [_cell(g.get(m, {})) for m in HEADLINE] + [verdicts.get(g["method"], "-")]
                for g in headline])
    claims = check_claims(result.rows, paper_claims(bottleneck))
    page.text("**The papers' claims**, tested on the same cases (paired):")
    page.table(["claim", "n", "mean a", "mean b", "a − b [95% CI]", "p", "verdict"],
               [[c["claim"], c["n"], _num(c["mean_a"]), _num(c["mean_b"]), _cell(c["interval"]),
                 _num(c["p_value"], 4), c["verdict"]] for c in claims])
    sanity = _sanity_table(page, result.sanity_rows, run.label_check)
    by_kind = summarise(at, by=("method", "kind"), metrics=BY_KIND)
    page.text("**By region kind** at the bottleneck (cue share: plus classes only; bias-tile share: the biased class only).")
    page.table(["method", "kind", "n"] + [metric_name(m) for m in BY_KIND],
               [[g["method"], g["kind"], g["n"]] + [_cell(g.get(m, {})) for m in BY_KIND] for g in by_kind])
    by_layer = summarise([r for r in result.rows if r["layer"] != "input"], by=("method", "layer"), metrics=BY_LAYER)
    page.text("**By layer** (all region kinds).")
    page.table(["method", "layer", "n"] + [metric_name(m) for m in BY_LAYER],
               [[g["method"], g["layer"], g["n"]] + [_cell(g.get(m, {})) for m in BY_LAYER] for g in by_layer])
    curves = f"figures/curves-{i}.png"
    at_layer = bottleneck if any(c["layer"] == bottleneck for c in result.curves) else "input"
    save_curves(figures.parent / curves, result.curves, at_layer, title=f"{run.name}: mean curves at {at_layer}")
    page.figure(curves, f"Mean sufficiency, deletion and insertion curves at {at_layer}")
    if result.sanity_rows:
        path = f"figures/sanity-{i}.png"
        save_sanity(figures.parent / path, result.sanity_rows)
        page.figure(path, "Cascading randomisation: rank correlation with the trained model's map, step by step")
    if result.examples:
        path = f"figures/examples-{i}.png"
        _examples(figures.parent / path, run)
        page.figure(path, "Example maps: the object case at the bottleneck, every method")
    return {"name": run.name, "data": run.data, "layers": result.layers, "headline": headline, "claims": claims,
            "by_kind": by_kind, "by_layer": by_layer, "sanity": sanity, "label_randomisation": run.label_check}


def _sanity_by_method(rows: Sequence[Mapping[str, Any]], bottleneck: str) -> dict[str, str]:
    out: dict[str, list[bool]] = {}
    unclear: set[str] = set()
    for r in rows:
        if r["test"] == "cascading" and r["telling"] and r["layer"] in (bottleneck, "input"):
            out.setdefault(r["method"], []).append(bool(r["passed"]))
            if str(r.get("verdict", "")).startswith("cannot tell"):
                unclear.add(r["method"])
    return {m: ("cannot tell (noisy)" if m in unclear else "passes" if all(v) else "FAILS") + f" ({sum(v)}/{len(v)})"
            for m, v in out.items()}


def _sanity_table(page: Page, rows: Sequence[Mapping[str, Any]], label_check: str) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, list]] = {}
    for r in rows:
        g = groups.setdefault((r["method"], r["layer"]), {"cascading": [], "labels": [], "noise": []})
        if r["telling"]:
            g[r["test"]].append((float(r["spearman"]), float(r["ssim"]), bool(r["passed"])))
            if r["test"] == "cascading" and str(r.get("verdict", "")).startswith("cannot tell"):
                g["noise"].append(float(r["noise"]))
    table = []
    for (method, layer), g in groups.items():
        casc, labels = g["cascading"], g["labels"]
        rho = _avg([c[0] for c in casc])
        table.append({"method": method, "layer": layer, "spearman": rho, "ssim": _avg([c[1] for c in casc]),
                      "passed": f"{sum(c[2] for c in casc)}/{len(casc)}",
                      "labels_spearman": _avg([c[0] for c in labels]),
                      "labels_passed": f"{sum(c[2] for c in labels)}/{len(labels)}" if labels else "-",
                      "verdict": _verdict(layer, rho, [c[2] for c in casc], g["noise"])})
    page.text("**Sanity checks** (Adebayo et al. 2018). Cascading randomisation re-draws the weights from the logits "
              "down; the telling step is the one where every layer above the explained one is random and its "
              "activations are untouched: a map that still ranks pixels the same way there shows the activations, "
              f"not the decision. Label randomisation: {label_check}.")
    page.table(["method", "layer", "ρ at telling step", "SSIM", "passed", "ρ, shuffled labels", "passed", "verdict"],
               [[t["method"], t["layer"], _num(t["spearman"]), _num(t["ssim"]), t["passed"],
                 _num(t["labels_spearman"]), t["labels_passed"], t["verdict"]] for t in table])
    return table


def _verdict(layer: str, rho: float, passed: list[bool], noise: list[float]) -> str:
    """One plain sentence per method and layer over the images checked (``noise``: the
    seed-to-seed agreement of a sampling method on the images where it was too low to tell)."""
    if not passed:
        return "cannot be checked: nothing lies above this layer"
    if noise:
        return (f"cannot tell on {len(noise)} of {len(passed)} images: its own maps from two seeds agree at only "
                f"mean ρ {_avg(noise):.2f}, so randomisation cannot be told from sampling noise; use more samples")
    where = "every layer" if layer == "input" else f"every layer above {layer}"
    if all(passed):
        return f"passes: with {where} random the map changes (mean ρ {rho:.2f})"
    shows = "the image or its own sampling, not the model" if layer == "input" else "the activations, not the decision"
    return (f"FAILS on {len(passed) - sum(passed)} of {len(passed)} images: with {where} random the map keeps "
            f"mean ρ {rho:.2f} — it shows {shows}")


def _examples(path: Path, run: ModelRun) -> None:
    names = run.loaded.class_names
    rows = []
    for item, region, maps in run.result.examples:
        rows.append(Row(item.image, item.predicted, region, {m: (v.cpu().numpy(), "") for m, v in maps.items()},
                        title=item.name, truth=item.truth, evidence=item.evidence_masks))
    n = len(names) if names else int(max(int(s.predicted.max()) for s, _, _ in run.result.examples)) + 1
    save_rows(path, rows, n, names)


def _avg(values: Sequence[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _num(value: Any, digits: int = 2) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _cell(interval: Mapping[str, Any]) -> str:
    if not interval or interval.get("n", 0) == 0 or math.isnan(float(interval["mean"])):
        return "-"
    digits = 0 if abs(float(interval["mean"])) >= 100 else 2
    return f"{_num(interval['mean'], digits)} [{_num(interval['low'], digits)}, {_num(interval['high'], digits)}]"
