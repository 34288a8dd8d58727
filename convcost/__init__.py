"""convcost: what replacing a Conv2d with a separable, grouped or spatially separable one saves, checked.

The Python API returns result objects and never prints::

    from convcost import compare, parse_compare
    result = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3}), latency=None)
    result.dense.macs, result.alternatives[0].macs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CompareSpec",
    "Comparison",
    "LatencySettings",
    "LayerKind",
    "SpecError",
    "__version__",
    "compare",
    "parse_compare",
]

if TYPE_CHECKING:
    from convcost.comparison import compare
    from convcost.errors import SpecError
    from convcost.latency import LatencySettings
    from convcost.results import Comparison
    from convcost.spec import CompareSpec, LayerKind, parse_compare

_LAZY = {
    "compare": "convcost.comparison",
    "SpecError": "convcost.errors",
    "LatencySettings": "convcost.latency",
    "Comparison": "convcost.results",
    "CompareSpec": "convcost.spec",
    "LayerKind": "convcost.spec",
    "parse_compare": "convcost.spec",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import convcost` (and so `convcost --help`) must not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convcost' has no attribute {name!r}")
