"""Every table of every command, and the consoles they are printed on: one mechanism for width, colour and
literal text.

A number, a shape or a verdict is never truncated or split: a :class:`FitTable`'s columns are ``no_wrap`` unless
marked ``overflow="fold"`` (prose may wrap between words), and a table whose no-wrap cells do not fit the width
prints itself compact, then stacked (a block per row), never cropped; nothing is sized by hand. Every string cell
is literal (``Text``, never Rich markup) and passes through :func:`convcost.report.literal.visible`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Container, Iterable
from typing import IO, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text

from convcost.report.literal import visible, visible_lines

PIPED_WIDTH = 120  # the width of piped output and of -o files when $COLUMNS is not set


def literal(renderable: Any, keep_lines: bool = False) -> Any:
    """A str or Text as literal, visible Text (no markup, no emoji, no control characters); others unchanged.

    ``keep_lines`` keeps line breaks (prose we wrote, whose user parts were made visible when it was built); a
    table cell shows a line break in a name as ``\\n``.
    """
    escape = visible_lines if keep_lines else visible
    if isinstance(renderable, str):
        return Text(escape(renderable))
    if isinstance(renderable, Text) and escape(renderable.plain) != renderable.plain:
        return Text(escape(renderable.plain), style=renderable.style, justify=renderable.justify)
    return renderable


def _content_width(console: Console, options: ConsoleOptions, renderable: RenderableType | None) -> int:
    if renderable is None:
        return 0
    if isinstance(renderable, str | Text):
        plain = renderable if isinstance(renderable, str) else renderable.plain
        return max((cell_len(line) for line in plain.split("\n")), default=0)
    return Measurement.get(console, options, renderable).maximum


class FitTable(Table):
    """A Rich table that never crops a no-wrap cell: whole when it fits, stacked (row by row) when it does not."""

    def __init__(self, *headers: Any, **kwargs: Any) -> None:
        """Every convcost table's look unless told otherwise: a rule under the header, no edge padding, title left."""
        kwargs = {"box": box.SIMPLE_HEAD, "pad_edge": False, "title_justify": "left", **kwargs}
        super().__init__(*headers, **kwargs)

    def add_column(self, header: RenderableType = "", *args: Any, **kwargs: Any) -> None:
        if kwargs.get("overflow") != "fold":
            kwargs["no_wrap"] = True  # numbers, shapes and verdicts never wrap
        super().add_column(literal(header), *args, **kwargs)

    def add_columns(self, headers: Iterable[str], right: Container[str] = (), **kwargs: Any) -> None:
        """One column per header: right-justified (numbers) where ``right`` names it, else left."""
        for header in headers:
            self.add_column(header, justify="right" if header in right else "left", **kwargs)

    def add_row(self, *renderables: RenderableType | None, style: str | Style | None = None,
                end_section: bool = False) -> None:  # fmt: skip
        super().add_row(*(literal(cell) for cell in renderables), style=style, end_section=end_section)

    def needed_width(self, console: Console, options: ConsoleOptions) -> int:
        """The narrowest width at which no no-wrap cell is cropped (wrapping columns at their longest word)."""
        wide = options.update_width(10_000)
        for column in self.columns:
            if column.no_wrap:
                cells = [column.header, *column.cells]
                needed = max(_content_width(console, wide, cell) for cell in cells)
                column.min_width = max(column.min_width or 0, needed)
        return Measurement.get(console, wide, self).minimum

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.columns or self.needed_width(console, options) <= options.max_width:
            yield from super().__rich_console__(console, options)
            return
        # first the same grid with one space between columns and no edge, then, if even that is too wide, stacked
        layout = self.padding, self.show_edge, self.pad_edge
        self.padding, self.show_edge, self.pad_edge = self._compact_padding(), False, False
        if self.needed_width(console, options) <= options.max_width:
            yield from super().__rich_console__(console, options)
            return
        headed = self._headed(console, options)
        self.padding, self.show_edge, self.pad_edge = layout
        yield from headed if headed is not None else self._stacked(console, options)

    def _compact_padding(self) -> tuple[int, int, int, int]:
        """No padding where the box already puts a space between columns, else one space after each."""
        return (0, 0, 0, 0) if self.box is not None else (0, 1, 0, 0)

    def _headed(self, console: Console, options: ConsoleOptions) -> list[RenderableType] | None:
        """The compact grid without its first column, whose cells become headings above their rows (a row with an
        empty first cell stays under the heading before it); None if even that is too wide."""
        if len(self.columns) < 3:
            return None
        cells = [list(column.cells) for column in self.columns]

        def part(rows: list[int], header: bool) -> FitTable:
            table = FitTable(box=self.box, pad_edge=False, show_edge=False, padding=self._compact_padding(),
                             show_header=header, header_style=self.header_style)  # fmt: skip
            for column in self.columns[1:]:
                table.add_column(column.header, justify=column.justify, overflow=column.overflow,
                                 min_width=column.min_width, header_style=column.header_style)  # fmt: skip
            for index in rows:
                table.add_row(*(column[index] for column in cells[1:]), style=self.rows[index].style)
            return table

        if part(list(range(len(self.rows))), True).needed_width(console, options) > options.max_width:
            return None
        groups: list[tuple[Any, list[int]]] = []
        for index in range(len(self.rows)):
            key = cells[0][index]
            if not groups or (isinstance(key, str | Text) and str(key).strip()):
                groups.append((key, []))
            groups[-1][1].append(index)
        parts: list[RenderableType] = [literal(self.title)] if self.title else []
        parts += [part([], True)] if groups else []  # the column headers once, above the first heading
        for key, rows in groups:
            if isinstance(key, str | Text) and str(key).strip():
                head = literal(key).copy()
                head.stylize(self.rows[rows[0]].style or "")
                head.stylize("bold")
                parts.append(head)
            parts.append(part(rows, False))
        if self.caption:
            parts.append(literal(self.caption, keep_lines=True))  # our prose: its line breaks kept
        return parts

    def _stacked(self, console: Console, options: ConsoleOptions) -> Iterable[RenderableType]:
        """Each row as its first cell, then one ``header  value`` line per other non-empty cell (the value on a line
        of its own, under its header, where the two do not fit side by side)."""
        if self.title:
            yield literal(self.title)
        headers = [column.header if isinstance(column.header, str | Text) else "" for column in self.columns]
        labels = [str(header.plain if isinstance(header, Text) else header) or "check" for header in headers]
        cells = [list(column.cells) for column in self.columns]
        label_width = max((cell_len(label) for label in labels[1:]), default=0)
        for index, row in enumerate(self.rows):
            style = row.style or ""
            first = cells[0][index]
            if isinstance(first, Text | str) and str(first).strip():
                head = literal(first).copy()
                head.stylize(style)
                head.stylize("bold")
                yield head
            for label, column in zip(labels[1:], cells[1:], strict=True):
                value = column[index]
                if value is None or (isinstance(value, Text | str) and not str(value).strip()):
                    continue
                if not isinstance(value, Text):
                    yield value
                    continue
                width = _content_width(console, options, value)
                line = Text("  " + label.ljust(label_width) + " ", style="dim")
                if cell_len(line.plain) + width > options.max_width:  # the value on its own line, under its label
                    yield Text("  " + label, style="dim")
                    line = Text("    " if 4 + width <= options.max_width else "")
                line.append_text(value.copy())
                line.stylize(style, len(line.plain) - len(value.plain))
                yield line
        if self.caption:
            yield literal(self.caption, keep_lines=True)


