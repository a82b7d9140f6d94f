"""Batch mode: the local engine against a plain Python loop, the Ray engine against the local
one, and the local engine's memory over many items.

    python benchmarks/bench_batch.py [--items 300] [--ray-items 1000] [--memory-items 10000]
                                     [--json benchmarks/batch_results.json]

* **throughput**: ``run_batch`` as shipped (readers decided from the first file, groups of 8
  items through the model, maps to Zarr, rows to Parquet) against a plain loop over the same
  files doing the same explanations one target at a time (``load_image`` → ``explain`` →
  ``np.save``): explanations per second and their ratio (issue goal ≥ 1.5); also the engine
  with 2 reader processes forced and with one item per forward pass, to show what each part is
  worth;
* **ray**: ``run_batch_ray`` (2 actors of 1 CPU on a local Ray instance of 2 CPUs) against
  ``run_batch`` on the same files: the time ratio with Ray already started (steady overhead) and
  with Ray's start and stop counted (issue goal ≤ 1.3);
* **memory**: the engine over a CSV manifest of ``--memory-items`` rows (the bundled samples
  repeated), the process's resident memory sampled every 1000 items: flat means bounded.

The foreign CPU load during each part is reported (figures with another busy process are not
comparable); in the Ray and reader runs it includes our own Ray and reader processes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_engine import CpuMonitor

import segcam
from segcam.apps.batch.runner import BatchConfig, run_batch
from segcam.apps.batch.targets import parse_targets, targets_for
from segcam.data import SAMPLES, load_image


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def make_folder(root: Path, n: int) -> Path:
    folder = root / "images"
    folder.mkdir()
    for i in range(n):
        shutil.copy(SAMPLES / f"scene-{i % 3 + 1}.png", folder / f"img{i:05d}.png")
    return folder


def plain_loop(folder: Path, out: Path) -> int:
    loaded = segcam.load_model("default")
    explainer = segcam.Explainer.from_loaded(loaded)
    spec = parse_targets("predicted")
    out.mkdir()
    count = 0
    for path in sorted(folder.iterdir()):
        x = loaded.preprocess(load_image(path))
        predicted = explainer.forward(x).predicted[0]
        for key, target in targets_for(spec, predicted, None, None, explainer.class_names):
            exp = explainer.explain(x, target)
            np.save(out / f"{path.stem}-{key}.npy", exp.map[0].numpy().astype(np.float16))
            count += 1
    return count


def timed_engine(folder: Path, out: Path, count: int, config: BatchConfig) -> float:
    start = time.perf_counter()
    summary = run_batch(folder, out, config=config)
    assert summary.written == count, (summary.written, count)
    return time.perf_counter() - start


def throughput(root: Path, n: int, monitor: CpuMonitor) -> dict:
    folder = make_folder(root, n)
    monitor.wait_quiet()
    mark = monitor.start()
    start = time.perf_counter()
    count = plain_loop(folder, root / "loop")
    loop_s = time.perf_counter() - start
    engine_s = timed_engine(folder, root / "engine", count, BatchConfig())
    foreign = monitor.foreign(mark)
    variants = {}
    for name, config in (("readers_2", BatchConfig(workers=2)), ("one_item_per_pass", BatchConfig(batch_size=1))):
        monitor.wait_quiet()
        mark = monitor.start()
        seconds = timed_engine(folder, root / name, count, config)
        variants[name] = {"seconds": round(seconds, 2), "speedup": round(loop_s / seconds, 2),
                          "foreign_cores": round(monitor.foreign(mark), 2)}
    return {"items": n, "explanations": count, "loop_s": round(loop_s, 2), "engine_s": round(engine_s, 2),
            "loop_per_s": round(count / loop_s, 1), "engine_per_s": round(count / engine_s, 1),
            "speedup": round(loop_s / engine_s, 2), "foreign_cores": round(foreign, 2), "engine_variants": variants}


def ray_overhead(root: Path, n: int, monitor: CpuMonitor) -> dict:
    import logging

    import ray

    from segcam.apps.batch.ray_engine import RayConfig, run_batch_ray

    folder = make_folder(root, n)
    config = BatchConfig(workers=0)
    monitor.wait_quiet()
    mark = monitor.start()
    start = time.perf_counter()
    local = run_batch(folder, root / "local", config=config)
    local_s = time.perf_counter() - start
    start = time.perf_counter()
    cold = run_batch_ray(folder, root / "cold", config=config, ray=RayConfig(actors=2, num_cpus=2))
    cold_s = time.perf_counter() - start
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        run_batch_ray(folder, root / "warm-up", config=config, ray=RayConfig(actors=2))  # the workers' imports
        start = time.perf_counter()
        warm = run_batch_ray(folder, root / "warm", config=config, ray=RayConfig(actors=2))
        warm_s = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert local.written == cold.written == warm.written
    return {"items": n, "explanations": local.written, "local_s": round(local_s, 2),
            "ray_started_s": round(warm_s, 2), "ray_with_start_s": round(cold_s, 2),
            "ratio_started": round(warm_s / local_s, 2), "ratio_with_start": round(cold_s / local_s, 2),
            "actors": 2, "foreign_cores": round(monitor.foreign(mark), 2)}


def memory(root: Path, n: int) -> dict:
    manifest = root / "many.csv"
    manifest.write_text("image\n" + "".join(f"{SAMPLES / f'scene-{i % 3 + 1}.png'}\n" for i in range(n)))
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int, name: str) -> None:
        if done % 1000 == 0 or done == total:
            samples.append((done, round(rss_mb(), 1)))

    start = time.perf_counter()
    run_batch(manifest, root / "memory", config=BatchConfig(), progress=progress)
    return {"items": n, "seconds": round(time.perf_counter() - start, 1), "rss_mb": samples,
            "growth_mb_after_first_1000": round(samples[-1][1] - next(m for d, m in samples if d >= 1000), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--ray-items", type=int, default=1000, help="0: skip the Ray part")
    parser.add_argument("--memory-items", type=int, default=10_000)
    parser.add_argument("--json", default="benchmarks/batch_results.json")
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    args = parser.parse_args()
    torch.manual_seed(0)
    monitor = CpuMonitor(args.quiet_wait)
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as folder:
        results["throughput"] = throughput(Path(folder), args.items, monitor)
    if args.ray_items:
        with tempfile.TemporaryDirectory() as folder:
            results["ray"] = ray_overhead(Path(folder), args.ray_items, monitor)
    with tempfile.TemporaryDirectory() as folder:
        results["memory"] = memory(Path(folder), args.memory_items)
    print(json.dumps(results, indent=1))
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
