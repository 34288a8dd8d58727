"""The old path of calibration_for (README before the role folders): a façade."""

from convcost.run.calibrate import calibration_for as calibration_for
