"""The old path of LatencySettings (README before the role folders): a façade."""

from convcost.run.latency import LatencySettings as LatencySettings
