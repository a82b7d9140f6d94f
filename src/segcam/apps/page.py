"""A report written once and rendered twice: Markdown for reading in a repository, HTML for a
browser.  A :class:`Page` is a list of blocks (headings, paragraphs, tables, figures, code);
the HTML is self-contained apart from the figure files next to it (no scripts, no CDN).  Text
blocks may use Markdown's ``**bold**`` and ```code```; both renderings show them."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Page:
    """Blocks in order; ``to_markdown`` and ``to_html`` render them."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", (list(header), [[str(c) for c in r] for r in rows])))

    def figure(self, path: str, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                out += [f"## {value}", ""]
            elif kind == "text":
                out += [value, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
            elif kind == "figure":
                out += [f"![{value[1]}]({value[0]})", "", f"*{value[1]}*", ""]
            else:
                out += ["```", value, "```", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h2>{e(value)}</h2>")
            elif kind == "text":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th scope='col'>{e(h)}</th>" for h in header)
                cells = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif kind == "figure":
                body.append(f"<figure><img src='{e(value[0])}' alt='{e(value[1])}'>"
                            f"<figcaption>{e(value[1])}</figcaption></figure>")
            else:
                body.append(f"<pre><code>{e(value)}</code></pre>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
                 "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}")
        return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{e(self.title)}</title>"
                f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{style}</style></head>"
                f"<body>{''.join(body)}</body></html>\n")


def _inline(text: str) -> str:
    """Escaped text with Markdown's ``**bold**`` and ```code``` rendered."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)
