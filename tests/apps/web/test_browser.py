"""The page of ``segcam serve`` in a real browser: Debian's chromium, driven by Playwright, against
a live server with the default model (``live_url``).

One page serves the whole module, so the tests run in file order and some build on the state
the previous ones left (noted where they do).  Every test ends with no console error or warning
and no uncaught exception in the page, except the HTTP error a test provokes on purpose.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from playwright.sync_api import Browser, Page, sync_playwright

from segcam import load_model
from segcam.apps.web import ModelSpec, ServerThread, WebConfig, create_app
from segcam.apps.web.models import Served
from segcam.data import make_scene, save_image
from segcam.models import Preprocess, UNet, save_weights

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDE = {"width": 1280, "height": 800}
TIMEOUT = 20_000  # ms


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, url: str) -> Page:
    """A new page on ``url`` that records console errors and warnings, once it shows an explanation."""
    context = browser.new_context(viewport=WIDE)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.messages = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type in ("error", "warning") and page.messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.messages.append(f"pageerror: {e}"))
    page.goto(url)
    page.wait_for_selector("#score[data-result]")
    return page


@pytest.fixture(scope="module")
def page(browser: Browser, live_url: str) -> Iterator[Page]:
    page = open_page(browser, live_url)
    yield page
    page.context.close()


@pytest.fixture(autouse=True)
def clean_console(page: Page) -> Iterator[None]:
    """No console error or warning, no uncaught exception, during any test."""
    yield
    assert page.messages == []  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def models_url(tmp_path_factory) -> Iterator[str]:
    """A server with three models: the default, ``plain`` (a U-Net with 4 unnamed classes) and
    ``vol3d`` (a 3-D U-Net whose preprocessing resizes volumes to 8×16×16)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "unet3d.safetensors"
    arch = {"num_classes": 3, "in_channels": 1, "width": 4, "depth": 2, "dims": 3}
    save_weights(UNet(**arch).eval(), path, {"arch": arch, "class_names": ["air", "tissue", "bone"]})
    specs = (ModelSpec(), ModelSpec(spec="zoo:unet", num_classes=4, name="plain"), ModelSpec(spec=str(path), name="vol3d"))
    served = {"default": Served.load(specs[0]), "plain": Served.load(specs[1]),
              "vol3d": Served.of("vol3d", specs[2], load_model(str(path), preprocess=Preprocess(size=(8, 16, 16))))}
    with ServerThread(create_app(WebConfig(models=specs), served)) as server:
        yield server.url


@pytest.fixture()
def models_page(browser: Browser, models_url: str) -> Iterator[Page]:
    page = open_page(browser, models_url)
    yield page
    page.context.close()
    assert page.messages == []  # type: ignore[attr-defined]


def result_id(page: Page) -> str | None:
    return page.get_attribute("#score", "data-result")


def new_result(page: Page, action: Callable[[], object]) -> str:
    """Do ``action`` and wait until the page shows a new explanation; its result id."""
    old = result_id(page)
    action()
    page.wait_for_function("old => { const r = document.querySelector('#score').dataset.result;"
                           " return r && r !== old && document.querySelector('#status').dataset.busy === 'false'; }",
                           arg=old)
    return result_id(page)


def point(page: Page, canvas: str, y: int, x: int) -> tuple[float, float]:
    """The client position of the centre of picture pixel (y, x) on ``canvas``."""
    page.locator(canvas).scroll_into_view_if_needed()
    box = page.locator(canvas).bounding_box()
    h, w = int(page.get_attribute(canvas, "data-h")), int(page.get_attribute(canvas, "data-w"))
    return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h


def click_pixel(page: Page, canvas: str, y: int, x: int) -> None:
    page.mouse.click(*point(page, canvas, y, x))


