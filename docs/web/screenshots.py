"""Screenshots of the page of ``segcam serve`` for the documentation.

    python docs/web/screenshots.py [OUTPUT_FOLDER]

writes ``overview.png`` (the page at 1280×800 right after it opens), ``pins.png`` (three pinned
explanations of one region: two layers, two methods) and ``narrow.png`` (a 420-pixel-wide
window, panels stacked) into OUTPUT_FOLDER (default: this file's folder).  It starts its own
server with the default model on a free port and drives Debian's chromium with Playwright.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from segcam.apps.web import ServerThread, WebConfig, create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def explained(page: Page, action) -> None:
    """Do ``action`` and wait for the page to show the explanation it asks for."""
    old = page.get_attribute("#score", "data-result")
    action()
    page.wait_for_function("old => { const r = document.querySelector('#score').dataset.result;"
                           " return r && r !== old && document.querySelector('#status').dataset.busy === 'false'; }",
                           arg=old, timeout=60_000)


def click_pixel(page: Page, canvas: str, y: int, x: int) -> None:
    page.locator(canvas).scroll_into_view_if_needed()
    box = page.locator(canvas).bounding_box()
    h, w = int(page.get_attribute(canvas, "data-h")), int(page.get_attribute(canvas, "data-w"))
    page.mouse.click(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h)


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with ServerThread(create_app(WebConfig())) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        page.wait_for_selector("#score[data-result]", timeout=60_000)
        page.hover("#canvas-explanation")
        page.screenshot(path=folder / "overview.png")

        page.click("#tool-pixel")
        explained(page, lambda: click_pixel(page, "#canvas-image", 40, 13))  # a pixel of the plus
        page.click("#pin")
        layers = page.eval_on_selector_all("#layer option:not([disabled])", "os => os.map(o => o.value)")
        explained(page, lambda: page.select_option("#layer", "downs.1" if "downs.1" in layers else layers[0]))
        page.click("#pin")
        explained(page, lambda: page.select_option("#method", "seg-xres-cam"))
        page.click("#pin")
        page.evaluate("window.scrollTo(0, 0)")  # the settings column is sticky: shoot it where it starts
        page.screenshot(path=folder / "pins.png", full_page=True)

        page.set_viewport_size({"width": 420, "height": 900})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=folder / "narrow.png")
        browser.close()
    for name in ("overview.png", "pins.png", "narrow.png"):
        print(folder / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
