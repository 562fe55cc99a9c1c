"""PNG figures without pyplot: an Agg canvas per figure (no global backend, no display), a
grid of panels, and the rendered bytes (written atomically by the reports that use them).

    fig, axes = panels(3, panel_w=5.2, panel_h=3.8)      # up to 3 columns, spare panels hidden
    fig = figure((7, 4.5)); ax = fig.add_subplot(1, 1, 1)
    data = png(fig, bbox_inches="tight")                  # savefig's keyword arguments

and the rules of the study report's scatter plots (see below): ``value_limits`` (an axis no
narrower than the error bars or ``min_span``), ``frontier_line`` (the Pareto frontier as a
visible staircase), ``place_labels`` (point labels that overlap nothing, placed
deterministically; ``text_box`` measures one the way the tests do).
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


# ----------------------------------------------------------------------------- honest scatter plots
# The report's scatter plots share three rules, kept here so every plot follows them the same
# way and the tests can check them on the figure itself:
#
#   lo, hi = value_limits(values, lows, highs, min_span=4.0)   # never narrower than the bars
#   line = frontier_line(ax, xs, ys, front, x_better="lower")   # cost on x: lower is better
#   labels, unplaced = place_labels(ax, xs, ys, texts)        # after the layout is final
#
# ``place_labels`` must run after the axes limits and the layout are final (tight_layout,
# legend): it measures text in display coordinates, and a later layout change would move the
# points under the labels.

POINT_LABEL = "point-label"    # gid of every label place_labels draws (tests find them by it)
FRONTIER = "pareto-frontier"   # gid of the frontier line

# Offsets tried for a label, in points, ring by ring: the first that neither leaves the axes
# nor touches a placed label, a point or the legend wins. The order is fixed, so the same data
# always gives the same picture.
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_RINGS = (5, 12, 22, 34, 48, 64, 82, 102)
_MARKER_PX = 5.0  # half the side of the box kept free around each point


def value_limits(values, lows=(), highs=(), *, min_span: float = 4.0, pad: float = 0.1,
                 bounds: tuple[float | None, float | None] = (None, None)) -> tuple[float, float]:
    """Axis limits that show every value and every error bar end, at least ``min_span`` wide
    (centred on the data: 4 points of a 0-100 score, so noise does not look like an effect),
    padded by ``pad`` of the span on each side, then clipped to ``bounds`` where that cuts
    nothing off (a score axis need not go below 0)."""
    ends = [float(v) for v in (*values, *lows, *highs) if v is not None]
    if not ends:
        return (0.0, 1.0)
    lo, hi = min(ends), max(ends)
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    margin = (hi - lo) * pad
    lo, hi = lo - margin, hi + margin
    low_bound, high_bound = bounds
    if low_bound is not None and min(ends) >= low_bound:
        lo = max(lo, low_bound)
    if high_bound is not None and max(ends) <= high_bound:
        hi = min(hi, high_bound)
    return lo, hi


def frontier_line(ax, xs, ys, front, *, x_better: str = "higher", **style):
    """Draw the Pareto frontier of ``front`` (indices into xs/ys) as a staircase through its
    points: the edge of the region they dominate, so a frontier of one point is still a
    visible line (it runs to the axis edge the point is better towards on x). Along x the
    frontier's y moves one way only, whichever way y is better, so the steps need only
    ``x_better``. Returns the Line2D, whose vertices include every frontier point."""
    pts = sorted((float(xs[i]), float(ys[i])) for i in front)
    if not pts:
        return None
    x_lo, x_hi = ax.get_xlim()
    verts = []
    if x_better == "higher":
        # Beaten by nothing to the right: the step runs in from the left edge, then each
        # point's value holds until the next point.
        verts.append((x_lo, pts[0][1]))
        for (x, y), nxt in zip(pts, pts[1:] + [None]):
            verts.append((x, y))
            if nxt is not None:
                verts.append((x, nxt[1]))
    else:
        for (x, y), nxt in zip(pts, pts[1:] + [None]):
            verts.append((x, y))
            verts.append((nxt[0], y) if nxt is not None else (x_hi, y))
    kw = {"color": "black", "linewidth": 1.6, "linestyle": "--", "label": "Pareto frontier", "zorder": 1}
    kw.update(style)
    (line,) = ax.plot([v[0] for v in verts], [v[1] for v in verts], gid=FRONTIER, **kw)
    ax.set_xlim(x_lo, x_hi)  # the staircase runs to the edge; it must not widen the axis
    return line


def _overlaps(box, others, pad: float = 1.0) -> bool:
    return any(box.x0 < o.x1 + pad and o.x0 < box.x1 + pad and box.y0 < o.y1 + pad and o.y0 < box.y1 + pad
               for o in others)


def text_box(text, renderer):
    """The display-space box of a label's text alone (an Annotation's own extent also covers
    its leader line)."""
    from matplotlib.text import Text

    if hasattr(text, "update_positions"):  # an Annotation places its text only when drawn
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def _obstacles(ax, artist, renderer) -> list:
    """Display boxes an artist covers: a line or line collection (a frontier, error bars) one
    thin box per segment, so a label may sit beside a staircase but not on it; anything else
    (a legend) its extent."""
    from matplotlib.collections import LineCollection
    from matplotlib.container import Container
    from matplotlib.lines import Line2D
    from matplotlib.transforms import Bbox

    if artist is None:
        return []
    if isinstance(artist, Container):
        return [b for child in artist.get_children() for b in _obstacles(ax, child, renderer)]
    if isinstance(artist, (Line2D, LineCollection)):
        paths = ([artist.get_xydata()] if isinstance(artist, Line2D)
                 else [seg for seg in artist.get_segments()])
        boxes = []
        for verts in paths:
            pts = ax.transData.transform(verts)
            for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
                boxes.append(Bbox.from_extents(min(x0, x1) - 1.5, min(y0, y1) - 1.5, max(x0, x1) + 1.5,
                                               max(y0, y1) + 1.5))
        return boxes
    return [artist.get_window_extent(renderer)]


def place_labels(ax, xs, ys, texts, *, fontsize: float = 7.0, avoid=(), colors=None):
    """Label each point (xs[i], ys[i]) with texts[i] where the label overlaps no other label,
    no point and nothing in ``avoid`` (the frontier line, error bars, a legend), inside the axes; a label
    away from its point gets a thin leader line. Deterministic: the offsets are tried in a
    fixed order. A label that fits nowhere is not drawn: its index is returned in
    ``unplaced`` for the caller to list elsewhere (a legend or key), never drawn over another.
    ``colors``: one text colour per label (its point's), else black. Returns (annotations,
    unplaced indices)."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for x, y in zip(xs, ys):
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - _MARKER_PX, py - _MARKER_PX, px + _MARKER_PX, py + _MARKER_PX))
    for artist in avoid:
        taken += _obstacles(ax, artist, renderer)
    placed, unplaced = [], []
    for i, (x, y, label) in enumerate(zip(xs, ys, texts)):
        color = colors[i] if colors is not None else "black"
        for ring, radius in enumerate(_RINGS):
            done = False
            for dx, dy in _DIRECTIONS:
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
                ann = ax.annotate(label, (x, y), xytext=(dx * radius, dy * radius), textcoords="offset points",
                                  ha=ha, va=va, fontsize=fontsize, gid=POINT_LABEL, annotation_clip=False,
                                  color=color,
                                  arrowprops=({"arrowstyle": "-", "color": "0.5", "linewidth": 0.6,
                                               "shrinkA": 0, "shrinkB": 2} if ring > 1 else None))
                box = text_box(ann, renderer)
                inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1)
                if inside and not _overlaps(box, taken):
                    taken.append(box)
                    placed.append(ann)
                    done = True
                    break
                ann.remove()
            if done:
                break
        else:
            unplaced.append(i)
    return placed, unplaced
