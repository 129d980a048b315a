"""A ``ModelCard`` as Markdown and as one self-contained HTML page.

Both render the same layout (``_card_layout.sections``) and escape every string as they write
it (Markdown: table pipes, emphasis and ``&``/``<``; HTML: ``html.escape``), so a declared
limitation or a promotion reason can never inject markup or script into either form.
"""

from __future__ import annotations

import html as _html
import re
from typing import TYPE_CHECKING, Any

from tarmac.trace._card_layout import (
    ICONS,
    Badge,
    Block,
    Bullets,
    Cell,
    Facts,
    Grid,
    Text,
    Tree,
    sections,
    title,
    when,
)

if TYPE_CHECKING:
    from tarmac.trace.card import ModelCard


# -- Markdown ----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def _md(text: str) -> str:
    """Markdown showing ``text`` literally inside a line: ``&`` and ``<`` as entities (no tag
    or entity can start), Markdown punctuation backslash-escaped, line breaks folded (a table
    row stays one row)."""
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", flat.replace("&", "&amp;").replace("<", "&lt;"))


def _md_start(text: str) -> str:
    """``_md`` for text that starts a paragraph or a list item: a leading quote, list or
    heading marker is escaped too."""
    flat = _md(text)
    return "\\" + flat if flat[:1] in (">", "-", "+", "=") else flat


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Badge):
        return f"{ICONS.get(cell.tone, '')} {_md(cell.text)}".strip()
    return _md(cell)


def markdown(card: ModelCard) -> str:
    lines = [f"# {_md(title(card))}", "",
             f"_Generated {when(card.generated_at)} by Tarmac from the registry, the ledger and "
             "the catalog._"]
    for name, blocks in sections(card):
        lines += ["", f"## {_md(name)}"]
        for block in blocks:
            lines += ["", *_md_block(block)]
    return "\n".join(lines) + "\n"


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [f"_{_md(block.text)}_" if block.muted else _md_start(block.text)]
    if isinstance(block, Facts):
        return [f"- **{_md(k)}:** {_md_cell(v)}" for k, v in block.rows]
    if isinstance(block, Grid):
        return (["| " + " | ".join(_md(h) for h in block.headers) + " |",
                 "|" + "---|" * len(block.headers)]
                + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows])
    if isinstance(block, Bullets):
        return [f"- {_md_start(i)}" for i in block.items]
    if isinstance(block, Tree):
        return [f"{'  ' * depth}- {_md_start(text)}" for depth, text in block.items]
    return [f"### {_md(block.title)}"]


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
max-width:1100px;margin:2rem auto;padding:0 1.5rem;background:#fff}
h1{font-size:1.7rem;margin:0 0 .2rem}h2{font-size:1.25rem;margin:2rem 0 .6rem;
padding-bottom:.3rem;border-bottom:1px solid #d0d7de}h3{font-size:1.02rem;margin:1.2rem 0 .4rem}
.meta,.muted{color:#656d76}table{border-collapse:collapse;margin:.4rem 0 1rem;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}table.facts th{width:13rem}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;
font-weight:600;white-space:nowrap}.ok{background:#dafbe1;color:#116329}
.bad{background:#ffebe9;color:#a40e26}.warn{background:#fff8c5;color:#7d4e00}
.muted.badge{background:#eaeef2;color:#57606a}.info{background:#ddf4ff;color:#0a3069}
ul.tree{list-style:none;padding-left:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:.88rem}ul.tree li{margin:.1rem 0}
""".strip()


def _h(text: Any) -> str:
    return _html.escape(str(text), quote=True)


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Badge):
        return f'<span class="badge {_h(cell.tone)}">{_h(cell.text)}</span>'
    return _h(cell)


def html(card: ModelCard) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_h(title(card))}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>{_h(title(card))}</h1>",
             f'<p class="meta">Generated {_h(when(card.generated_at))} by Tarmac from the '
             "registry, the ledger and the catalog.</p>"]
    for name, blocks in sections(card):
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        parts.append(f'<section id="{slug}"><h2>{_h(name)}</h2>')
        parts += [_html_block(b) for b in blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        muted = ' class="muted"' if block.muted else ""
        return f"<p{muted}>{_h(block.text)}</p>"
    if isinstance(block, Facts):
        rows = "".join(f"<tr><th>{_h(k)}</th><td>{_html_cell(v)}</td></tr>"
                       for k, v in block.rows)
        return f'<table class="facts">{rows}</table>'
    if isinstance(block, Grid):
        head = "".join(f"<th>{_h(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_h(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Tree):
        return '<ul class="tree">' + "".join(
            f'<li style="padding-left:{1.4 * depth:g}rem">{"└ " if depth else ""}{_h(text)}</li>'
            for depth, text in block.items) + "</ul>"
    return f"<h3>{_h(block.title)}</h3>"
