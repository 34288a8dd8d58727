"""Renderers of ``convcost check`` verdicts: linter lines, JSON, GitHub annotations and summary, JUnit XML."""

from __future__ import annotations

from xml.etree import ElementTree

from convcost.report.export import markdown_table, to_json
from convcost.report.format import si
from convcost.report.literal import markdown_literal, visible
from convcost.results.budget import METRICS, BudgetResult, Level, LimitVerdict

GITHUB_PER_LEVEL = 10  # GitHub shows at most 10 annotations of each level per step


def amount(metric: str, value: float | None) -> str:
    """``568,740,352 (569M)`` for counts, ``12.3 ms`` for latency."""
    if value is None:
        return "—"
    if metric == "latency_ms":
        return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"
    if float(value).is_integer():
        whole = int(value)
        return f"{whole:,}" + (f" ({si(whole)})" if whole >= 1000 else "")
    return f"{value:,.1f}"


def describe(verdict: LimitVerdict) -> str:
    """What failed, with expected, found and by how much: the body of a linter line."""
    head = verdict.check if verdict.subject in ("model", verdict.check) else f"{verdict.check}: {verdict.subject}"
    if verdict.message:
        return f"{head}: {verdict.message}"
    metric = verdict.metric
    found, expected = amount(metric, verdict.found), amount(metric, verdict.expected)
    over = ""
    if verdict.excess is not None and verdict.excess > 0:
        pct = verdict.excess_pct
        excess = f"{verdict.excess:.3g} ms" if metric == "latency_ms" else f"{verdict.excess:,.0f}"
        over = f", exceeded by {excess}" + (f" ({pct:.1f}%)" if pct is not None else "")
    if verdict.rule == "growth":
        return (
            f"{head}: {metric} {found} grew past the baseline {amount(metric, verdict.baseline)} + "
            f"{verdict.tolerance_pct:g}% = {expected}{over}"
        )
    return f"{head}: {metric} {found} > max {expected}{over}"


def _level_word(verdict: LimitVerdict) -> str:
    return "error" if verdict.level is Level.ERROR else "warning"


def failed(result: BudgetResult) -> list[LimitVerdict]:
    """Errors first, then warnings, each in budget-file order."""
    return result.errors + result.warnings


def to_lines(result: BudgetResult) -> str:
    """Like a linter: ``file:line: error: what``, then a summary."""
    lines = []
    for verdict in failed(result):
        where = f"{result.source}:{verdict.line}" if verdict.line else result.source
        lines.append(f"{where}: {_level_word(verdict)}: {describe(verdict)}")
    if result.baseline_written and result.baseline_path:
        lines.append(f"baseline written to {result.baseline_path}")
    lines.append(f"{'FAILED' if not result.ok else 'ok'}: {result.summary()}")
    # one line per finding whatever the names hold: a newline or ESC in a check name is shown, not obeyed
    return "\n".join(visible(line) for line in lines) + "\n"


def _escape_data(text: str) -> str:
    """GitHub's workflow-command escaping of a message (after :func:`visible`: no raw control character)."""
    return visible(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(result: BudgetResult) -> str:
    """Workflow commands: ``::error file=...,line=...::``, at most 10 per level, then the summary."""
    lines = []
    for level, command in ((Level.ERROR, "error"), (Level.WARN, "warning")):
        items = [verdict for verdict in failed(result) if verdict.level is level]
        for verdict in items[:GITHUB_PER_LEVEL]:
            where = f"file={_escape_property(result.source)}" + (f",line={verdict.line}" if verdict.line else "")
            title = _escape_property(f"convcost budget: {verdict.check}")
            lines.append(f"::{command} {where},title={title}::{_escape_data(describe(verdict))}")
        if len(items) > GITHUB_PER_LEVEL:
            lines.append(f"… and {len(items) - GITHUB_PER_LEVEL} more {command}s (see the job summary)")
    lines.append(visible(("FAILED: " if not result.ok else "ok: ") + result.summary()))
    return "\n".join(lines) + "\n"


def to_markdown_summary(result: BudgetResult) -> str:
    """The job summary: one row per check with its figures, then every failed limit."""
    mark = "❌" if not result.ok else "✅"
    parts = [f"### {mark} convcost check: {result.summary()}", ""]
    rows = []
    for name, measured in result.measured.items():
        problems = [verdict for verdict in failed(result) if verdict.check == name]
        state = "error" if any(v.level is Level.ERROR for v in problems) else "warning" if problems else "ok"
        rows.append([markdown_literal(name), *[amount(metric, measured.total.get(metric)) for metric in METRICS],
                     state])  # fmt: skip
    parts += [markdown_table(["Check", "Params", "MACs", "Latency", "Status"], rows, {1, 2, 3}), ""]
    for verdict in failed(result):
        where = f"{result.source}:{verdict.line}" if verdict.line else result.source
        # a code span cannot escape a backtick: the location and the message are escaped text instead
        parts.append(f"- **{_level_word(verdict)}** {markdown_literal(where)}: {markdown_literal(describe(verdict))}")
    return "\n".join(parts).rstrip() + "\n"


def to_junit(result: BudgetResult) -> str:
    """JUnit XML: one test case per limit; a failed error-level limit is a failure, a warning is only noted."""
    suites = ElementTree.Element("testsuites", name="convcost check")
    by_check: dict[str, list[LimitVerdict]] = {}
    for verdict in result.verdicts:
        by_check.setdefault(verdict.check, []).append(verdict)
    for check, verdicts in by_check.items():
        failures = sum(not v.passed and v.level is Level.ERROR for v in verdicts)
        suite = ElementTree.SubElement(
            suites, "testsuite", name=check, tests=str(len(verdicts)), failures=str(failures), errors="0"
        )
        for verdict in verdicts:
            name = f"{verdict.subject} {verdict.metric} {verdict.rule}"
            case = ElementTree.SubElement(suite, "testcase", classname=f"convcost.{check}", name=name)
            case.attrib.update(file=result.source, line=str(verdict.line or 0))
            if verdict.passed:
                continue
            if verdict.level is Level.ERROR:
                failure = ElementTree.SubElement(case, "failure", message=describe(verdict), type=verdict.rule)
                failure.text = describe(verdict)
            else:
                ElementTree.SubElement(case, "system-out").text = f"warning: {describe(verdict)}"
    suites.set("tests", str(len(result.verdicts)))
    suites.set("failures", str(sum(not v.passed and v.level is Level.ERROR for v in result.verdicts)))
    # XML 1.0 cannot carry most control characters at all (not even as &#..;): every text is made visible
    for element in suites.iter():
        if element.text:
            element.text = visible(element.text)
        for key, value in element.attrib.items():
            element.set(key, visible(value))
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def to_json_text(result: BudgetResult) -> str:
    return to_json(result.to_dict())
