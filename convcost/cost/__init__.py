"""Pure integer maths, no torch: per-op formulas, bytes, roofline arithmetic and timing statistics."""
