"""One report, two renderings: Markdown and self-contained HTML."""

from __future__ import annotations

from segcam.apps.page import Page


def _page() -> Page:
    page = Page("A <report>")
    page.heading("Results")
    page.text("x < y & z, **bold** and `code`")
    page.bullets(["one", "two"])
    page.table(["method", "value"], [["a|b", 1.5]])
    page.figure("figures/c.png", "curves")
    page.code("segcam evaluate --out 'd'")
    return page


def test_markdown_has_every_block_in_order():
    md = _page().to_markdown()
    assert md.index("# A <report>") < md.index("## Results") < md.index("x < y & z") < md.index("- one")
    assert "| method | value |\n|---|---|\n| a\\|b | 1.5 |" in md  # a pipe in a cell is escaped
    assert "![curves](figures/c.png)" in md and "```\nsegcam evaluate --out 'd'\n```" in md


def test_html_escapes_text_and_loads_nothing_from_elsewhere():
    page = _page().to_html()
    assert "<h1>A &lt;report&gt;</h1>" in page
    assert "<p>x &lt; y &amp; z, <strong>bold</strong> and <code>code</code></p>" in page
    assert "<th scope='col'>method</th>" in page and "<td>a|b</td>" in page
    assert "<img src='figures/c.png' alt='curves'>" in page
    assert "http" not in page and "<script" not in page
