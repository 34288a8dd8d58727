"""What a batch run gives: each entry's outcome (its comparison, or why there is none) and the totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from convcost.cost.roofline import record
from convcost.errors import FieldIssue, SpecError
from convcost.results.comparison import Comparison

# 2: rows gained speedup_low, speedup_high, speedup_typical, converged, busy; latency figures are best figures
RESULT_SCHEMA_VERSION = 2


class Status(StrEnum):
    """What became of one entry."""

    OK = "ok"
    FAILED = "failed"  # measured, but a shape mismatch or a counter disagreement
    INVALID = "invalid"  # not run: the entry is wrong
    ERROR = "error"  # the measurement itself failed
    NOT_RUN = "not run"  # interrupted before its turn


@dataclass
class EntryResult:
    """One entry's outcome: its comparison, or why there is none."""

    index: int
    name: str
    line: int | None
    status: Status
    comparison: Comparison | None = None
    issues: list[FieldIssue] = field(default_factory=list)  # INVALID: what is wrong, with lines
    error: str | None = None  # ERROR: what went wrong
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def problems(self, source: str) -> list[str]:
        """One line per problem: ``file:line: field: message`` or ``file:line: name: what failed``."""
        if self.status is Status.INVALID:
            return SpecError(self.issues, source).lines()
        where = f"{source}:{self.line}" if self.line else source
        if self.status is Status.ERROR:
            return [f"{where}: {self.name}: {self.error}"]
        if self.comparison is not None:
            return [f"{where}: {self.name}: {failure}" for failure in self.comparison.failures]
        return []

    def rows(self) -> list[dict[str, Any]]:
        """Summary rows: one per alternative (or one empty row when there is no comparison)."""
        base = record(self, "index name line status")
        if self.comparison is None:
            return [base]
        comparison, dense = self.comparison, self.comparison.dense
        rows = []
        for layer, ratio in zip(comparison.alternatives, comparison.ratios, strict=True):
            rows.append({
                **base,
                "vs": layer.kind,
                "input_shape": list(dense.input_shape),
                "dense_output_shape": list(dense.output_shape),
                "output_shape": list(layer.output_shape),
                "shapes_match": ratio.shape_match,
                "checks_ok": dense.ok and layer.ok,
                **{key: getattr(item, name) for name in ("params", "macs", "other_ops")  # dense_params, params, ...
                   for key, item in ((f"dense_{name}", dense), (name, layer))},
                "ratio_params": ratio.params,
                "ratio_macs": ratio.macs,
                "dense_latency_ms": dense.latency.shown_ms if dense.latency else None,
                "latency_ms": layer.latency.shown_ms if layer.latency else None,
                "speedup": ratio.latency,
                "speedup_low": ratio.latency_interval[0] if ratio.latency_interval else None,
                "speedup_high": ratio.latency_interval[1] if ratio.latency_interval else None,
                "speedup_typical": ratio.latency_typical,
                "converged": ratio.latency_converged,
                "busy": None if comparison.environment.contention is None else comparison.environment.contention.busy,
            })  # fmt: skip
        return rows

    def to_dict(self, source: str, detail: bool = False) -> dict[str, Any]:
        return {
            **record(self, "index name line status"),
            "spec": None if self.comparison is None else self.comparison.spec,
            "rows": [row for row in self.rows() if "vs" in row],
            "problems": self.problems(source),
            **(record(self, "comparison") if detail else {}),
        }


@dataclass(frozen=True)
class KindTotals:
    """Sums over the entries that passed, for one alternative kind."""

    vs: str
    entries: int
    dense_params: int
    params: int
    dense_macs: int
    macs: int
    dense_other_ops: int
    other_ops: int
    dense_latency_ms: float | None  # None unless every entry has latency
    latency_ms: float | None

    @property
    def ratio_params(self) -> float:
        return self.dense_params / self.params if self.params else float("inf")

    @property
    def ratio_macs(self) -> float:
        return self.dense_macs / self.macs if self.macs else float("inf")

    @property
    def speedup(self) -> float | None:
        if self.dense_latency_ms is None or not self.latency_ms:
            return None
        return self.dense_latency_ms / self.latency_ms

    def to_dict(self) -> dict[str, Any]:
        return record(self, _TOTALS_KEYS)


_TOTALS_KEYS = (
    "vs entries dense_params params dense_macs macs dense_other_ops other_ops ratio_params ratio_macs "
    "dense_latency_ms latency_ms speedup"
)


@dataclass
class BatchResult:
    """Every entry's outcome, in file order; ``interrupted`` when Ctrl-C stopped the run part-way."""

    source: str
    version: int
    entries: list[EntryResult]
    interrupted: bool = False

    def count(self, status: Status | str) -> int:
        wanted = Status(status)
        return sum(entry.status is wanted for entry in self.entries)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(entry.status is Status.OK for entry in self.entries)

    @property
    def problems(self) -> list[str]:
        return [line for entry in self.entries for line in entry.problems(self.source)]

    @property
    def totals(self) -> list[KindTotals]:
        """Per alternative kind, sums over the entries with status ok (a failed entry is not a replacement)."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for entry in self.entries:
            if entry.status is Status.OK:
                for row in entry.rows():
                    rows.setdefault(row["vs"], []).append(row)
        totals = []
        for vs, items in rows.items():
            timed = all(item["latency_ms"] is not None for item in items)
            totals.append(
                KindTotals(
                    vs=vs,
                    entries=len(items),
                    **{key: sum(item[key] for item in items) for key in
                       ("dense_params", "params", "dense_macs", "macs", "dense_other_ops", "other_ops")},
                    dense_latency_ms=sum(item["dense_latency_ms"] for item in items) if timed else None,
                    latency_ms=sum(item["latency_ms"] for item in items) if timed else None,
                )
            )  # fmt: skip
        return totals

    def summary(self) -> str:
        """``4 entries: 3 ok, 1 failed`` (statuses with no entry left out)."""
        counts = [f"{self.count(status)} {status}" for status in Status if self.count(status)]
        total = len(self.entries)
        text = f"{total} entr{'y' if total == 1 else 'ies'}: {', '.join(counts)}"
        return text + (" (interrupted)" if self.interrupted else "")

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            **record(self, "source version ok interrupted"),
            "counts": {str(status): self.count(status) for status in Status},
            **record(self, "totals"),
            "entries": [entry.to_dict(self.source, detail) for entry in self.entries],
            "problems": self.problems,
        }
