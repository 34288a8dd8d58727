"""Evaluating a batch file's entries in order: one comparison each, a failing entry never stopping the others."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from convcost.errors import ConvcostError, FieldIssue, SpecError, UsageError
from convcost.results.batch import BatchResult, EntryResult, Status
from convcost.spec.batch import Batch

if TYPE_CHECKING:
    from convcost.cost.roofline import Calibration
    from convcost.run.latency import LatencySettings
    from convcost.spec.compare import CompareSpec


def run(
    batch: Batch,
    latency_settings: LatencySettings | None = None,
    *,
    measure: bool = True,
    calibration: Callable[[CompareSpec], Calibration | None] | None = None,
    threads: int | None = None,
) -> Iterator[EntryResult]:
    """Evaluate the entries in order, yielding each outcome as soon as it is known.

    ``measure=False`` evaluates by formula alone (no forward pass, no counters, no latency). ``calibration``
    gives the machine's peaks for an entry's device and dtype, for its roofline verdicts.
    A failing entry never stops the others; KeyboardInterrupt does propagate, and whatever was yielded before it
    can still be reported with :func:`collect`.
    """
    from convcost.run.context import RunContext
    from convcost.run.estimate import estimate

    RunContext(threads=1 if threads is None else threads)  # a bad count: the call's SpecError, not each entry's
    for entry in batch.entries:
        if entry.spec is None:
            yield EntryResult(entry.index, entry.name, entry.line, Status.INVALID, issues=entry.issues)
            continue
        index, name, line = entry.index, entry.name, entry.line
        try:
            if measure:
                from convcost.run.comparison import compare  # torch: only when something is measured

                peaks = calibration(entry.spec) if calibration is not None else None
                comparison = compare(entry.spec, latency_settings, peaks, threads)
            else:
                comparison = estimate(entry.spec)
        except SpecError as error:
            issues = [FieldIssue(("layers", index, *issue.loc), issue.message, line) for issue in error.issues]
            yield EntryResult(index, name, line, Status.INVALID, issues=issues)
        except UsageError as error:
            issue = FieldIssue(("layers", index), str(error), line)
            yield EntryResult(index, name, line, Status.INVALID, issues=[issue])
        except ConvcostError as error:
            yield EntryResult(index, name, line, Status.ERROR, error=str(error))
        except Exception as error:  # one entry's crash must not lose the others
            message = f"internal error: {type(error).__name__}: {error}"
            yield EntryResult(index, name, line, Status.ERROR, error=message, exception=error)
        else:
            status = Status.OK if comparison.ok else Status.FAILED
            yield EntryResult(index, name, line, status, comparison=comparison)


def collect(batch: Batch, done: Iterable[EntryResult], interrupted: bool = False) -> BatchResult:
    """A BatchResult from the outcomes so far; entries without one are marked 'not run'."""
    finished = {result.index: result for result in done}
    entries = [
        finished.get(entry.index) or EntryResult(entry.index, entry.name, entry.line, Status.NOT_RUN)
        for entry in batch.entries
    ]
    return BatchResult(batch.source, batch.version, entries, interrupted)


def evaluate(
    batch: Batch, latency_settings: LatencySettings | None = None, *, measure: bool = True, threads: int | None = None
) -> BatchResult:
    """Evaluate every entry (no latency when ``latency_settings`` is None; formula only when not ``measure``)."""
    return collect(batch, run(batch, latency_settings, measure=measure, threads=threads))
