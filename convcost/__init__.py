"""convcost: what replacing a Conv2d with a separable, grouped or spatially separable one saves, checked.

The Python API returns result objects and never prints::

    from convcost import compare, parse_compare
    result = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3}), latency=None)
    result.dense.macs, result.alternatives[0].macs

    import convcost
    convcost.count(my_model, (3, 224, 224)).total.macs  # an nn.Module instance, never modified
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convcost.version import __version__

__all__ = [
    "CompareSpec",
    "Comparison",
    "DType",
    "LatencySettings",
    "LayerKind",
    "ModelResult",
    "SpecError",
    "__version__",
    "calibration_for",
    "compare",
    "convert",
    "count",
    "estimate",
    "evaluate_batch",
    "load_batch",
    "parse_compare",
    "suggest",
]

if TYPE_CHECKING:
    from convcost.errors import SpecError
    from convcost.results.comparison import Comparison
    from convcost.results.model import ModelResult
    from convcost.run.batch import evaluate as evaluate_batch
    from convcost.run.calibrate import calibration_for
    from convcost.run.comparison import compare
    from convcost.run.context import LatencySettings
    from convcost.run.convert import convert
    from convcost.run.estimate import estimate
    from convcost.run.instance import count
    from convcost.run.suggest import suggest
    from convcost.spec.batch import load_batch
    from convcost.spec.compare import CompareSpec, DType, LayerKind
    from convcost.spec.kinds import parse_compare

# the documented names (README, Python API) → (module, name there); the modules move, these names stay
_LAZY = {
    "compare": "convcost.run.comparison",
    "estimate": "convcost.run.estimate",
    "evaluate_batch": "convcost.run.batch:evaluate",
    "load_batch": "convcost.spec.batch",
    "calibration_for": "convcost.run.calibrate",
    "DType": "convcost.spec.compare",
    "SpecError": "convcost.errors",
    "LatencySettings": "convcost.run.context",
    "Comparison": "convcost.results.comparison",
    "CompareSpec": "convcost.spec.compare",
    "LayerKind": "convcost.spec.compare",
    "parse_compare": "convcost.spec.kinds",
    "convert": "convcost.run.convert",
    "suggest": "convcost.run.suggest",
    "count": "convcost.run.instance",
    "ModelResult": "convcost.results.model",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import convcost` (and so `convcost --help`) must not import torch.
    import importlib

    if name in ("batch", "calibrate", "comparison", "latency", "roofline"):  # the old modules' paths, now façades
        return importlib.import_module(f"convcost.{name}")
    if name in _LAZY:
        module, _, attribute = _LAZY[name].partition(":")
        return getattr(importlib.import_module(module), attribute or name)
    raise AttributeError(f"module 'convcost' has no attribute {name!r}")
