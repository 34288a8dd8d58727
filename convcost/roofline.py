"""The old path of the pure roofline arithmetic (README before the role folders): a façade, no torch."""

from convcost.cost.roofline import analyse as analyse
from convcost.cost.roofline import combine as combine
from convcost.results.roofline import annotate as annotate
