"""User text shown as itself: the one escaping rule every renderer applies (pure Python, no Rich).

A layer, entry or check name, an import path, a file name or a value quoted in an error message is the user's,
and is printed as typed: control characters (ESC, NUL, newlines, C1 codes, bidirectional overrides, anything
Python's ``str.isprintable`` refuses) are written as visible escapes (``\\x1b``, ``\\n``, ``\\u202e``), so no name
can move the cursor, recolour the terminal, break a line-oriented format or make XML invalid. Markup such as
``[bold]`` or ``:emoji:`` needs no escaping here: the consoles are created with markup and emoji off and table
cells are literal ``Text`` (convcost.report.tables).
"""

from __future__ import annotations

import json


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(character, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every non-printable character written as an escape: ``"a\\x1b[31m"`` for ``"a\x1b[31m"``."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else _escape(character) for character in text)


def visible_lines(text: str) -> str:
    """Like :func:`visible` for each line of ``text``: its own line breaks are kept, everything else escaped."""
    return "\n".join(visible(line) for line in text.split("\n"))


def json_visible(text: str) -> str:
    """JSON text whose strings carry no raw non-printable character: each becomes a JSON ``\\u`` escape.

    ``json.dumps`` escapes C0 controls itself but leaves DEL, C1 controls and bidirectional overrides raw; the
    escaped text parses to the same data.
    """
    lines = text.split("\n")  # str.isprintable per line: fast on the (usual) clean document
    if all(line.isprintable() for line in lines):
        return text
    return "\n".join(
        line if line.isprintable() else "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in line)
        for line in lines
    )


# the characters that start inline Markdown mid-line (emphasis, code, links, HTML, entities, strike, :emoji:);
# | is escaped by markdown_table, and a name never starts a line, so list and heading markers need nothing
_MARKDOWN_SPECIAL = set("\\`*_[]<>~&:")


def markdown_literal(text: str) -> str:
    """User text for a Markdown document: visible, with Markdown's punctuation backslash-escaped so that
    ``**x**``, ``[a](b)``, ``<b>`` or ``:rocket:`` stay text (CommonMark lets any ASCII punctuation be escaped)."""
    return "".join("\\" + character if character in _MARKDOWN_SPECIAL else character for character in visible(text))
