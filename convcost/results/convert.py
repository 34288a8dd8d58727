"""What a conversion did and what ``suggest`` proposes: plain dataclasses with ``to_dict()`` (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convcost.cost.roofline import record
from convcost.results.comparison import LatencyStats

# said by every suggest and convert result: a factorised layer is a different function
DIFFERENT_FUNCTION = (
    "a factorised layer computes a different function unless its error is 0: re-establish accuracy by "
    "fine-tuning; the error column is how far the initialisation from the trained weights starts from the original"
)


@dataclass
class ConvertedLayer:
    """One conv (or depthwise + 1×1 pair) and its replacement.

    ``weight_error``: relative Frobenius error ‖W − W′‖ / ‖W‖ of the replacement's effective kernel W′ against the
    original W (0 when exact); None with ``error_note`` saying why (grouped: no exact initialisation exists).
    ``shape``: the input shape the conv saw (None without an input); MACs are None then too.
    """

    name: str
    kind: str
    cin: int
    cout: int
    kernel: tuple[int, int]
    shape: tuple[int, ...] | None
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    weight_error: float | None
    error_note: str | None = None
    code: str = ""
    latency_before: LatencyStats | None = None
    latency_after: LatencyStats | None = None
    selected: bool = True

    @property
    def saving(self) -> float | None:
        """MACs now ÷ after."""
        if self.macs_before is None or not self.macs_after:
            return None
        return self.macs_before / self.macs_after

    def to_dict(self) -> dict[str, Any]:
        return {
            **record(self, "name kind cin cout kernel"),
            "input_shape": list(self.shape) if self.shape is not None else None,
            **record(self, "params_before params_after macs_before macs_after saving weight_error error_note selected"),
            **record(self, "latency_before latency_after code"),
        }


@dataclass(frozen=True)
class Refused:
    """A layer that was not converted, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class ModelFigures:
    """A whole model's params and MACs (MACs None without an input)."""

    params: int
    macs: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "macs": self.macs}


@dataclass
class ConvertResult:
    """``convert``'s result: ``model`` is a new nn.Module (typed Any: results never import torch), the input model
    untouched; ``layers`` the converted layers in the model's order, ``refused`` what could not be converted."""

    model: Any
    target: str
    layers: list[ConvertedLayer]
    refused: list[Refused] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""
    input_shape: tuple[int, ...] | None = None
    before: ModelFigures | None = None
    after_all: ModelFigures | None = None
    after_selected: ModelFigures | None = None
    min_saving: float | None = None
    converted: bool = False  # convert's result (only the converted layers), not suggest's (every candidate)

    def to_dict(self) -> dict[str, Any]:
        return {
            **record(self, "source target converted input_shape min_saving"),
            "totals": {
                "now": self.before.to_dict() if self.before else None,
                "all_applied": self.after_all.to_dict() if self.after_all else None,
                "selected_applied": self.after_selected.to_dict() if self.after_selected else None,
            },
            **record(self, "layers refused notes"),
        }
