"""The old path of batch files and their evaluation (README before the role folders): a façade."""

from convcost.run.batch import evaluate as evaluate
from convcost.spec.batch import load_batch as load_batch
