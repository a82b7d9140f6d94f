"""The web tool's API over real HTTP: what the page shows equals what the engine computes."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import segcam
from segcam.apps.cli import build_parser, method_options
from segcam.data import SAMPLES, load_image
from segcam.evaluation import masking_test
from segcam.methods import METHODS, Method, register, unregister

SCENE = load_image(SAMPLES / "scene-1.png")  # the picture the server's first sample shows


@pytest.fixture(scope="module")
def client(live_url):
    with httpx.Client(base_url=live_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def engine():
    loaded = segcam.load_model("default")
    return loaded, segcam.Explainer.from_loaded(loaded)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int, match: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert match in message, message
    return message


@pytest.fixture()
def scene(client):
    sid = ok(client.post("/api/sessions"))["session"]
    image = ok(client.post(f"/api/sessions/{sid}/samples/scene-1"))
    return sid, image["image"]


def explain(client, sid, image, /, **body):
    body = {"image": image, "model": "default", "cls": 1, "region": {"kind": "all"}, **body}
    return client.post(f"/api/sessions/{sid}/explain", json=body)


def heat(result: dict) -> torch.Tensor:
    h, w = result["shape"]
    return torch.frombuffer(bytearray(base64.b64decode(result["heatmap"])), dtype=torch.uint8).reshape(h, w)


def png_array(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


# ---------------------------------------------------------------------- discovery
def test_info_lists_models_methods_and_their_option_schemas(client):
    info = ok(client.get("/api/info"))
    assert [m["name"] for m in info["models"]] == ["default"]
    assert info["models"][0]["class_names"][:2] == ["background", "disc"]
    methods = {m["name"]: m for m in info["methods"]}
    assert set(methods) == set(METHODS)
    window = {o["name"]: o for o in methods["seg-xres-cam"]["options"]}
    assert window["pool"]["schema"]["enum"] == ["max", "mean"] and window["pool"]["default"] == "max"
    assert methods["rise"]["long"] and not methods["seg-grad-cam"]["long"]
    assert info["limits"]["max_upload_bytes"] == 25 * 2**20 and info["allow_model_upload"] is False


def test_a_newly_registered_method_appears_with_its_form(client, scene):
    @register("test-web-constant")
    class Constant(Method):
        """A flat map (for the test)."""

        level: float = 1.0

        def explain(self, ctx, layer):
            act = ctx.activation(layer)
            return torch.full((len(ctx.targets), act.shape[0], *act.shape[2:]), self.level)

    try:
        methods = {m["name"]: m for m in ok(client.get("/api/info"))["methods"]}
        assert methods["test-web-constant"]["options"][0]["schema"]["type"] == "number"
        sid, image = scene
        result = ok(explain(client, sid, image, method="test-web-constant", options={"level": 2.0}))
        assert bool((heat(result) == 255).all()) and result["max"] == 2.0
    finally:
        unregister("test-web-constant")


def test_the_page_and_its_files_are_served_without_anything_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text


# ---------------------------------------------------------------------- prediction and layers
def test_prediction_counts_every_pixel_and_matches_the_engine(client, scene, engine):
    sid, image = scene
    out = ok(client.post(f"/api/sessions/{sid}/predict", json={"image": image}))
    labels = engine[1].forward(SCENE).predicted[0]
    assert [c["pixels"] for c in out["classes"]] == torch.bincount(labels.flatten(), minlength=6).tolist()
    picture = png_array(out["labels_png"])
    assert picture.shape == (64, 64, 3)
    colours = {c["index"]: tuple(int(c["color"][i:i + 2], 16) for i in (1, 3, 5)) for c in out["classes"]}
    assert tuple(picture[10, 10]) == colours[int(labels[10, 10])]


def test_layers_mark_the_bottleneck_as_default(client, scene):
    sid, image = scene
    out = ok(client.get(f"/api/sessions/{sid}/layers", params={"image": image}))
    names = [layer["name"] for layer in out["layers"]]
    assert out["default"] == "downs.2" and "ups.1" in names and "head" in names
    bottleneck = next(layer for layer in out["layers"] if layer["name"] == "downs.2")
    assert bottleneck["grid"] == [8, 8] and bottleneck["shape"] == [1, 128, 8, 8]


# ---------------------------------------------------------------------- explaining
@pytest.mark.parametrize(("method", "options", "layer"), [
    ("seg-grad-cam", {}, None),
    ("seg-xres-cam", {"window": 2, "pool": "mean"}, "ups.0"),
    ("saliency", {}, None),
])
def test_a_click_gives_the_engines_map_score_and_region(client, scene, engine, method, options, layer):
    sid, image = scene
    result = ok(explain(client, sid, image, cls=1, region={"kind": "pixel", "points": [[40, 20]]},
                        method=method, options=options, layer=layer))
    exp = engine[1].explain(SCENE, segcam.Target(1, segcam.regions.pixel(40, 20)),
                            method=method, layer=layer, **options)
    assert torch.equal(heat(result), (exp.map[0].clamp(0, 1) * 255).round().to(torch.uint8))
    assert result["score"] == pytest.approx(float(exp.score[0]), rel=1e-5)
    assert result["region_pixels"] == 1 and result["layer"] == exp.layer and result["options"] == exp.options


@pytest.mark.parametrize(("region", "pixels"), [
    ({"kind": "box", "points": [[20, 25], [10, 10]]}, 11 * 16),  # corners in any order, both included
    ({"kind": "brush", "points": [[5, 5]], "radius": 2}, 13),  # one disc of radius 2
    ({"kind": "polygon", "points": [[0, 0], [0, 10], [10, 0]]}, None),
    ({"kind": "all"}, 64 * 64),
])
def test_region_tools_select_the_pixels_drawn(client, scene, region, pixels):
    sid, image = scene
    result = ok(explain(client, sid, image, region=region))
    if pixels is None:  # the polygon: a right triangle of legs 10 holds about 50-66 pixels
        assert 45 <= result["region_pixels"] <= 70
    else:
        assert result["region_pixels"] == pixels


def test_object_and_class_regions_follow_the_prediction(client, scene, engine):
    sid, image = scene
    labels = engine[1].forward(SCENE).predicted[0]
    y, x = (int(v) for v in (labels == 1).nonzero()[0])
    obj = ok(explain(client, sid, image, cls=1, region={"kind": "object", "points": [[y, x]]}))
    whole = ok(explain(client, sid, image, cls=1, region={"kind": "class"}))
    assert whole["region_pixels"] == int((labels == 1).sum()) >= obj["region_pixels"] > 1
    error(explain(client, sid, image, cls=2, region={"kind": "class"}), 422, "not predicted anywhere")


@pytest.mark.parametrize(("body", "match"), [
    ({"cls": 9}, "class"),
    ({"cls": "dog"}, "dog"),
    ({"layer": "downs.7"}, "downs"),
    ({"method": "seg-gradcam"}, "seg-grad-cam"),
    ({"method": "seg-xres-cam", "options": {"pool": "median"}}, "pool"),
    ({"method": "seg-xres-cam", "options": {"windw": 2}}, "window"),
    ({"method": "rise", "options": {"n_masks": 10**9}}, "n_masks"),
    ({"region": {"kind": "pixel", "points": [[64, 3]]}}, "outside the picture"),
    ({"region": {"kind": "box", "points": [[1, 1]]}}, "box tool takes 2 points"),
    ({"region": {"kind": "lasso"}}, "region"),
    ({"model": "unet9"}, "unknown model"),
    ({"image": "i_nothing"}, "unknown image"),
    ({"view": {"axis": 5}}, "axis"),
])
def test_bad_requests_get_a_json_error_naming_the_fix(client, scene, body, match):
    sid, image = scene
    response = explain(client, sid, image, **body)
    assert response.status_code in (404, 422), response.text
    assert match in response.json()["error"]["message"]


def test_unknown_sessions_and_broken_bodies_are_json_errors(client, scene):
    error(client.post("/api/sessions/s_nope/predict", json={"image": "i_x"}), 404, "unknown session")
    sid, _ = scene
    response = client.post(f"/api/sessions/{sid}/explain", content=b"{not json", headers={
        "content-type": "application/json"})
    error(response, 422, "not valid")
    error(client.get(f"/api/sessions/{sid}/results/r_none/heatmap.png"), 404, "unknown result")


def test_images_of_one_session_are_invisible_to_another(client, scene):
    _, image = scene
    other = ok(client.post("/api/sessions"))["session"]
    error(explain(client, other, image), 404, "unknown image")


# ---------------------------------------------------------------------- masking test and downloads
def test_masking_test_matches_the_evaluation_suite(client, scene, engine):
    sid, image = scene
    result = ok(explain(client, sid, image, cls=1, region={"kind": "class"}, method="seg-xres-cam"))
    out = ok(client.post(f"/api/sessions/{sid}/results/{result['result']}/masking",
                         json={"threshold": 0.3, "baseline": "zero"}))
    exp = engine[1].explain(SCENE, segcam.Target(1, segcam.regions.predicted()),
                            method="seg-xres-cam")
    expected = masking_test(engine[0].model, SCENE, exp, threshold=0.3, baseline="zero")
    assert out["dice"] == pytest.approx(expected.dice) and out["kept"] == pytest.approx(expected.kept)
    assert png_array(out["masked_png"]).shape[:2] == (64, 64)
    error(client.post(f"/api/sessions/{sid}/results/{result['result']}/masking", json={"threshold": 2}),
          422, "threshold")


def test_downloads_and_the_command_reproduce_the_view(client, scene, tmp_path):
    sid, image = scene
    result = ok(explain(client, sid, image, cls=1, region={"kind": "box", "points": [[30, 10], [40, 30]]},
                        method="seg-xres-cam", options={"window": 3, "pool": "mean"}, layer="ups.0"))
    base = f"/api/sessions/{sid}/results/{result['result']}"
    shown = np.load(io.BytesIO(client.get(f"{base}/heatmap.npy").content))
    assert shown.shape == (64, 64) and np.array_equal(np.round(shown * 255).astype(np.uint8), heat(result).numpy())
    assert Image.open(io.BytesIO(client.get(f"{base}/figure.png").content)).size[0] > 300
    grey = np.asarray(Image.open(io.BytesIO(client.get(f"{base}/heatmap.png").content)))
    assert np.array_equal(grey, heat(result).numpy())
    words = client.get(f"{base}/command.txt").text.split()
    assert words[:2] == ["segcam", "explain"] and result["command"].split() == words
    args = build_parser().parse_args([*words[1:-4], "--save-npy", str(tmp_path / "again.npy")])
    assert method_options(args, args.method) == {"window": 3, "pool": "mean"}
    assert args.run(args) == 0
    np.testing.assert_allclose(np.load(tmp_path / "again.npy"), shown, atol=1e-6)
    snippet = client.get(f"{base}/snippet.py").text
    namespace: dict = {}
    exec(compile(  # noqa: S102 - running the page's snippet is the test
        snippet.replace('np.save("heatmap.npy", exp.heatmap)', ""), "snippet", "exec"), namespace)
    np.testing.assert_allclose(namespace["exp"].heatmap, shown, atol=1e-6)


# ---------------------------------------------------------------------- long methods
def _wait(client, sid, job, states=("done", "error", "cancelled")):
    for _ in range(600):
        status = ok(client.get(f"/api/sessions/{sid}/jobs/{job}"))
        if status["state"] in states:
            return status
        import time

        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish: {status}")


def test_rise_runs_as_a_job_with_progress_and_gives_the_engines_map(client, scene, engine):
    sid, image = scene
    body = {"image": image, "cls": 1, "region": {"kind": "class"}, "method": "rise",
            "options": {"n_masks": 64, "batch_size": 16, "seed": 3}}
    job = ok(client.post(f"/api/sessions/{sid}/jobs", json=body))["job"]
    status = _wait(client, sid, job)
    assert status["state"] == "done" and status["done"] == status["total"] == 64
    exp = engine[1].explain(SCENE, segcam.Target(1, segcam.regions.predicted()), method="rise",
                            n_masks=64, batch_size=16, seed=3)
    assert torch.equal(heat(status["result"]), (exp.map[0].clamp(0, 1) * 255).round().to(torch.uint8))


def test_a_cancelled_job_stops(client, scene):
    sid, image = scene
    body = {"image": image, "cls": 1, "region": {"kind": "all"}, "method": "rise",
            "options": {"n_masks": 20000, "batch_size": 8}}
    job = ok(client.post(f"/api/sessions/{sid}/jobs", json=body))["job"]
    _wait(client, sid, job, states=("running",))
    assert ok(client.delete(f"/api/sessions/{sid}/jobs/{job}"))["state"] == "cancelled"
    status = ok(client.get(f"/api/sessions/{sid}/jobs/{job}"))
    assert status["state"] == "cancelled" and status["done"] < 20000 and "result" not in status
    error(client.get(f"/api/sessions/{sid}/jobs/j_unknown"), 404, "unknown job")


# ---------------------------------------------------------------------- hover
def test_hover_switches_to_the_precomputed_table_with_the_same_maps(client, scene, web_app):
    sid, image = scene
    body = {"cls": 1, "method": "seg-xres-cam", "options": {"window": 2, "pool": "mean"}, "hover": True}
    first = ok(explain(client, sid, image, region={"kind": "pixel", "points": [[40, 20]]}, **body))
    assert first["fast"] is False  # answered by a backward pass while the table is built
    web_app.state.workbench.hover.wait()
    for point in ([41, 22], [3, 60]):
        fast = ok(explain(client, sid, image, region={"kind": "pixel", "points": [point]}, **body))
        slow = ok(explain(client, sid, image, region={"kind": "pixel", "points": [point]}, **{**body, "hover": False}))
        assert fast["fast"] and not slow["fast"]
        assert int((heat(fast).int() - heat(slow).int()).abs().max()) <= 1  # float rounding only
        assert fast["score"] == pytest.approx(slow["score"], rel=1e-5, abs=1e-4)
        assert fast["command"] == slow["command"]


def test_hover_with_a_non_linear_method_always_runs_a_backward_pass(client, scene, web_app):
    sid, image = scene
    body = {"cls": 1, "method": "seg-xres-cam", "options": {"pool": "max"}, "hover": True,
            "region": {"kind": "pixel", "points": [[40, 20]]}}
    ok(explain(client, sid, image, **body))
    web_app.state.workbench.hover.wait()
    assert ok(explain(client, sid, image, **body))["fast"] is False
