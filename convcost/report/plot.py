"""The sweep plot: MAC ratio against measured speedup (matplotlib, an optional extra: ``convcost[plot]``)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from convcost.errors import UsageError
from convcost.report.format import threads_text
from convcost.results.comparison import Sweep
from convcost.spec.files import write_atomic

SUFFIXES = (".png", ".svg")
INSTALL_HINT = "pip install 'convcost[plot]'"


def check_plot_path(path: Path) -> None:
    """Refuse, before any measuring, a plot that cannot be written: wrong suffix or no matplotlib."""
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--plot: name the file .png or .svg, got {path.name!r}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            f"--plot: matplotlib is not installed: {INSTALL_HINT}, or leave out --plot for the table alone"
        ) from None


def plot_sweep(sweep: Sweep, path: Path) -> None:
    """Write the log-log plot of measured speedup (and the roofline's prediction) against the MAC ratio."""
    check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    try:
        measured = [point for point in sweep.points if point.speedup is not None]
        kernels = sorted({point.kernel for point in sweep.points})
        colours = plt.get_cmap("viridis")
        markers = dict(zip(sorted({point.vs for point in sweep.points}), "osD^v<>", strict=False))
        for index, kernel in enumerate(kernels):
            colour = colours(0.85 * index / max(1, len(kernels) - 1))  # viridis' last yellow is unreadable on white
            for vs, marker in markers.items():
                chosen = [point for point in measured if point.kernel == kernel and point.vs == vs]
                if not chosen:
                    continue
                label = f"{vs} {kernel[0]}×{kernel[1]}"
                axes.scatter([p.macs_ratio for p in chosen], [p.speedup or 0.0 for p in chosen], color=colour,
                             marker=marker, label=f"{label} measured", zorder=3)  # fmt: skip
                predicted = [p for p in chosen if p.roofline_speedup is not None]
                if predicted:
                    axes.scatter([p.macs_ratio for p in predicted], [p.roofline_speedup or 0.0 for p in predicted],
                                 facecolors="none", edgecolors=colour, marker=marker, label=f"{label} roofline",
                                 zorder=2)  # fmt: skip
        ratios = [point.macs_ratio for point in sweep.points if point.macs_ratio > 0]
        low, high = min([1.0, *ratios]), max([1.0, *ratios])
        axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="speedup = MAC ratio")
        axes.axhline(1.0, color="grey", linewidth=0.5)
        axes.set_xscale("log")
        axes.set_yscale("log")
        from matplotlib.ticker import FuncFormatter

        def tick(value: float, _: object, minor: bool) -> str:
            # "2×", not matplotlib's "2×10⁰"; between decades only 2, 3 and 5, so labels never collide
            if value <= 0:
                return ""
            leading = value / 10 ** math.floor(math.log10(value) + 1e-9)
            return f"{value:g}×" if not minor or round(leading) in (2, 3, 5) else ""

        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda value, position: tick(value, position, False)))
            axis.set_minor_formatter(FuncFormatter(lambda value, position: tick(value, position, True)))
        axes.set_xlabel("MAC ratio (dense ÷ alternative)")
        axes.set_ylabel("speedup (dense latency ÷ alternative latency)")
        env = sweep.environment
        axes.set_title(f"convcost sweep · {env.device} {env.dtype} · {threads_text(env.threads)}", fontsize=10)
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend(fontsize=7, loc="upper left")
        figure.tight_layout()
        image = io.BytesIO()
        figure.savefig(image, format=path.suffix.lower().lstrip("."))
        write_atomic(path, image.getvalue())  # the one writer: a symlink followed, a reader never sees half a file
    finally:
        plt.close(figure)
