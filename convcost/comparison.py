"""The old path of compare (the façade's source before the role folders): a façade."""

from convcost.run.comparison import compare as compare