def prose(item: str | Text, style: str | None = None, *, soft_wrap: bool = False) -> Text:
    """A line of prose for a renderer's output, literal like every printed string.

    ``soft_wrap`` keeps it on one line whatever the width (a problem that must be grepped and copied whole); the
    CLI prints a report without cropping, so such a line runs past the width instead of being cut.
    """
    text = literal(item, keep_lines=True)
    text = text.copy() if isinstance(text, Text) else Text(str(text))
    if style:
        text.style = style
    if soft_wrap:
        text.no_wrap, text.overflow = True, "ignore"
    return text


def show(console: Console, renderable: RenderableType) -> None:
    """Print what a renderer returned as the CLI does: no cropping, so a soft-wrapped line stays whole."""
    console.print(renderable, crop=False)


class LiteralConsole(Console):
    """A console that prints every str as itself: no markup, no emoji, no highlighting, control chars visible."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(literal(item, keep_lines=True) for item in objects), **kwargs)

    def rule(self, title: str | Text = "", *args: Any, **kwargs: Any) -> None:
        super().rule(literal(title) if title else title, *args, **kwargs)


def _env(name: str) -> bool:
    return os.environ.get(name, "") != ""


def make_console(*, stderr: bool = False, file: IO[str] | None = None, plain: bool = False) -> Console:
    """The console for stdout (or ``file``), or stderr.

    Width: $COLUMNS if set, else the terminal's width, else (a pipe, or ``plain`` for -o files) PIPED_WIDTH.
    Colour: NO_COLOR (set and not empty) removes all styling, bold and dim included; FORCE_COLOR styles output
    that is not a terminal; ``plain`` (-o files) is never styled.
    """
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    terminal = not plain and file is None and stream.isatty()
    columns = os.environ.get("COLUMNS", "").strip()
    width = None if terminal else int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH
    options: dict[str, Any] = {"width": width, "markup": False, "emoji": False, "highlight": False}
    if plain or _env("NO_COLOR"):
        options["color_system"] = None
    elif _env("FORCE_COLOR"):
        options.update(force_terminal=True, color_system="auto" if terminal else "standard")
    return LiteralConsole(file=stream, stderr=stderr and file is None, **options)
