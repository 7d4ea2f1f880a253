"""Strings from a registry or an API, made safe to show: in HTML, in Markdown, on one line.

Repository names, tags, annotations, artifact and media types, policy and rule names, error texts:
a hostile registry (or snapshot) can put anything there. Renderers pass every such string through
these functions and build markup only around what they return.
"""

from __future__ import annotations

import html
import re
from typing import Any

# Characters with a meaning anywhere in a line: emphasis, code, links and images, tables,
# strikethrough, math ($, GitHub), HTML entities (& is turned into &amp; first).
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]|~$])")
# ... and at the start of a line: headings, quotes, lists, thematic breaks, setext underlines.
_MARKDOWN_LINE_START = re.compile(r"^(\s*)(\d+(?=[.)])|)([#+=.)-])")


def printable(value: Any) -> str:
    """`value` as one line: control and format characters (newlines, tabs, bidi overrides,
    zero-width spaces) shown as escapes such as \\n and \\u202e instead of acting."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def html_text(value: Any) -> str:
    """Text content or attribute value for HTML: `& < > " '` escaped, one printable line."""
    return html.escape(printable(value), quote=True)


def markdown_text(value: Any, limit: int | None = None) -> str:
    """Plain text for Markdown (GitHub's included, tables too): every character that could
    start markup is escaped, `< > &` become entities so no HTML survives, one printable line
    (so no block can start inside it), at most `limit` characters shown."""
    text = printable(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    # "# x", "- x", "1. x", "1) x": escape the character that makes the block, not the digits
    return _MARKDOWN_LINE_START.sub(r"\1\2\\\3", text)
