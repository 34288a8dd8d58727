"""What ``convcost check`` finds: each check's figures, and one verdict per limit held against a figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from convcost.cost.roofline import record

if TYPE_CHECKING:
    from convcost.results.batch import BatchResult
    from convcost.results.comparison import Environment
    from convcost.results.model import ModelResult

SCHEMA_VERSION = 1  # of the JSON result
METRICS = ("params", "macs", "latency_ms")  # the figures a check measures and a budget limits
NOT_RUN = "not run"  # the rule of a check whose model's code raised: bad input (exit 2), the other checks reported


class Level(StrEnum):
    ERROR = "error"
    WARN = "warn"


@dataclass
class Figures:
    params: float | None
    macs: float | None
    latency_ms: float | None
    latency_doubt: str = ""  # why the latency alone cannot decide a limit (unconverged, busy machine); "" if it can
    latency_interval: tuple[float, float] | None = None  # its 95% interval, from 2 rounds on (1 has none)
    uncounted: str = ""  # the ops whose MACs have no formula: not in ``macs``, which then decides no limit

    def get(self, metric: str) -> float | None:
        value: float | None = getattr(self, metric)
        return value

    def to_dict(self) -> dict[str, float | None]:
        return {metric: self.get(metric) for metric in METRICS}


@dataclass
class Measured:
    """A check's figures: the whole and each named part (layers of a model, entries of a batch)."""

    total: Figures
    parts: dict[str, Figures]
    environment: Environment | None
    problems: list[str] = field(default_factory=list)  # e.g. batch entries that failed
    model: ModelResult | None = None
    batch: BatchResult | None = None
    incomplete: str = ""  # why the total is not measured (a batch whose entries failed)

    @property
    def measured_latency(self) -> bool:
        return self.total.latency_ms is not None or any(part.latency_ms is not None for part in self.parts.values())


@dataclass(frozen=True)
class LimitVerdict:
    """One limit held against one figure."""

    check: str
    subject: str  # "model", "layer sep7.1", "entry block3"
    metric: str  # params | macs | latency_ms | "match" | "model" | "baseline"
    rule: str  # "max", "growth", "no match", "failed", "environment"
    level: Level
    passed: bool
    line: int | None
    expected: float | None = None  # the limit (max, or baseline × (1 + tolerance))
    found: float | None = None
    baseline: float | None = None
    tolerance_pct: float | None = None
    message: str = ""

    @property
    def excess(self) -> float | None:
        if self.expected is None or self.found is None:
            return None
        return self.found - self.expected

    @property
    def excess_pct(self) -> float | None:
        if self.excess is None or not self.expected:
            return None
        return 100.0 * self.excess / self.expected

    def to_dict(self) -> dict[str, Any]:
        return record(self, _VERDICT_KEYS)


_VERDICT_KEYS = (
    "check subject metric rule level passed line expected found excess excess_pct baseline tolerance_pct message"
)


@dataclass
class BudgetResult:
    source: str
    verdicts: list[LimitVerdict]
    measured: dict[str, Measured]
    environment: Environment | None
    baseline_path: str | None = None
    baseline_written: bool = False
    formula_only: bool = False  # by formula alone: nothing built or run, so no latency and no counter checks
    convention: str = "convcost"  # the MAC convention of the models' macs (convcost.cost.conventions)

    @property
    def errors(self) -> list[LimitVerdict]:
        return [item for item in self.verdicts if not item.passed and item.level is Level.ERROR]

    @property
    def warnings(self) -> list[LimitVerdict]:
        return [item for item in self.verdicts if not item.passed and item.level is Level.WARN]

    @property
    def not_run(self) -> list[LimitVerdict]:
        return [item for item in self.verdicts if item.rule == NOT_RUN]

    @property
    def ok(self) -> bool:
        """Every error-level limit holds (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        checks = len(self.measured)
        passed = sum(item.passed for item in self.verdicts)
        limits = len(self.verdicts)
        return (
            f"{checks} check{'s' if checks != 1 else ''}, {limits} limit{'s' if limits != 1 else ''}: {passed} passed, "
            f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}, "
            f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}"
            + (" (by formula: nothing built or run)" if self.formula_only else "")
            + (f" (MACs by {self.convention}'s convention)" if self.convention != "convcost" else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            **record(self, "source ok"),
            "summary": self.summary(),
            "convention": self.convention,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "baseline": self.baseline_path,
            "baseline_written": self.baseline_written,
            **record(self, "environment verdicts"),
            "measured": {
                name: {**item.total.to_dict(), "problems": item.problems} for name, item in self.measured.items()
            },
        }
