"""Document -> Markdown (PNGs beside it) and -> one self-contained HTML page (PNGs inline as base64, no JS)."""

from __future__ import annotations

import base64
import html
import re

from .document import Document, Table

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
caption { font-weight: bold; text-align: left; padding: 0.3em 0; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; } .note { font-size: 0.8em; color: #444; margin: 0.2em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(t: Table) -> list[str]:
    lines = [f"**{t.title}**", "", "| " + " | ".join(_md_cell(c) for c in t.columns) + " |",
             "|" + "|".join("---" for _ in t.columns) + "|"]
    for i, row in enumerate(t.rows):
        cells = [f"**{_md_cell(c)}**" if (i, j) in t.bold else _md_cell(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if not t.rows:
        lines.append("| " + " | ".join("–" for _ in t.columns) + " |")
    lines.append("")
    lines += [f"{n}  " for n in t.notes]
    return lines + [""]


def to_markdown(doc: Document, figure_dir: str = "figures") -> str:
    """Markdown with images referenced as ``figure_dir/<name>.png`` (the caller writes those files)."""
    lines = [f"# {doc.title}", ""] + [f"{p}  " for p in doc.preamble] + [""]
    for s in doc.sections:
        lines += [f"## {s.title}", ""]
        lines += [*s.text, ""] if s.text else []
        for t in s.tables:
            lines += table_markdown(t)
        for f in s.figures:
            lines += [f"![{f.caption}]({figure_dir}/{f.name}.png)", "", f"*{f.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the notes use: `code` and **bold**."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = []
    for i, row in enumerate(t.rows):
        cells = "".join(f"<td><strong>{html.escape(c)}</strong></td>" if (i, j) in t.bold else
                        f"<td>{html.escape(c)}</td>" for j, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    if not t.rows:
        body.append("<tr>" + "".join("<td>–</td>" for _ in t.columns) + "</tr>")
    notes = "".join(f'<p class="note">{_inline(n)}</p>' for n in t.notes)
    return (f"<table><caption>{html.escape(t.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{notes}")


def to_html(doc: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(doc.title)}</h1>"]
    parts += [f"<p>{_inline(p)}</p>" for p in doc.preamble]
    for s in doc.sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{_inline(t)}</p>" for t in s.text]
        parts += [table_html(t) for t in s.tables]
        for f in s.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{_inline(f.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
