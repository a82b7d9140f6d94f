"""Many users at once: 8 clients × 50 requests give the same maps as the same requests one by one,
sessions see only their own images, and the kept forward passes stay within their memory cap."""

from __future__ import annotations

import threading

import httpx
import pytest

from segcam.apps.web import ServerThread, WebConfig, create_app

CLIENTS, REQUESTS = 8, 50
CAP = 12 * 2**20  # room (half) for one or two kept forward passes of the default model (3-5 MB): evictions


@pytest.fixture(scope="module")
def small_cache_server():
    app = create_app(WebConfig(cache_bytes=CAP))
    with ServerThread(app) as server:
        yield server.url, app.state.workbench


def _requests(client_index: int) -> list[dict]:
    """Each client's own mix: methods, layers, classes, regions (deterministic per client)."""
    methods = [("seg-grad-cam", {}, None), ("seg-xres-cam", {"window": 2}, "ups.0"),
               ("seg-hires-cam", {}, "downs.2"), ("saliency", {}, None)]
    out = []
    for k in range(REQUESTS):
        method, options, layer = methods[(k + client_index) % len(methods)]
        y, x = (7 * k + 3 * client_index) % 64, (11 * k + 5 * client_index) % 64
        region = {"kind": "pixel", "points": [[y, x]]} if k % 3 else {"kind": "box", "points": [[y, x], [63, 63]]}
        out.append({"cls": (k + client_index) % 6, "region": region, "method": method, "options": options,
                    "layer": layer})
    return out


def _run(url: str, sid: str, image: str, requests: list[dict], out: list, errors: list) -> None:
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for body in requests:
                r = client.post(f"/api/sessions/{sid}/explain", json={"image": image, **body})
                assert r.status_code == 200, r.text
                data = r.json()
                out.append((data["heatmap"], data["score"]))
    except BaseException as e:  # noqa: BLE001 - reported by the test
        errors.append(e)


def test_concurrent_clients_get_the_same_maps_as_sequential_ones(small_cache_server):
    url, bench = small_cache_server
    with httpx.Client(base_url=url) as client:
        sessions = []
        for i in range(CLIENTS):
            sid = client.post("/api/sessions").json()["session"]
            image = client.post(f"/api/sessions/{sid}/samples/scene-{i % 3 + 1}").json()["image"]
            sessions.append((sid, image))
    results: list[list] = [[] for _ in range(CLIENTS)]
    errors: list = []
    threads = [threading.Thread(target=_run, args=(url, sid, image, _requests(i), results[i], errors))
               for i, (sid, image) in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[0]
    assert bench.store.cache.nbytes <= CAP and bench.store.cache.evictions > 0
    for i, (sid, image) in enumerate(sessions):  # the same requests again, one client at a time
        again: list = []
        _run(url, sid, image, _requests(i), again, errors)
        assert not errors, errors[0]
        assert [h for h, _ in again] == [h for h, _ in results[i]]
        assert [s for _, s in again] == pytest.approx([s for _, s in results[i]], rel=1e-5)
    assert len({h for r in results for h, _ in r}) > CLIENTS * REQUESTS // 2  # the maps do differ


def test_sessions_do_not_see_each_others_images(small_cache_server):
    url, _ = small_cache_server
    with httpx.Client(base_url=url) as client:
        a = client.post("/api/sessions").json()["session"]
        b = client.post("/api/sessions").json()["session"]
        image = client.post(f"/api/sessions/{a}/samples/scene-1").json()["image"]
        r = client.post(f"/api/sessions/{b}/explain", json={"image": image, "cls": 0})
        assert r.status_code == 404 and "unknown image" in r.json()["error"]["message"]
        result = client.post(f"/api/sessions/{a}/explain", json={"image": image, "cls": 0}).json()["result"]
        assert client.get(f"/api/sessions/{b}/results/{result}/heatmap.npy").status_code == 404


def test_old_sessions_are_dropped_with_their_pictures_and_forward_passes():
    app = create_app(WebConfig(max_sessions=2))
    bench = app.state.workbench
    sids = [bench.store.create().id for _ in range(3)]
    for sid in sids[1:]:
        info = bench.add_sample(sid, "scene-1")
        bench.predict(sid, info["image"], "default", None)
    assert len(bench.store) == 2 and {k[0] for k in bench.store.cache.snapshot()} == set(sids[1:])
    assert len(bench.store.cache) == 4  # a picture and a forward pass each
    bench.store.create()
    assert len(bench.store) == 2 and {k[0] for k in bench.store.cache.snapshot()} == {sids[2]}
    with pytest.raises(Exception, match="unknown session"):
        bench.store.get(sids[0])


def test_forward_passes_make_room_but_pictures_stay():
    bench = create_app(WebConfig(cache_bytes=7 * 2**20)).state.workbench  # two forward passes (3 MB each) at most
    sid = bench.store.create().id
    images = [bench.add_sample(sid, f"scene-{i}")["image"] for i in (1, 2, 3)]
    for image in images * 2:
        bench.predict(sid, image, "default", None)
        assert bench.store.cache.nbytes <= 7 * 2**20
    kinds = [k[-1] for k in bench.store.cache.snapshot()]
    assert kinds.count("images") == 3 and 4 <= len(kinds) <= 5 and bench.store.cache.evictions >= 4
