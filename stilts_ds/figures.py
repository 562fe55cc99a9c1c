"""PNG figures without pyplot: an Agg canvas per figure (no global backend, no display), a
grid of panels, and the rendered bytes (written atomically by the reports that use them).

    fig, axes = panels(3, panel_w=5.2, panel_h=3.8)      # up to 3 columns, spare panels hidden
    fig = figure((7, 4.5)); ax = fig.add_subplot(1, 1, 1)
    data = png(fig, bbox_inches="tight")                  # savefig's keyword arguments
"""
from __future__ import annotations

import io
import math


def figure(figsize: tuple[float, float], dpi: float | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def panels(n_panels: int, panel_w: float, panel_h: float, max_cols: int = 3):
    """(figure, the first ``n_panels`` axes of a grid at most ``max_cols`` wide)."""
    cols = max(1, min(max_cols, n_panels))
    nrows = max(1, math.ceil(n_panels / cols))
    fig = figure((panel_w * cols, panel_h * nrows + 0.6), dpi=100)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def png(fig, **savefig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    return buf.getvalue()
