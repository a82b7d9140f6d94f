"""How live the web tool is: server time of a click → heatmap, and of a hover move.

    python benchmarks/bench_web.py [--clicks 100] [--deeplab-size 512] [--json benchmarks/web_results.json]

For the default model (64×64) and torchvision's DeepLabV3-MobileNetV3 (no weights, 21 classes)
at 512×512, after the page's first request has kept the forward pass:

* **click**: ``Workbench.explain`` for a pixel (Seg-Grad-CAM at the default layer): the whole
  server-side work of the request — region, backward pass, method, post-processing, PNG and
  byte encodings, the reproducing command — without HTTP;
* **bare backward**: ``torch.autograd.grad`` of the same pixel's logit to the same layer's
  activation on the same kept graph, nothing else;
* **HTTP**: the click through a real server on 127.0.0.1 (client-measured round trip);
* the clicks again after a real server (its threads running torch) ran in the process: once
  another thread has run heavy torch work, torch's CPU thread pool can be slower for every
  thread, so both states are reported;
* **hover** (default model): a cursor move as one backward per move vs. precomputed linear
  weights (:mod:`segcam.linear`), maps per second, and the table's build time.

Clicks run interleaved with the bare backward passes (the same pixel for both, alternating
first), 100 random pixels by default; p50 and p95 of each, and their ratios.  The foreign CPU
load during the run is reported: figures taken with another busy process are not comparable.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch
from bench_engine import CpuMonitor

from segcam.apps.web import ServerThread, WebConfig, create_app
from segcam.apps.web.config import ModelSpec
from segcam.methods import METHODS

DEEPLAB = "torchvision:deeplabv3_mobilenet_v3_large"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * pct(seconds, 0.5), 3), "p95_ms": round(1000 * pct(seconds, 0.95), 3)}


def open_image(bench, model: str, size: int | None) -> tuple[str, str]:
    sid = bench.store.create().id
    if size is None:
        image = bench.add_sample(sid, "scene-1")["image"]
    else:
        gen = torch.Generator().manual_seed(0)
        image = bench.add_picture(sid, "noise.png", torch.rand((3, size, size), generator=gen))["image"]
    bench.predict(sid, image, model, None)  # the page's first request: keeps the forward pass
    return sid, image


def clicks(bench, model: str, size: int | None, n: int, monitor: CpuMonitor) -> dict:
    sid, image = open_image(bench, model, size)
    served = bench.served(model)
    prepared = bench.prepare(bench.store.image(sid, image), served, None)
    layer = bench.layer_for(served, prepared.x, None, METHODS["seg-grad-cam"])
    fwd = bench.forward(sid, image, served, prepared, layer)
    act = fwd.activations[layer]
    h, w = prepared.x.shape[1:]
    gen = torch.Generator().manual_seed(1)
    points = torch.stack([torch.randint(0, h, (n,), generator=gen), torch.randint(0, w, (n,), generator=gen)], 1)
    labels = fwd.predicted[0]

    def click(y: int, x: int) -> None:
        bench.explain(sid, {"image": image, "model": model, "cls": int(labels[y, x]), "layer": layer,
                            "region": {"kind": "pixel", "points": [[y, x]]}, "method": "seg-grad-cam"})

    def bare(y: int, x: int) -> None:
        torch.autograd.grad(fwd.logits.values[0, int(labels[y, x]), y, x], act, retain_graph=True)

    for y, x in points[:5].tolist():  # warm-up
        click(y, x)
        bare(y, x)
    times: dict[str, list[float]] = {"click": [], "bare": []}
    monitor.wait_quiet()
    mark = monitor.start()
    for k, (y, x) in enumerate(points.tolist()):
        order = [("click", click), ("bare", bare)] if k % 2 == 0 else [("bare", bare), ("click", click)]
        for name, fn in order:
            start = time.perf_counter()
            fn(y, x)
            times[name].append(time.perf_counter() - start)
    load = monitor.foreign(mark)
    out = {"model": model, "size": list(prepared.x.shape[1:]), "layer": layer, "clicks": n,
           "click": summary(times["click"]), "bare_backward": summary(times["bare"]),
           "foreign_cores": round(load, 2)}
    out["ratio_p50"] = round(pct(times["click"], 0.5) / pct(times["bare"], 0.5), 2)
    out["ratio_p95"] = round(pct(times["click"], 0.95) / pct(times["bare"], 0.95), 2)
    return out


def http_clicks(app, model: str, n: int) -> dict:
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
        sid = client.post("/api/sessions").json()["session"]
        image = client.post(f"/api/sessions/{sid}/samples/scene-1").json()["image"]
        client.post(f"/api/sessions/{sid}/predict", json={"image": image, "model": model})
        seconds = []
        for k in range(n + 5):
            body = {"image": image, "model": model, "cls": 1,
                    "region": {"kind": "pixel", "points": [[(7 * k) % 64, (13 * k) % 64]]}}
            start = time.perf_counter()
            r = client.post(f"/api/sessions/{sid}/explain", json=body)
            if k >= 5:
                seconds.append(time.perf_counter() - start)
            r.raise_for_status()
    return summary(seconds)


def hover(bench, n: int, monitor: CpuMonitor) -> dict:
    sid, image = open_image(bench, "default", None)
    request = {"image": image, "model": "default", "cls": 1, "method": "seg-grad-cam", "layer": None}
    moves = [[(5 * k) % 64, (9 * k) % 64] for k in range(n)]

    def run(fast: bool) -> list[float]:
        seconds = []
        for point in moves:
            start = time.perf_counter()
            bench.explain(sid, {**request, "region": {"kind": "pixel", "points": [point]}, "hover": fast})
            seconds.append(time.perf_counter() - start)
        return seconds

    first = bench.explain(sid, {**request, "region": {"kind": "pixel", "points": [[1, 1]]}, "hover": True})
    start = time.perf_counter()
    bench.hover.wait()  # the table is built in the background after the first hover request
    build = time.perf_counter() - start
    run(False)  # warm-up
    monitor.wait_quiet()
    mark = monitor.start()
    backward, table = run(False), run(True)
    load = monitor.foreign(mark)
    fast = bench.explain(sid, {**request, "region": {"kind": "pixel", "points": [[2, 2]]}, "hover": True})["fast"]
    return {"table_build_ms": round(1000 * build, 1), "first_hover_fast": first["fast"], "table_used": fast,
            "backward_per_move": summary(backward), "precomputed": summary(table),
            "maps_per_s_backward": round(1 / statistics.median(backward), 1),
            "maps_per_s_precomputed": round(1 / statistics.median(table), 1), "foreign_cores": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--deeplab-size", type=int, default=512)
    parser.add_argument("--skip-deeplab", action="store_true")
    parser.add_argument("--json", default="benchmarks/web_results.json")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="seconds to wait in all for a quiet CPU")
    args = parser.parse_args()
    torch.manual_seed(0)
    monitor = CpuMonitor(args.quiet_wait)
    specs = (ModelSpec(),) if args.skip_deeplab else (ModelSpec(), ModelSpec(DEEPLAB, num_classes=21, name="deeplab"))
    app = create_app(WebConfig(models=specs))
    bench = app.state.workbench
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__, "python": sys.version.split()[0]}
    results["default"] = clicks(bench, "default", None, args.clicks, monitor)
    if not args.skip_deeplab:
        results["deeplab"] = clicks(bench, "deeplab", args.deeplab_size, args.clicks, monitor)
    # A server runs torch on many threads, which can slow torch's thread pool for everyone after.
    results["http"] = http_clicks(create_app(WebConfig()), "default", args.clicks)  # stopping a server closes its app
    results["default_after_threads"] = clicks(bench, "default", None, args.clicks, monitor)
    if not args.skip_deeplab:
        results["deeplab_after_threads"] = clicks(bench, "deeplab", args.deeplab_size, args.clicks, monitor)
    results["hover"] = hover(bench, args.clicks, monitor)
    print(json.dumps(results, indent=1))
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
