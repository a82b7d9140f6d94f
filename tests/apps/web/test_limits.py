"""What keeps one user from hurting the others: work and size limits, long methods only as jobs,
jobs that die with their session, hover tables that are not rebuilt when they cannot be kept,
and request bodies refused while they stream in."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import torch

from segcam.apps.web import ServerThread, WebConfig, create_app
from segcam.apps.web.hover import HoverTables
from segcam.apps.web.sessions import ByteCache
from segcam.data import SAMPLES, load_image
from segcam.errors import SegcamError
from segcam.methods import create


def bench_of(**config):
    return create_app(WebConfig(**config)).state.workbench


def request(image, **body):
    return {"image": image, "model": "default", "cls": 1, "region": {"kind": "all"}, "method": "seg-grad-cam",
            **body}


def test_long_methods_run_only_as_jobs():
    bench = bench_of()
    sid = bench.store.create().id
    image = bench.add_sample(sid, "scene-1")["image"]
    with pytest.raises(SegcamError, match="start it as a job"):
        bench.explain(sid, request(image, method="rise", options={"n_masks": 8}))
    job = bench.start_job(sid, request(image, method="rise", options={"n_masks": 8}))["job"]
    for _ in range(400):
        if bench.job(sid, job).state == "done":
            break
        time.sleep(0.05)
    assert bench.job(sid, job).status()["result"]["method"] == "rise"
    bench.close()


def test_model_inputs_over_the_pixel_limit_are_refused():
    bench = bench_of(max_model_pixels=32 * 32)
    sid = bench.store.create().id
    image = bench.add_sample(sid, "scene-1")["image"]
    with pytest.raises(SegcamError, match=r"64×64 = 4096 pixels.*--max-model-pixels"):
        bench.predict(sid, image, "default", None)


def test_a_batch_too_large_for_the_image_is_refused():
    bench = bench_of()
    sid = bench.store.create().id
    image = bench.add_picture(sid, "big.npy", torch.rand(3, 1024, 1024))["image"]
    body = request(image, method="rise", options={"batch_size": 64})
    with pytest.raises(SegcamError, match="batch_size=64 is too large"):
        bench.start_job(sid, body)  # refused before a job starts
    with pytest.raises(SegcamError, match="batch_size=64 is too large"):
        bench.explain(sid, body, background=True)
    assert not bench.store.get(sid).jobs
    bench.close()


def test_class_indices_may_come_as_digits_but_not_as_booleans(live_url):
    with httpx.Client(base_url=live_url) as client:
        sid = client.post("/api/sessions").json()["session"]
        image = client.post(f"/api/sessions/{sid}/samples/scene-1").json()["image"]
        by_digits = client.post(f"/api/sessions/{sid}/explain", json=request(image, cls="1")).json()
        by_index = client.post(f"/api/sessions/{sid}/explain", json=request(image, cls=1)).json()
        assert by_digits["cls"] == 1 and by_digits["heatmap"] == by_index["heatmap"]
        refused = client.post(f"/api/sessions/{sid}/explain", json=request(image, cls=True))
        assert refused.status_code == 422


def test_a_3d_model_keeps_one_forward_pass_for_every_slice(tmp_path):
    from segcam.apps.web import ModelSpec
    from segcam.models import UNet, save_weights

    arch = {"num_classes": 2, "in_channels": 1, "width": 4, "depth": 2, "dims": 3}
    save_weights(UNet(**arch).eval(), tmp_path / "u3.safetensors", {"arch": arch})
    bench = bench_of(models=(ModelSpec(spec=str(tmp_path / "u3.safetensors"), name="u3"),))
    sid = bench.store.create().id
    image = bench.add_picture(sid, "vol.npy", torch.rand(1, 8, 16, 16))["image"]
    for index in (1, 4, 6):
        bench.predict(sid, image, "u3", {"axis": 0, "index": index})
    assert [k[-1] for k in bench.store.cache.snapshot()].count("images") == 1 and len(bench.store.cache) == 2


def test_a_volume_slice_for_a_2d_model_is_offered_as_the_commands_image(tmp_path, capsys):
    from segcam.apps.cli import main

    bench = bench_of()
    sid = bench.store.create().id
    volume = torch.rand(3, 5, 64, 64, generator=torch.Generator().manual_seed(0))
    image = bench.add_picture(sid, "vol.npy", volume)["image"]
    out = bench.explain(sid, request(image, view={"axis": 0, "index": 2},
                                     region={"kind": "brush", "points": [[10, 10], [20, 30]], "radius": 2}))
    assert "image.npy" in out["command"] and "--mask region.npy" in out["command"]
    for name in ("image.npy", "region.npy", "heatmap.npy"):
        (tmp_path / name).write_bytes(bench.download(sid, out["result"], name)[0])
    assert np.array_equal(np.load(tmp_path / "image.npy"), volume[:, 2].numpy())
    words = out["command"].split()
    args = [w.replace("image.npy", str(tmp_path / "image.npy")).replace("region.npy", str(tmp_path / "region.npy"))
            for w in words[1:-4]]
    assert main([*args, "--save-npy", str(tmp_path / "again.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "again.npy"), np.load(tmp_path / "heatmap.npy"), atol=1e-6)


def test_a_hover_table_the_cache_cannot_keep_is_not_rebuilt():
    class Table:
        nbytes = 3 * 2**20  # over the cache's room (half of 4 MB)

    class Linear:  # what the hover tables need of a method
        name, to_dict = "seg-grad-cam", staticmethod(dict)

    tables = HoverTables(ByteCache(4 * 2**20), max_bytes=2**30)
    builds = []
    for _ in range(3):
        assert tables.get(("s", "i"), create("seg-grad-cam", {}), lambda: builds.append(1) or Table()) is None
        tables.wait()
    assert len(builds) == 1 and ("s", "i") in tables._refused and not tables._building
    tables.shutdown()


def test_a_failing_hover_build_is_not_retried_and_frees_its_slot():
    class Linear:
        name, to_dict = "seg-grad-cam", staticmethod(dict)

    tables = HoverTables(ByteCache(4 * 2**20), max_bytes=2**30)
    builds = []

    def broken():
        builds.append(1)
        raise IndexError("a model forward-mode derivatives trip over")

    for _ in range(2):
        tables.get(("s", "i"), create("seg-grad-cam", {}), broken)
        tables.wait()
    assert len(builds) == 1 and not tables._building
    tables.shutdown()


def test_a_sessions_jobs_are_cancelled_when_it_is_dropped():
    bench = bench_of(max_sessions=1)
    sid = bench.store.create().id
    image = bench.add_sample(sid, "scene-1")["image"]
    job = bench.start_job(sid, request(image, method="rise", options={"n_masks": 20000, "batch_size": 8}))["job"]
    found = bench.job(sid, job)
    bench.store.create()  # pushes the first session out
    assert found.state == "cancelled"
    bench.close()


def test_streamed_bodies_are_refused_once_past_the_limit():
    app = create_app(WebConfig(max_upload_bytes=2**20))

    def chunks():  # no Content-Length: the size shows only as the bytes arrive
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.npy"\r\n\r\n'
        for _ in range(8):
            yield b"0" * 2**20

    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        sid = client.post("/api/sessions").json()["session"]
        response = client.post(f"/api/sessions/{sid}/images", content=chunks(),
                               headers={"content-type": "multipart/form-data; boundary=x"})
        assert response.status_code == 413 and "upload limit of 1 MB" in response.json()["error"]["message"]


def test_an_upload_named_like_a_sample_is_not_taken_for_the_sample():
    bench = bench_of()
    sid = bench.store.create().id
    image = bench.add_picture(sid, "scene-1.png", load_image(SAMPLES / "scene-2.png"))["image"]
    out = bench.explain(sid, request(image))
    assert str(SAMPLES) not in out["command"] and out["command"].split()[2] == "scene-1.png"


def test_a_forward_pass_too_large_to_keep_is_refused_once_and_remembered(monkeypatch):
    bench = bench_of(cache_bytes=2 * 2**20)  # room 1 MB, less than the default model's 3 MB forward pass
    sid = bench.store.create().id
    image = bench.add_sample(sid, "scene-1")["image"]
    explainer = bench.served("default").explainer
    runs = []
    forward = explainer.forward
    monkeypatch.setattr(explainer, "forward", lambda *a, **k: runs.append(1) or forward(*a, **k))
    with pytest.raises(SegcamError, match=r"needs 3 MB .* \(1 MB\); upload a smaller image"):
        bench.predict(sid, image, "default", None)
    for _ in range(3):
        with pytest.raises(SegcamError, match="needs 3 MB"):
            bench.explain(sid, request(image))
    assert len(runs) == 1  # not run again


def test_arrays_in_another_layout_get_the_fix():
    bench = bench_of()
    sid = bench.store.create().id
    with pytest.raises(SegcamError, match=r"\(64, 64, 3\).*np.moveaxis\(a, -1, 0\)"):
        bench.add_picture(sid, "hwc.npy", torch.rand(64, 64, 3))


def test_the_options_form_shows_the_servers_work_limits():
    info = bench_of(work_limits={"n_masks": 500, "cells": 16, "batch_size": 8}).info()
    rise = {o["name"]: o["schema"] for o in next(m for m in info["methods"] if m["name"] == "rise")["options"]}
    assert rise["n_masks"]["maximum"] == 500 and rise["cells"]["maximum"] == 16
    assert len(info["heat_colors"]) == 256 and info["heat_colors"][0] == "#000004"  # inferno, as the figures


def test_an_empty_option_is_written_into_the_command(tmp_path):
    from segcam.apps.cli import build_parser, method_options

    bench = bench_of()
    sid = bench.store.create().id
    image = bench.add_sample(sid, "scene-1")["image"]
    out = bench.explain(sid, request(image, method="seg-xres-cam", options={"window": None}))
    assert "--window none" in out["command"] and "window=None" in out["python"]
    args = build_parser().parse_args(out["command"].split()[1:])
    assert method_options(args, "seg-xres-cam")["window"] is None


def test_failed_model_uploads_free_their_slot_and_the_limit_answers_409(tmp_path):
    from segcam.models import UNet, save_weights

    bench = bench_of(allow_model_upload=True, extra_models=1)
    for _ in range(3):  # broken uploads never hold the one slot
        with pytest.raises(SegcamError, match="bad.safetensors"):
            bench.add_model("bad.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", None, None, None)
    arch = {"num_classes": 6, "width": 4, "depth": 2}
    save_weights(UNet(**arch).eval(), tmp_path / "m.safetensors", {"arch": arch})
    info = bench.add_model("mine.safetensors", (tmp_path / "m.safetensors").read_bytes(), None, None, None)
    assert info["name"].startswith("mine-")
    with pytest.raises(SegcamError, match="its limit until it restarts") as refused:
        bench.add_model("more.safetensors", (tmp_path / "m.safetensors").read_bytes(), None, None, None)
    from segcam.apps.web.server import _status

    assert _status(refused.value) == 409
