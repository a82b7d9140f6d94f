"""Uploads through HTTP, volumes (a 2-D model slice by slice, a 3-D model on the whole volume),
model uploads (safetensors only, off by default) and the ``segcam serve`` command."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import httpx
import nibabel as nib
import numpy as np
import pytest
import torch

import segcam
from segcam.apps.web import ModelSpec, ServerThread, WebConfig, create_app
from segcam.data import SAMPLES, load_image
from segcam.models import UNet, save_weights


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def tiny_3d(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "unet3d.safetensors"
    arch = {"num_classes": 3, "in_channels": 1, "width": 4, "depth": 2, "dims": 3}
    save_weights(UNet(**arch).eval(), path, {"arch": arch, "class_names": ["air", "tissue", "bone"]})
    return path


@pytest.fixture(scope="module")
def server(tiny_3d):
    models = (ModelSpec(), ModelSpec(spec=str(tiny_3d), name="unet3d"))
    app = create_app(WebConfig(models=models, max_upload_bytes=2**20, max_pixels=2**16, allow_model_upload=True))
    with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        yield client


@pytest.fixture()
def sid(server):
    return ok(server.post("/api/sessions"))["session"]


def upload(client, sid, name, data):
    return client.post(f"/api/sessions/{sid}/images", files={"file": (name, data)})


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    return buffer.getvalue()


def test_an_uploaded_png_is_explained_like_the_file(server, sid):
    data = (SAMPLES / "scene-2.png").read_bytes()
    info = ok(upload(server, sid, "mine.png", data))
    assert info["dims"] == 2 and info["shape"] == [64, 64] and info["channels"] == 3
    out = ok(server.post(f"/api/sessions/{sid}/explain", json={"image": info["image"], "cls": 0}))
    loaded = segcam.load_model("default")
    exp = segcam.Explainer.from_loaded(loaded).explain(load_image(SAMPLES / "scene-2.png"), 0)
    assert out["score"] == pytest.approx(float(exp.score[0]), rel=1e-5)
    assert out["command"].split()[2] == "mine.png"


@pytest.mark.parametrize(("name", "data", "status", "match"), [
    ("big.npy", npy(np.zeros((1, 300, 300))), 413, "pixels"),
    ("huge.png", b"\x89PNG" + b"0" * (2**20 + 10), 413, "upload limit"),
    ("notes.txt", b"hello, world", 422, "PNG, JPEG, TIFF"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, 422, "broken.png"),
])
def test_bad_uploads_are_refused_with_the_reason(server, sid, name, data, status, match):
    response = upload(server, sid, name, data)
    assert response.status_code == status, response.text
    assert match in response.json()["error"]["message"]


def test_a_volume_with_a_2d_model_is_explained_slice_by_slice(server, sid):
    volume = torch.rand((3, 6, 64, 64), generator=torch.Generator().manual_seed(1))
    info = ok(upload(server, sid, "vol.npy", npy(volume)))
    assert info["dims"] == 3 and info["shape"] == [6, 64, 64]
    for axis, index, shape in ((0, 4, [64, 64]), (1, 10, [6, 64])):
        view = {"axis": axis, "index": index}
        body = {"image": info["image"], "cls": 0, "view": view, "region": {"kind": "pixel", "points": [[2, 3]]}}
        if axis == 1:  # a 6×64 slice is too small for the U-Net's three halvings: a clear error
            response = server.post(f"/api/sessions/{sid}/explain", json=body)
            assert response.status_code == 422, response.text
            continue
        out = ok(server.post(f"/api/sessions/{sid}/explain", json=body))
        assert out["shape"] == shape
        flat = volume[:, index] if axis == 0 else volume[:, :, index]
        exp = segcam.Explainer.from_loaded(segcam.load_model("default")).explain(
            flat, segcam.Target(0, segcam.regions.pixel(2, 3)))
        assert out["score"] == pytest.approx(float(exp.score[0]), rel=1e-5)
        view_png = server.get(f"/api/sessions/{sid}/images/{info['image']}/view.png",
                              params={"axis": axis, "index": index})
        assert view_png.status_code == 200 and view_png.headers["content-type"] == "image/png"
    bad = server.post(f"/api/sessions/{sid}/predict", json={"image": info["image"], "view": {"index": 6}})
    assert bad.status_code == 422 and "slice index 6" in bad.json()["error"]["message"]


def test_a_nifti_volume_with_a_3d_model_is_explained_whole(server, sid, tmp_path):
    data = np.random.default_rng(0).random((16, 16, 8)).astype(np.float32)  # (X, Y, Z)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 2.0, 1.0])), path)
    info = ok(upload(server, sid, "ct.nii.gz", path.read_bytes()))
    assert info["dims"] == 3 and info["shape"] == [8, 16, 16]
    body = {"image": info["image"], "model": "unet3d", "cls": "tissue", "view": {"axis": 0, "index": 3},
            "region": {"kind": "box", "points": [[2, 2], [5, 6]]}}
    out = ok(server.post(f"/api/sessions/{sid}/explain", json=body))
    assert out["shape"] == [16, 16] and out["region_pixels"] == 4 * 5  # one slice thick
    volume = np.load(io.BytesIO(server.get(f"/api/sessions/{sid}/results/{out['result']}/heatmap.npy").content))
    assert volume.shape == (8, 16, 16)  # the whole volume's map; the page shows slice 3
    pixel = dict(body, region={"kind": "pixel", "points": [[7, 9]]})
    assert "--pixel 3,7,9" in ok(server.post(f"/api/sessions/{sid}/explain", json=pixel))["command"]
    two_d = server.post(f"/api/sessions/{sid}/samples/scene-1").json()["image"]
    response = server.post(f"/api/sessions/{sid}/predict", json={"image": two_d, "model": "unet3d"})
    assert response.status_code == 422 and "3-D" in response.json()["error"]["message"]


def test_model_upload_accepts_safetensors_and_refuses_pickles(server, tmp_path):
    torch.manual_seed(1)
    arch = {"num_classes": 6, "width": 4, "depth": 2}
    save_weights(UNet(**arch).eval(), tmp_path / "m.safetensors", {"arch": arch})
    files = {"file": ("m.safetensors", (tmp_path / "m.safetensors").read_bytes())}
    info = ok(server.post("/api/models", files=files, data={"name": "mine"}))
    assert info["name"] == "mine" and "mine" in [m["name"] for m in ok(server.get("/api/info"))["models"]]
    refused = server.post("/api/models", files={"file": ("m.pt", pickle.dumps({"w": 1}))})
    assert refused.status_code == 422 and "pickle" in refused.json()["error"]["message"].lower()


def test_model_upload_is_off_by_default(live_url):
    response = httpx.post(f"{live_url}/api/models", files={"file": ("m.safetensors", b"{}")})
    assert response.status_code == 403 and "--allow-model-upload" in response.json()["error"]["message"]


def test_segcam_serve_prints_its_address_and_serves(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "segcam", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split("open ", 1)[1].split()[0]
        assert httpx.get(f"{url}/api/info", timeout=30).json()["models"][0]["name"] == "default"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_flags_are_checked_before_starting():
    result = subprocess.run([sys.executable, "-m", "segcam", "serve", "--model", "a=default", "--model", "a=default"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "distinct name" in result.stderr
