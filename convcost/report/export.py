"""The text formats every command shares: JSON, CSV and Markdown tables, all free of raw control characters."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Container
from typing import Any

from convcost.report.literal import json_visible, visible


def to_json(data: dict[str, Any]) -> str:
    """Indented UTF-8 JSON in which no string carries a raw non-printable character (json_visible)."""
    return json_visible(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"


def csv_value(value: Any) -> Any:
    """The CSV convention: empty for missing, ``true``/``false``, text visible (no raw control characters)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return visible(value)
    return value


def fixed(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``row`` with the figures under ``keys`` written to six decimals (never an exponent); missing ones stay."""
    for key in keys:
        if row.get(key) is not None:
            row[key] = f"{row[key]:.6f}"
    return row


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: csv_value(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def markdown_table(headers: list[str], rows: list[list[str]], right: Container[int] = ()) -> str:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if index in right else "---" for index in range(len(headers))) + "|")
    lines.extend("| " + " | ".join(visible(cell).replace("|", "\\|") for cell in row) + " |" for row in rows)
    return "\n".join(lines)