def drag(page: Page, canvas: str, start: tuple[int, int], stop: tuple[int, int]) -> None:
    page.mouse.move(*point(page, canvas, *start))
    page.mouse.down()
    page.mouse.move(*point(page, canvas, (start[0] + stop[0]) // 2, (start[1] + stop[1]) // 2))
    page.mouse.move(*point(page, canvas, *stop))
    page.mouse.up()


def checksum(page: Page, canvas: str) -> int:
    """A hash of the canvas's pixels (to tell pictures apart without moving them out of the page)."""
    return page.evaluate("""id => { const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i++) s = (Math.imul(s, 31) + d[i]) >>> 0; return s; }""",
                         canvas.lstrip("#"))


def region_pixels(page: Page) -> int:
    return int(re.search(r"(\d+) px in region", page.text_content("#score")).group(1))


def legend_pixels(page: Page, cls: int) -> int:
    text = page.text_content(f"#legend [data-cls='{cls}'] .count")
    return int(text.split()[0])


def choose(page: Page, select: str, value: str) -> str:
    return new_result(page, lambda: page.select_option(select, value))


def api_get(live_url: str, page: Page, path: str) -> dict:
    session = page.get_attribute("body", "data-session")
    with urllib.request.urlopen(f"{live_url}/api/sessions/{session}{path}") as reply:
        return json.loads(reply.read())


def download(page: Page, link: str) -> bytes:
    reply = page.request.get(page.locator(link).evaluate("a => a.href"))
    assert reply.ok
    return reply.body()


def reachable(page: Page, selector: str) -> bool:
    """Whether the element is inside the window and not covered (a click at its centre reaches it)."""
    return page.evaluate("""s => { const e = document.querySelector(s); const r = e.getBoundingClientRect();
        if (!r.width || r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth) return false;
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return hit === e || e.contains(hit); }""", selector)


def readout(page: Page) -> float:
    """The map's value under the pointer as the page shows it (a share of the map's maximum)."""
    return float(re.search(r"map ([\d.]+) of its maximum", page.text_content("#cursor-value")).group(1))


def share_at(page: Page, y: int, x: int) -> float:
    """The map of the current result at (y, x) as a share of its maximum, from heatmap.npy."""
    heat = np.load(io.BytesIO(download(page, "#dl-heatmap-npy")))
    return float(heat[y, x] / heat.max())


def test_page_starts_on_a_sample_with_the_biggest_objects_class(page: Page, live_url: str) -> None:
    cls = int(page.input_value("#class"))
    assert cls != 0  # not the background
    assert region_pixels(page) == legend_pixels(page, cls) > 0  # the whole predicted class
    assert "whole class" in page.text_content("#status")
    assert page.get_attribute("#tool-class", "aria-pressed") == "true"  # the tool of that region
    assert page.locator("[data-tool][aria-pressed=true]").count() == 1
    layer = page.input_value("#layer")
    assert layer and "★ default" in page.locator("#layer option:checked").text_content()
    assert layer in page.text_content("#layer-info")
    assert page.locator("#legend li").count() == page.locator("#class option").count() >= 2
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button, canvas')]
        .filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim())).map(e => e.id)""")
    assert unlabelled == []
    # the heatmap is drawn over the picture, the prediction too
    image = checksum(page, "#canvas-image")
    assert checksum(page, "#canvas-explanation") != image != checksum(page, "#canvas-segmentation")
    assert reachable(page, "#explain") and reachable(page, "#hover")  # at 1280×800, without scrolling


def test_heatmaps_use_the_figures_colour_map_on_a_0_to_1_scale(page: Page, live_url: str) -> None:
    with urllib.request.urlopen(f"{live_url}/api/info") as reply:
        colours = json.loads(reply.read())["heat_colors"]
    assert len(colours) == 256 and colours[0] == "#000004"  # inferno, as segcam's figures
    drawn = page.evaluate("""async () => { const m = await import(new URL('static/canvas.js', document.baseURI));
        const bitmap = await m.heatBitmap(Uint8Array.from([191, 220, 255]), 1, 3);
        const c = document.createElement('canvas'); c.width = 3; c.height = 1;
        const ctx = c.getContext('2d'); ctx.drawImage(bitmap, 0, 0);
        return Array.from(ctx.getImageData(0, 0, 3, 1).data); }""")
    rgb = [[int(colours[v][i:i + 2], 16) for i in (1, 3, 5)] for v in (191, 220, 255)]
    assert [drawn[4 * k:4 * k + 3] for k in range(3)] == rgb  # bytes ≥ 191 are opaque
    bar = page.eval_on_selector("#heat-bar", "e => getComputedStyle(e).backgroundImage")
    assert "rgb(0, 0, 4)" in bar and f"rgb({', '.join(map(str, rgb[2]))})" in bar
    assert (page.text_content("#heat-min"), page.text_content("#heat-max")) == ("0", "1")
    assert re.fullmatch(r"maximum [\d.e+-]+", page.text_content("#heat-raw"))


def test_clicking_a_pixel_explains_that_pixel_for_its_class(page: Page) -> None:
    page.click("#tool-pixel")
    before, score = checksum(page, "#canvas-explanation"), page.text_content("#score")
    page.mouse.move(*point(page, "#canvas-image", 40, 20))
    assert readout(page) == pytest.approx(share_at(page, 40, 20), abs=0.006)  # byte/255, shown to 2 decimals
    predicted = page.text_content("#cursor-value").split("predicted ")[1].split(" · ")[0]
    new_result(page, lambda: click_pixel(page, "#canvas-image", 40, 20))
    assert region_pixels(page) == 1
    assert "pixel (40, 20)" in page.text_content("#status")
    assert predicted in page.locator("#class option:checked").text_content()  # the class follows the click
    assert checksum(page, "#canvas-explanation") != before
    assert page.text_content("#score") != score
    assert readout(page) == pytest.approx(share_at(page, 40, 20), abs=0.006)  # the new map's, pointer still
    click_pixel(page, "#canvas-image", 41, 20)  # replaced at once by the next click
    click_pixel(page, "#canvas-image", 42, 21)
    page.wait_for_function("document.querySelector('#status').textContent.includes('pixel (42, 21)')")
    page.wait_for_timeout(300)
    assert "pixel (42, 21)" in page.text_content("#status")  # no late reply to the first click shown over it


def test_dragging_a_box_explains_the_box(page: Page) -> None:
    page.click("#tool-box")
    assert page.get_attribute("#tool-box", "aria-pressed") == "true"
    assert page.get_attribute("#tool-pixel", "aria-pressed") == "false"
    new_result(page, lambda: drag(page, "#canvas-explanation", (8, 8), (23, 39)))
    assert region_pixels(page) == 16 * 32  # corners included
    assert "box (8, 8)–(23, 39)" in page.text_content("#status")
    assert page.locator("#dl-region-npy").is_hidden()  # the command spells a box: --box


def test_polygon_closes_on_double_click_and_brush_paints(page: Page) -> None:
    page.click("#tool-polygon")
    for y, x in [(10, 10), (10, 30)]:
        click_pixel(page, "#canvas-image", y, x)
    new_result(page, lambda: page.mouse.dblclick(*point(page, "#canvas-image", 30, 10)))
    assert "polygon of 3 vertices" in page.text_content("#status")
    assert region_pixels(page) == sum(x + y <= 40 for y in range(10, 31) for x in range(10, 31))  # edges included
    page.click("#tool-brush")
    page.fill("#brush-radius", "2")
    new_result(page, lambda: drag(page, "#canvas-image", (50, 10), (50, 30)))
    assert "brush stroke" in page.text_content("#status")
    assert region_pixels(page) == 5 * 21 + 2 * (3 + 1)  # pixels within 2 of the segment: a line, round caps
    assert "--mask region.npy" in page.text_content("#command") and page.locator("#dl-image-npy").is_hidden()
    region = np.load(io.BytesIO(download(page, "#dl-region-npy")))
    assert region.shape == (64, 64) and int(region.sum()) == region_pixels(page)


def positions(page: Page, canvas: str, pixels: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """The client positions of the centres of ``pixels`` on ``canvas`` (one look at its box)."""
    page.locator(canvas).scroll_into_view_if_needed()
    box = page.locator(canvas).bounding_box()
    h, w = int(page.get_attribute(canvas, "data-h")), int(page.get_attribute(canvas, "data-w"))
    return [(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h) for y, x in pixels]


def brush_request(page: Page, stroke: list[tuple[int, int]]) -> dict:
    """Paint through the pixels of ``stroke`` (the moves in between dispatched in the page, as a
    fast pointer would); the region the page sent."""
    where = positions(page, "#canvas-image", stroke)
    with page.expect_request(lambda r: r.url.endswith("/explain") and r.method == "POST") as request:
        def paint() -> None:
            page.mouse.move(*where[0])
            page.mouse.down()
            page.evaluate("""where => { const c = document.getElementById('canvas-image');
                for (const [x, y] of where) c.dispatchEvent(new PointerEvent('pointermove',
                    {clientX: x, clientY: y, pointerId: 1, pointerType: 'mouse', buttons: 1, bubbles: true})); }""",
                          where[1:])
            page.mouse.up()
        new_result(page, paint)
    return json.loads(request.value.post_data)["region"]


def test_brush_strokes_are_thinned_to_what_the_server_takes(page: Page) -> None:
    page.fill("#brush-radius", "1")
    zigzag = [(10 + 4 * (x // 60), x % 60 if x // 60 % 2 == 0 else 59 - x % 60) for x in range(600)]
    region = brush_request(page, zigzag)  # 600 pixels, each next to the one before
    assert len(region["points"]) == 256  # at most 256, evenly subsampled
    assert region["points"][0] == [10, 0] and region["points"][-1] == [46, 0]  # both ends kept
    page.fill("#brush-radius", "6")
    region = brush_request(page, [(20, x) for x in range(5, 59)])
    gaps = [max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(region["points"], region["points"][1:])]
    assert 2 <= len(region["points"]) <= 20 and min(gaps[:-1]) >= 3  # no two kept points closer than radius/2


def test_a_polygon_takes_at_most_256_vertices(page: Page) -> None:
    page.click("#tool-polygon")
    old = result_id(page)
    for where in positions(page, "#canvas-image", [(4 + 3 * (i // 18), 4 + 3 * (i % 18)) for i in range(257)]):
        page.mouse.click(*where)
    assert "at most 256 vertices" in page.text_content("#status")
    page.keyboard.press("Escape")
    assert result_id(page) == old


def test_class_layer_method_and_option_changes_re_explain(page: Page) -> None:
    new_result(page, lambda: page.click("#tool-class"))
    classes = [int(v) for v in page.eval_on_selector_all("#class option", "os => os.map(o => o.value)")]
    other = next(c for c in reversed(classes) if c != int(page.input_value("#class")) and legend_pixels(page, c) > 0)
    choose(page, "#class", str(other))
    assert region_pixels(page) == legend_pixels(page, other)
    layers = page.eval_on_selector_all("#layer option:not([disabled])", "os => os.map(o => o.value)")
    layer = next(name for name in layers if name != page.input_value("#layer"))
    choose(page, "#layer", layer)
    assert f"--layer {layer}" in page.text_content("#command")
    choose(page, "#method", "seg-xres-cam")
    assert page.locator("#opt-window").is_visible() and page.locator("#opt-pool").is_visible()
    assert "seg-xres-cam" in page.text_content("#command")
    new_result(page, lambda: page.select_option("#opt-pool", label="mean"))
    assert "mean" in page.text_content("#command")


def test_pinned_panels_stay_and_close(page: Page) -> None:
    page.click("#pin")
    assert page.locator("#pin").is_disabled()  # one explanation is pinned once
    page.locator("#pin").dispatch_event("click")
    choose(page, "#method", "seg-grad-cam")
    page.click("#pin")
    panels = page.locator("[data-testid=pin-panel]")
    assert panels.count() == 2
    first, second = panels.nth(0).text_content(), panels.nth(1).text_content()
    assert "seg-xres-cam" in first and "pool" in first and "seg-grad-cam" in second
    new_result(page, lambda: page.click("#tool-all"))
    assert panels.count() == 2  # settings changed, pins stay
    panels.nth(0).locator("button").click()
    assert panels.count() == 1 and "seg-grad-cam" in panels.nth(0).text_content()


def test_rise_runs_as_a_job_with_a_progress_bar(page: Page) -> None:
    page.select_option("#method", "rise")
    assert "press Explain" in page.text_content("#status")  # long methods wait for the button
    page.evaluate("window.scrollTo(0, 0)")
    assert reachable(page, "#explain") and reachable(page, "#hover")  # below RISE's long options form
    page.fill("#opt-n_masks", "300")
    page.fill("#opt-batch_size", "20")
    page.press("#opt-batch_size", "Tab")
    page.evaluate("""() => { window.seenProgress = [];
        new MutationObserver(() => window.seenProgress.push([document.querySelector('#progress').value,
            document.querySelector('#progress').max])).observe(document.querySelector('#progress'),
            {attributes: true}); }""")
    new_result(page, lambda: page.click("#explain"))
    seen = page.evaluate("window.seenProgress")
    assert len({done for done, total in seen if total == 300 and done > 0}) >= 2  # it moved
    assert page.locator("#job").is_hidden()
    assert "with rise on the input pixels" in page.text_content("#status")
    assert page.text_content("#title-explanation") == "Explanation: rise on the input pixels"
    page.click("#pin")
    caption = page.locator("[data-testid=pin-panel]").last.text_content()
    assert "on the input pixels" in caption and "input>" not in caption


def test_a_rise_job_can_be_cancelled(page: Page, live_url: str) -> None:
    old = result_id(page)
    page.fill("#opt-n_masks", "20000")
    page.press("#opt-n_masks", "Tab")
    page.click("#explain")
    page.wait_for_function("document.querySelector('#progress').value > 0")
    cls = page.locator("#class option:checked").text_content().split(": ", 1)[1].rsplit(" (", 1)[0]
    assert f"Explaining {cls} (class" in page.text_content("#status")
    page.evaluate("window.scrollTo(0, 0)")
    assert reachable(page, "#progress") and reachable(page, "#cancel")
    job = page.get_attribute("#job", "data-job")
    page.click("#cancel")
    page.wait_for_selector("#job", state="hidden")
    page.wait_for_function("document.querySelector('#status').textContent === 'Cancelled.'")
    assert api_get(live_url, page, f"/jobs/{job}")["state"] == "cancelled"
    page.wait_for_timeout(300)
    assert result_id(page) == old


def test_masking_test_reports_dice_and_share_kept(page: Page) -> None:
    choose(page, "#method", "seg-grad-cam")
    page.fill("#mask-threshold", "0.3")
    page.select_option("#mask-baseline", "zero")
    page.click("#mask-run")
    page.wait_for_function("document.querySelector('#mask-dice').textContent !== '–'")
    assert 0 <= float(page.text_content("#mask-dice")) <= 1
    kept = page.text_content("#mask-kept")
    assert kept.endswith("%") and 0 <= float(kept.split()[0]) <= 100
    assert page.locator("#mask-image").is_visible()
    assert f"keeping the pixels above 0.30 of the map's maximum ({kept} of the image)" in page.text_content("#status")
    page.select_option("#mask-baseline", "mean")  # the result was for the other baseline
    assert page.text_content("#mask-dice") == "–" and page.locator("#mask-image").is_hidden()


def test_downloads_and_the_code_that_reproduces_the_result(page: Page) -> None:
    assert download(page, "#dl-heatmap-png").startswith(b"\x89PNG")
    assert np.load(io.BytesIO(download(page, "#dl-heatmap-npy"))).shape == (64, 64)
    assert download(page, "#dl-figure").startswith(b"\x89PNG")
    command = page.text_content("#command")
    assert command.startswith("segcam explain") and "import segcam" in page.text_content("#python")
    page.click("#copy-command")
    assert page.evaluate("navigator.clipboard.readText()") == command


def test_uploading_a_png_explains_it(page: Page, tmp_path) -> None:
    path = tmp_path / "my scene.png"
    save_image(path, make_scene(7).image)
    new_result(page, lambda: page.set_input_files("#upload", str(path)))
    assert "my scene.png" in page.text_content("#image-name")
    assert page.locator("#volume").is_hidden()
    assert page.input_value("#upload") == ""  # choosing the same file again uploads it again
    new_result(page, lambda: page.set_input_files("#upload", str(path)))


def test_uploading_a_volume_gives_a_slice_slider_and_axis(page: Page, tmp_path) -> None:
    path = tmp_path / "volume.npy"
    np.save(path, np.random.default_rng(0).random((3, 16, 32, 32), dtype=np.float32))
    new_result(page, lambda: page.set_input_files("#upload", str(path)))
    assert page.locator("#volume").is_visible()
    assert page.get_attribute("#slice", "max") == "15" and page.input_value("#slice") == "8"
    before = checksum(page, "#canvas-image")
    new_result(page, lambda: page.locator("#slice").fill("3"))
    assert page.text_content("#slice-value") == "3 / 15"
    assert checksum(page, "#canvas-image") != before
    new_result(page, lambda: page.select_option("#axis", "1"))
    assert page.get_attribute("#canvas-image", "data-h") == "16"  # a (D, W) slice
    page.click("#tool-pixel")
    new_result(page, lambda: click_pixel(page, "#canvas-image", 2, 5))
    assert "pixel (2, 5)" in page.text_content("#status")
    assert "image.npy" in page.text_content("#command")  # a 2-D model saw a slice: the command reads it
    image = np.load(io.BytesIO(download(page, "#dl-image-npy")))
    assert image.shape == (3, 16, 32)


def failed_upload(page: Page, path) -> str:
    """Upload ``path``, which the server refuses; the message shown."""
    page.set_input_files("#upload", str(path))
    page.wait_for_selector("#error", state="visible")
    return page.text_content("#error")


def test_a_failed_upload_leaves_the_page_on_its_image(page: Page, tmp_path) -> None:
    shown, picture = page.text_content("#image-name"), checksum(page, "#canvas-image")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    message = failed_upload(page, text)
    assert "notes.txt" in message and "upload a PNG" in message
    assert page.get_attribute("#error", "role") == "alert"
    page.click("#error-dismiss")
    assert page.locator("#error").is_hidden()
    two_channels = tmp_path / "two channels.npy"  # read, but the model takes 3 channels (or 1)
    np.save(two_channels, np.zeros((2, 16, 16), dtype=np.float32))
    assert "2 channels" in failed_upload(page, two_channels)
    assert page.text_content("#image-name") == shown and checksum(page, "#canvas-image") == picture
    assert page.input_value("#upload") == "" and page.locator("#volume").is_visible()
    new_result(page, lambda: click_pixel(page, "#canvas-image", 3, 7))  # still the volume's slice
    assert "pixel (3, 7)" in page.text_content("#status") and "image.npy" in page.text_content("#command")
    assert page.locator("#error").is_hidden()  # a request that works clears the error
    expected = [m for m in page.messages if "status of 422" in m]  # type: ignore[attr-defined]
    assert len(expected) >= 2 and len(expected) == len(page.messages)  # type: ignore[attr-defined]
    page.messages.clear()  # type: ignore[attr-defined]


def test_keyboard_reaches_the_controls_and_explains_at_a_cursor(page: Page) -> None:
    new_result(page, lambda: page.select_option("#sample", "scene-2"))
    page.evaluate("document.activeElement.blur()")
    reached = []
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert {"sample", "upload", "class", "class-follow", "tool-pixel", "tool-box", "layer", "method", "explain",
            "hover", "canvas-image", "canvas-explanation", "seg-opacity", "heat-opacity", "pin"} <= set(reached)
    page.click("#tool-pixel")
    page.focus("#canvas-explanation")
    for key in ["ArrowRight"] * 3 + ["ArrowDown"] * 2:
        page.keyboard.press(key)
    new_result(page, lambda: page.keyboard.press("Enter"))
    assert "pixel (34, 35)" in page.text_content("#status")  # from the centre (32, 32)
    assert region_pixels(page) == 1


def test_hover_follows_the_pointer(page: Page) -> None:
    page.check("#hover")
    for x in (5, 10, 15):
        page.mouse.move(*point(page, "#canvas-image", 12, x))
    page.wait_for_function("document.querySelector('#status').textContent.includes('pixel (12, 15)')")
    page.uncheck("#hover")


def overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > window.innerWidth")


def test_layout_side_by_side_at_1280_and_stacked_when_narrow(page: Page, tmp_path) -> None:
    boxes = [page.locator(c).bounding_box() for c in ("#canvas-image", "#canvas-segmentation", "#canvas-explanation")]
    assert not overflow(page)
    assert len({round(b["y"]) for b in boxes}) == 1 and len({round(b["width"]) for b in boxes}) == 1
    assert boxes[2]["x"] + boxes[2]["width"] <= WIDE["width"] and boxes[2]["y"] + boxes[2]["height"] <= WIDE["height"]
    try:
        page.set_viewport_size({"width": 420, "height": 800})
        page.wait_for_function("window.innerWidth === 420")
        assert not overflow(page)
        boxes = [page.locator(c).bounding_box() for c in ("#canvas-image", "#canvas-segmentation", "#canvas-explanation")]
        assert boxes[0]["y"] + boxes[0]["height"] <= boxes[1]["y"] and boxes[1]["y"] + boxes[1]["height"] <= boxes[2]["y"]
        page.locator("#method").scroll_into_view_if_needed()
        assert page.evaluate("scrollY") > 1500  # the settings come after the pictures
        text = tmp_path / "notes.txt"
        text.write_text("not an image")
        failed_upload(page, text)
        assert reachable(page, "#error-message")  # the error shows where the user works
        page.messages.clear()  # type: ignore[attr-defined]
        new_result(page, lambda: page.click("#explain"))
        assert page.locator("#error").is_hidden()
    finally:
        page.set_viewport_size(WIDE)


def test_a_model_without_class_names_and_regions_kept_across_models(models_page: Page) -> None:
    page = models_page
    assert "plain (unet, 2-D, unnamed classes)" in page.locator("#model").text_content()
    choose(page, "#class", "1")
    page.click("#tool-box")
    new_result(page, lambda: drag(page, "#canvas-image", (8, 8), (23, 39)))
    page.click("#pin")
    new_result(page, lambda: page.select_option("#model", "plain"))
    assert "box (8, 8)–(23, 39)" in page.text_content("#status") and region_pixels(page) == 16 * 32
    assert page.input_value("#class") == "1" and "class 1" in page.text_content("#status")
    assert page.get_attribute("#tool-box", "aria-pressed") == "true"
    page.click("#pin")
    captions = [page.locator("[data-testid=pin-panel] figcaption").nth(i).text_content() for i in range(2)]
    assert captions[0].startswith("default") and captions[1].startswith("plain")
    assert all("box (8, 8)–(23, 39) (512 px)" in c for c in captions)  # two models, one region
    page.mouse.move(*point(page, "#canvas-image", 3, 3))
    assert "predicted class " in page.text_content("#cursor-value")


def test_a_3d_model_that_resizes_slides_through_its_own_volume(models_page: Page, tmp_path) -> None:
    page = models_page
    path = tmp_path / "ct.npy"
    np.save(path, np.random.default_rng(1).random((1, 12, 20, 20), dtype=np.float32))
    new_result(page, lambda: page.set_input_files("#upload", str(path)))
    assert page.get_attribute("#slice", "max") == "11"  # a 2-D model: the image's 12 slices
    new_result(page, lambda: page.select_option("#model", "vol3d"))
    assert page.get_attribute("#slice", "max") == "7" and page.input_value("#slice") == "4"  # resized to 8×16×16
    assert page.get_attribute("#canvas-image", "data-h") == "16"
    new_result(page, lambda: page.locator("#slice").fill("7"))
    assert page.text_content("#slice-value") == "7 / 7"
    new_result(page, lambda: page.select_option("#axis", "2"))
    assert page.get_attribute("#slice", "max") == "15" and page.text_content("#slice-value") == "8 / 15"
