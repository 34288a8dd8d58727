"""Every table of every command, and the consoles they are printed on: one mechanism for width, colour and
literal text.

A number, a shape or a verdict is never truncated or split. A :class:`FitTable` is a Rich table whose columns are
``no_wrap`` unless marked ``overflow="fold"`` (prose, such as "Channels read", may wrap between words); before it
renders it measures what its no-wrap cells need, and if that does not fit the width it is given, it prints itself
stacked instead: one block per row, each cell under its column's header, so narrow terminals lose the grid, never
a digit. New columns fit the mechanism by being added: nothing is sized by hand.

Every string cell is literal (``Text``, never Rich markup) and passes through :func:`convcost.literal.visible`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text

from convcost.literal import visible, visible_lines

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

    def add_column(self, header: RenderableType = "", *args: Any, **kwargs: Any) -> None:
        if kwargs.get("overflow") != "fold":
            kwargs["no_wrap"] = True  # numbers, shapes and verdicts never wrap
        super().add_column(literal(header), *args, **kwargs)

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
        layout = self.padding, self.show_edge
        self.padding, self.show_edge = (0, 1, 0, 0), False
        if self.needed_width(console, options) <= options.max_width:
            yield from super().__rich_console__(console, options)
            return
        self.padding, self.show_edge = layout
        yield from self._stacked()

    def _stacked(self) -> Iterable[RenderableType]:
        """Each row as its first cell, then one ``header  value`` line per other non-empty cell."""
        if self.title:
            yield literal(self.title)
        headers = [column.header if isinstance(column.header, str | Text) else "" for column in self.columns]
        labels = [str(header.plain if isinstance(header, Text) else header) or "check" for header in headers]
        cells = [list(column.cells) for column in self.columns]
        label_width = max((cell_len(label) for label in labels[1:]), default=0)
        for index, row in enumerate(self.rows):
            style = row.style or ""
            first = cells[0][index]
            if isinstance(first, Text | str):
                head = literal(first).copy()
                head.stylize(style)
                head.stylize("bold")
                yield head
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for label, column in zip(labels[1:], cells[1:], strict=True):
                value = column[index]
                if value is None or (isinstance(value, Text | str) and not str(value).strip()):
                    continue
                grid.add_row(Text("  " + label.ljust(label_width), style="dim"), value, style=style)
            if grid.row_count:
                yield grid
        if self.caption:
            yield literal(self.caption)


class LiteralConsole(Console):
    """A console that prints every str as itself: no markup, no emoji, no highlighting, control chars visible."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(literal(item, keep_lines=True) for item in objects), **kwargs)

    def rule(self, title: str | Text = "", *args: Any, **kwargs: Any) -> None:
        super().rule(literal(title) if title else title, *args, **kwargs)


def _env(name: str) -> bool:
    return os.environ.get(name, "") != ""


def piped_width() -> int:
    """$COLUMNS if it is set to a width, else PIPED_WIDTH: the one width rule for output that is not a terminal."""
    columns = os.environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


def make_console(*, stderr: bool = False, file: IO[str] | None = None, plain: bool = False) -> Console:
    """The console for stdout (or ``file``), or stderr.

    Width: $COLUMNS if set, else the terminal's width, else (a pipe, or ``plain`` for -o files) PIPED_WIDTH.
    Colour: NO_COLOR (set and not empty) removes all styling, bold and dim included; FORCE_COLOR styles output
    that is not a terminal; ``plain`` (-o files) is never styled.
    """
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    terminal = not plain and file is None and stream.isatty()
    width = None if terminal else piped_width()
    options: dict[str, Any] = {"width": width, "markup": False, "emoji": False, "highlight": False}
    if plain or _env("NO_COLOR"):
        options["color_system"] = None
    elif _env("FORCE_COLOR"):
        options.update(force_terminal=True, color_system="auto" if terminal else "standard")
    return LiteralConsole(file=stream, stderr=stderr and file is None, **options)
