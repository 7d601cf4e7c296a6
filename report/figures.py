"""The report's charts, drawn with matplotlib into inline SVG strings.

Three chart kinds cover the report:

- :func:`line_chart`: several series over a numeric (or categorical) x axis, each
  with an optional confidence interval (a shaded band, or error bars with
  ``Series.bars``), single estimates with their interval (:class:`Point`), plus
  horizontal / vertical reference lines;
- :func:`bar_chart`: grouped vertical bars per category with optional error bars;
- :func:`interval_chart`: horizontal dot-and-whisker rows (estimate with CI per row
  label, several series offset within a row), filled dots for flagged values.

Every chart returns one ``<svg>`` string ready to be placed in an HTML page: the
XML prolog, DOCTYPE and namespace declarations are dropped (the HTML parser puts
inline SVG in its namespace), the root carries ``class="chart"``, ``role="img"``,
a ``viewBox`` and ``aria-labelledby`` pointing at a ``<title>`` and a ``<desc>``
inserted after rendering, and every id is prefixed with the chart's ``uid`` so
several charts can share a page. Output is byte-for-byte deterministic: a fixed
``svg.hashsalt``, no metadata, no dates. Text stays text (``svg.fonttype: none``),
drawn in the system's sans-serif font, so it is searchable and needs no font file.

Missing values (None, NaN, ±inf) are skipped: lines break there instead of
dropping to zero. Colours are the Okabe–Ito palette, distinguishable with the
common forms of colour blindness; series can also differ by dash pattern.
Artists carry ids (``<uid>-line-<i>``, ``<uid>-band-<i>``, ``<uid>-ebar-<i>-<k>``,
``<uid>-point-<i>``, ``<uid>-pointerr-<i>-<k>``, ``<uid>-bar-<j>-<i>``,
``<uid>-err-<j>-<k>``, ``<uid>-ci-<j>-<k>``, ``<uid>-filled-<j>``, ``<uid>-hollow-<j>``)
so tests can find them.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .fmt import finite

__all__ = [
    "PALETTE",
    "DASHES",
    "Series",
    "BarSeries",
    "IntervalSeries",
    "Point",
    "RefLine",
    "line_chart",
    "bar_chart",
    "interval_chart",
    "group_styles",
]

# Okabe & Ito (2008), "Color Universal Design"; yellow last (low contrast on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
DASHES = ("", "7 4", "2 3", "9 3 2 3")
GREY = "#6b6b6b"
FONT_SIZE = 10.0
CHAR_W = 0.58  # average glyph width / font size, for legend layout estimates

#: matplotlib settings of every chart (applied with ``rc_context``, never globally)
RC: dict[str, Any] = {
    "svg.hashsalt": "latent-bias-probe",  # deterministic clip-path / marker ids
    "svg.fonttype": "none",  # text as <text>: system font, searchable, no glyph outlines
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": FONT_SIZE,
    "text.parse_math": False,  # a "$" in a group name is text, not mathtext
    "axes.unicode_minus": True,
    "lines.scale_dashes": False,  # dash lengths in points, whatever the line width
    "lines.solid_joinstyle": "round",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#333333",
    "axes.labelcolor": "#222222",
    "axes.labelsize": FONT_SIZE,
    "axes.axisbelow": True,
    "axes.facecolor": "#ffffff",
    "figure.facecolor": "#ffffff",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "xtick.labelsize": FONT_SIZE,
    "ytick.labelsize": FONT_SIZE,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": FONT_SIZE,
    "legend.handlelength": 2.2,
    "legend.columnspacing": 1.2,
    "legend.borderaxespad": 0.2,
    "figure.constrained_layout.h_pad": 0.04,
    "figure.constrained_layout.w_pad": 0.04,
}
METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


@dataclass
class Series:
    """One line of a :func:`line_chart`; ``lo``/``hi`` draw a shaded band, or error
    bars with caps when ``bars`` is true. ``x_offset`` shifts the series sideways
    (to dodge the error bars of several series at the same categories)."""

    name: str
    x: Sequence[Any]
    y: Sequence[Any]
    lo: Sequence[Any] | None = None
    hi: Sequence[Any] | None = None
    color: str | None = None
    dash: str = ""
    width: float = 2.0
    markers: bool = True
    bars: bool = False
    x_offset: float = 0.0


@dataclass
class Point:
    """One estimate of a :func:`line_chart` with its interval ``[lo, hi]`` drawn as an error bar."""

    name: str
    x: Any
    y: Any
    lo: Any = None
    hi: Any = None
    color: str = "#000000"


@dataclass
class BarSeries:
    """One bar per category of a :func:`bar_chart`; ``lo``/``hi`` draw error bars."""

    name: str
    values: Sequence[Any]
    lo: Sequence[Any] | None = None
    hi: Sequence[Any] | None = None
    color: str | None = None


@dataclass
class IntervalSeries:
    """One estimate per row of an :func:`interval_chart`; ``flagged`` rows get filled dots."""

    name: str
    values: Sequence[Any]
    lo: Sequence[Any]
    hi: Sequence[Any]
    flagged: Sequence[bool] = field(default_factory=list)
    color: str | None = None


@dataclass
class RefLine:
    """A labelled reference line at ``value`` (horizontal or vertical)."""

    value: float
    label: str = ""
    color: str = GREY
    dash: str = "5 4"


# --------------------------------------------------------------------------- helpers


def _nan(v: Any) -> float:
    f = finite(v)
    return math.nan if f is None else f


def _at(seq: Sequence[Any] | None, i: int) -> float:
    return _nan(seq[i]) if seq is not None and i < len(seq) else math.nan


def _dashes(dash: str) -> dict[str, Any]:
    """Line2D keywords for an SVG-style dash pattern ("7 4"; "" = solid)."""
    parts = [float(p) for p in dash.replace(",", " ").split()]
    return {"dashes": tuple(parts)} if parts else {"linestyle": "-"}


def _legend_columns(labels: Sequence[str], width: float) -> int:
    """Columns of a legend below the plot: one row when it fits, else a grid of equal columns."""
    entry = [(2.2 + 0.8) * FONT_SIZE + len(t) * FONT_SIZE * CHAR_W for t in labels]
    gap = 1.2 * FONT_SIZE
    if sum(entry) + gap * (len(entry) - 1) <= width - 8:
        return max(1, len(labels))
    return max(1, int((width - 8 + gap) // (max(entry) + gap)))


def _legend_height(n: int, cols: int) -> float:
    return 0.0 if n == 0 else math.ceil(n / cols) * FONT_SIZE * 1.45 + 6


def _row_major(items: list, cols: int) -> list:
    """Reorder so matplotlib's column-major legend shows ``items`` row by row.

    A race × gender list of groups then lands as one row per race and one column
    per gender when the columns fit.
    """
    rows = math.ceil(len(items) / cols) if items else 0
    return [items[r * cols + c] for c in range(cols) for r in range(rows) if r * cols + c < len(items)]


def _legend(fig: Figure, handles: list, labels: list[str], cols: int) -> None:
    if not handles:
        return
    fig.legend(
        _row_major(handles, cols), _row_major(labels, cols), loc="outside lower left", ncols=cols,
        handler_map={tuple: HandlerTuple(ndivide=1)},
    )


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width / 72, height / 72), dpi=72, layout="constrained")


def _gids(container, prefix: str) -> None:
    """Distinct ids for the artists of an errorbar container: ``<prefix>-<k>``."""
    for k, artist in enumerate(a for a in container.get_children() if a is not None):
        artist.set_gid(f"{prefix}-{k}")


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color=GREY)


_ROOT = re.compile(r"<svg\b[^>]*>")
_VIEWBOX = re.compile(r'viewBox="([^"]+)"')


def _to_svg(fig: Figure, uid: str, title: str, desc: str) -> str:
    """``fig`` as an inline ``<svg>`` element with title, desc and ``uid``-prefixed ids."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=METADATA)
    text = buf.getvalue()
    text = text[text.index("<svg"):].strip()
    root = _ROOT.match(text)
    assert root is not None
    body = text[root.end():]
    box = _VIEWBOX.search(root.group(0))
    view = box.group(1) if box else "0 0 460 300"
    _, _, w, h = (float(v) for v in view.split())
    prefix = escape(uid, quote=True)
    body = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', body)
    body = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", body)
    body = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', body)
    body = re.sub(r"\n[ \t]+", "\n", body)
    head = (
        f'<svg class="chart" viewBox="0 0 {w:g} {h:g}" width="{w:g}" height="{h:g}" role="img" '
        f'aria-labelledby="{prefix}-t {prefix}-d">\n'
        f'<title id="{prefix}-t">{escape(title)}</title>\n'
        f'<desc id="{prefix}-d">{escape(desc or title)}</desc>'
    )
    return head + body


def _label_axes(ax, x_label: str, y_label: str) -> None:
    if x_label:
        ax.set_xlabel(x_label)
    if y_label:
        ax.set_ylabel(y_label)


def _hline_labels(ax, hlines: Sequence[RefLine]) -> None:
    lo, hi = sorted(ax.get_ylim())
    for r in hlines:
        v = finite(r.value)
        if r.label and v is not None and lo <= v <= hi:
            ax.annotate(r.label, xy=(1, v), xycoords=("axes fraction", "data"), xytext=(-3, 3),
                        textcoords="offset points", ha="right", va="bottom", color=r.color, fontsize=FONT_SIZE - 1)


# --------------------------------------------------------------------------- line chart


def line_chart(
    series: Sequence[Series],
    *,
    uid: str,
    title: str,
    desc: str = "",
    x_label: str = "",
    y_label: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
    hlines: Sequence[RefLine] = (),
    vlines: Sequence[RefLine] = (),
    integer_x: bool = False,
    x_categories: Sequence[str] | None = None,
    points: Sequence[Point] = (),
    width: int = 460,
    plot_height: int = 210,
) -> str:
    """Lines (with optional CI bands or error bars) of several series over a shared x axis.

    With ``x_categories`` the x axis is categorical: series give x as the index of
    their category (0, 1, ...) and the ticks are labelled with the category names.
    ``points`` are single estimates drawn on top, each with its interval as an error bar.
    """
    points = [p for p in points if finite(p.x) is not None and finite(p.y) is not None]
    labels = [s.name for s in series] + [p.name for p in points]
    cols = _legend_columns(labels, width)
    height = plot_height + (44 if x_label else 30) + 10 + _legend_height(len(labels), cols)
    handles: list = []
    with matplotlib.rc_context(RC):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        ax.grid(True, axis="y")
        has_data = False
        for i, s in enumerate(series):
            color = s.color or PALETTE[i % len(PALETTE)]
            xs = [_nan(x) + s.x_offset for x in s.x]
            ys = [_at(s.y, k) for k in range(len(xs))]
            band = s.lo is not None and s.hi is not None and not s.bars
            if s.bars and s.lo is not None and s.hi is not None:
                lo = [_at(s.lo, k) for k in range(len(xs))]
                hi = [_at(s.hi, k) for k in range(len(xs))]
                err = [k for k in range(len(xs)) if not (math.isnan(lo[k]) or math.isnan(hi[k]) or math.isnan(xs[k]))]
                if err:
                    _gids(ax.errorbar([xs[k] for k in err], [(lo[k] + hi[k]) / 2 for k in err],
                                      yerr=[abs(hi[k] - lo[k]) / 2 for k in err], fmt="none", ecolor=color,
                                      elinewidth=1.3, capsize=3.5), f"ebar-{i}")
            if band:
                lo = [_at(s.lo, k) for k in range(len(xs))]
                hi = [_at(s.hi, k) for k in range(len(xs))]
                ok = [not (math.isnan(a) or math.isnan(b) or math.isnan(x)) for x, a, b in zip(xs, lo, hi)]
                ax.fill_between(xs, lo, hi, where=ok, color=color, alpha=0.18, linewidth=0, gid=f"band-{i}",
                                interpolate=False)
            pts = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(x) or math.isnan(y))]
            has_data = has_data or bool(pts)
            markers = s.markers and len(xs) <= 60
            ax.plot(xs, ys, color=color, linewidth=s.width, marker="o" if markers else None, markersize=4.8,
                    gid=f"line-{i}", **_dashes(s.dash))
            if not markers:  # an isolated point would vanish without a marker
                lone = [k for k in range(len(xs)) if _isolated(ys, xs, k)]
                if lone:
                    ax.plot([xs[k] for k in lone], [ys[k] for k in lone], linestyle="none", marker="o",
                            markersize=4, color=color, gid=f"lone-{i}")
            line = Line2D([], [], color=color, linewidth=min(s.width, 2.5), **_dashes(s.dash))
            handles.append((Patch(facecolor=color, alpha=0.18), line) if band else line)
        for i, p in enumerate(points):
            lo, hi = _nan(p.lo), _nan(p.hi)
            if not (math.isnan(lo) or math.isnan(hi)):
                _gids(ax.errorbar([_nan(p.x)], [(lo + hi) / 2], yerr=[abs(hi - lo) / 2], fmt="none", ecolor=p.color,
                                  elinewidth=1.6, capsize=5, zorder=4), f"pointerr-{i}")
            ax.plot([_nan(p.x)], [_nan(p.y)], linestyle="none", marker="D", markersize=6, color=p.color,
                    gid=f"point-{i}", zorder=5)
            has_data = True
            handles.append(Line2D([], [], color=p.color, linewidth=1.6, marker="D", markersize=6))
        if not has_data:
            _no_data(ax)
        for r in hlines:
            if finite(r.value) is not None:
                ax.axhline(r.value, color=r.color, linewidth=1.2, **_dashes(r.dash))
        for r in vlines:
            if finite(r.value) is not None:
                ax.axvline(r.value, color=r.color, linewidth=1.2, **_dashes(r.dash))
        if x_categories is not None:
            ax.set_xticks(range(len(x_categories)), [str(c) for c in x_categories])
            ax.set_xlim(-0.3, max(len(x_categories) - 1, 0) + 0.3)
        elif integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not has_data and y_min is None and y_max is None:
            ax.set_ylim(0, 1)
        elif y_min is not None or y_max is not None:
            ax.set_ylim(y_min, y_max)
        for r in vlines:
            v = finite(r.value)
            lo, hi = sorted(ax.get_xlim())
            if r.label and v is not None and lo <= v <= hi:
                ax.annotate(r.label, xy=(v, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
                            textcoords="offset points", ha="left", va="top", color=r.color, fontsize=FONT_SIZE - 1)
        _hline_labels(ax, hlines)
        _label_axes(ax, x_label, y_label)
        _legend(fig, handles, labels, cols)
        return _to_svg(fig, uid, title, desc)


def _isolated(ys: list[float], xs: list[float], k: int) -> bool:
    if math.isnan(ys[k]) or math.isnan(xs[k]):
        return False
    prev = k > 0 and not (math.isnan(ys[k - 1]) or math.isnan(xs[k - 1]))
    nxt = k + 1 < len(ys) and not (math.isnan(ys[k + 1]) or math.isnan(xs[k + 1]))
    return not prev and not nxt


# --------------------------------------------------------------------------- bar chart


def bar_chart(
    categories: Sequence[Any],
    series: Sequence[BarSeries],
    *,
    uid: str,
    title: str,
    desc: str = "",
    x_label: str = "",
    y_label: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
    hlines: Sequence[RefLine] = (),
    width: int = 460,
    plot_height: int = 210,
) -> str:
    """Grouped bars: one group per category, one bar per series, optional error bars."""
    labels = [s.name for s in series]
    cols = _legend_columns(labels, width)
    height = plot_height + (44 if x_label else 30) + 10 + _legend_height(len(labels), cols)
    n_cat = max(1, len(categories))
    inner = 0.78
    bw = inner / max(1, len(series))
    handles: list = []
    with matplotlib.rc_context(RC):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        ax.grid(True, axis="y")
        has_data = False
        for j, s in enumerate(series):
            color = s.color or PALETTE[j % len(PALETTE)]
            xs = [i - inner / 2 + bw * (j + 0.5) for i in range(len(categories))]
            vals = [_at(s.values, i) for i in range(len(categories))]
            keep = [i for i, v in enumerate(vals) if not math.isnan(v)]
            has_data = has_data or bool(keep)
            bars = ax.bar([xs[i] for i in keep], [vals[i] for i in keep], width=bw * 0.92, color=color)
            for i, bar in zip(keep, bars):
                bar.set_gid(f"bar-{j}-{i}")
            lo = [_at(s.lo, i) for i in range(len(categories))]
            hi = [_at(s.hi, i) for i in range(len(categories))]
            err = [i for i in range(len(categories)) if not (math.isnan(lo[i]) or math.isnan(hi[i]))]
            if err:
                mid = [(lo[i] + hi[i]) / 2 for i in err]
                half = [abs(hi[i] - lo[i]) / 2 for i in err]
                _gids(ax.errorbar([xs[i] for i in err], mid, yerr=half, fmt="none", ecolor="#222222",
                                  elinewidth=1.2, capsize=4), f"err-{j}")
            handles.append(Patch(facecolor=color))
        if not has_data:
            _no_data(ax)
        ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        ax.set_xlim(-0.5, n_cat - 0.5)
        if y_min is not None or y_max is not None:
            ax.set_ylim(y_min, y_max)
        lo, hi = ax.get_ylim()
        if lo < 0 < hi:
            ax.axhline(0, color="#333333", linewidth=0.8)
        for r in hlines:
            if finite(r.value) is not None:
                ax.axhline(r.value, color=r.color, linewidth=1.2, **_dashes(r.dash))
        _hline_labels(ax, hlines)
        _label_axes(ax, x_label, y_label)
        _legend(fig, handles, labels, cols)
        return _to_svg(fig, uid, title, desc)


# --------------------------------------------------------------------------- interval chart


def interval_chart(
    labels: Sequence[str],
    series: Sequence[IntervalSeries],
    *,
    uid: str,
    title: str,
    desc: str = "",
    x_label: str = "",
    ref: float | None = 0.0,
    flag_legend: str = "",
    x_min: float | None = None,
    x_max: float | None = None,
    width: int = 640,
    row_height: int = 22,
) -> str:
    """Horizontal dot-and-whisker rows; several series are offset within a row.

    A dot is filled when its ``flagged`` entry is true (e.g. significant), hollow
    otherwise; ``flag_legend`` explains the filled dot in the legend (without it,
    no filled/hollow entries are added). ``x_min``/``x_max`` fix the value axis.
    """
    names = [s.name for s in series] + ([flag_legend, "hollow: not significant"] if flag_legend else [])
    cols = _legend_columns(names, width)
    n_rows = max(1, len(labels))
    height = n_rows * row_height + (44 if x_label else 30) + 10 + _legend_height(len(names), cols)
    n = max(1, len(series))
    handles: list = []
    with matplotlib.rc_context(RC):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        ax.grid(True, axis="x")
        for i in range(0, len(labels), 2):
            ax.axhspan(i - 0.5, i + 0.5, color="#f4f4f4", linewidth=0, zorder=0)
        if ref is not None:
            ax.axvline(ref, color="#333333", linewidth=1.2)
        has_data = False
        for j, s in enumerate(series):
            color = s.color or PALETTE[j % len(PALETTE)]
            offset = (j + 1) / (n + 1) - 0.5
            ys = [i + offset for i in range(len(labels))]
            vals = [_at(s.values, i) for i in range(len(labels))]
            lo = [_at(s.lo, i) for i in range(len(labels))]
            hi = [_at(s.hi, i) for i in range(len(labels))]
            err = [i for i in range(len(labels)) if not (math.isnan(lo[i]) or math.isnan(hi[i]))]
            if err:
                _gids(ax.errorbar([(lo[i] + hi[i]) / 2 for i in err], [ys[i] for i in err],
                                  xerr=[abs(hi[i] - lo[i]) / 2 for i in err], fmt="none", ecolor=color,
                                  elinewidth=1.6, capsize=3), f"ci-{j}")
            flagged = [bool(s.flagged[i]) if i < len(s.flagged) else False for i in range(len(labels))]
            for kind, want in (("filled", True), ("hollow", False)):
                idx = [i for i in range(len(labels)) if not math.isnan(vals[i]) and flagged[i] == want]
                if idx:
                    has_data = True
                    ax.plot([vals[i] for i in idx], [ys[i] for i in idx], linestyle="none", marker="o",
                            markersize=7.2, markeredgewidth=1.6, markeredgecolor=color,
                            markerfacecolor=color if want else "#ffffff", gid=f"{kind}-{j}", zorder=3)
            handles.append(Line2D([], [], color=color, linewidth=1.6, marker="o", markersize=7.2,
                                  markerfacecolor=color, markeredgecolor=color))
        if flag_legend:
            for face in ("#333333", "#ffffff"):
                handles.append(Line2D([], [], linestyle="none", marker="o", markersize=7.2, markeredgewidth=1.6,
                                      markerfacecolor=face, markeredgecolor="#333333"))
        if not has_data:
            _no_data(ax)
            if ref is not None and x_min is None and x_max is None:
                ax.set_xlim(ref - 1, ref + 1)
        if x_min is not None or x_max is not None:
            ax.set_xlim(x_min, x_max)
        ax.set_yticks(range(len(labels)), [str(t) for t in labels])
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(n_rows - 0.5, -0.5)  # first label on top
        ax.spines["left"].set_visible(False)
        _label_axes(ax, x_label, "")
        _legend(fig, handles, names, cols)
        return _to_svg(fig, uid, title, desc)


# --------------------------------------------------------------------------- styles


def group_styles(groups: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, dash) per ``"Race-Gender"`` group: colour by race, dash by gender.

    Names that do not split into exactly two parts at "-" cycle through colour and
    dash combinations instead.
    """
    parsed = [g.split("-") for g in groups]
    if groups and all(len(p) == 2 and p[0] and p[1] for p in parsed):
        races = list(dict.fromkeys(p[0] for p in parsed))
        genders = list(dict.fromkeys(p[1] for p in parsed))
        if len(races) <= len(PALETTE) and len(genders) <= len(DASHES):
            return {g: (PALETTE[races.index(p[0])], DASHES[genders.index(p[1])]) for g, p in zip(groups, parsed)}
    return {g: (PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]) for i, g in enumerate(groups)}


# --------------------------------------------------------------------------- heat map


def heatmap(
    rows: Sequence[str],
    columns: Sequence[Any],
    values: Sequence[Sequence[Any]],
    *,
    uid: str,
    title: str,
    desc: str = "",
    x_label: str = "",
    y_label: str = "",
    v_min: float = 0.0,
    v_max: float = 1.0,
    colorbar_label: str = "",
    width: int = 460,
) -> str:
    """A rows × columns grid of values (None: blank) on a sequential colour scale, each cell labelled."""
    import numpy as np

    grid = np.array([[_nan(v) for v in row] for row in values], dtype=float).reshape(len(rows), len(columns))
    height = 34 * max(1, len(rows)) + (54 if x_label else 40) + 20
    with matplotlib.rc_context(RC):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=v_min, vmax=v_max,
                          interpolation="nearest")
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        step = max(1, math.ceil(len(columns) / 16))
        ax.set_xticks(range(0, len(columns), step), [str(c) for c in columns][::step])
        if len(columns) <= 16:
            for i in range(len(rows)):
                for j in range(len(columns)):
                    if math.isfinite(grid[i, j]):
                        dark = grid[i, j] < v_min + 0.6 * (v_max - v_min)
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=FONT_SIZE - 2,
                                color="#ffffff" if dark else "#000000")
        if not np.isfinite(grid).any():
            _no_data(ax)
        _label_axes(ax, x_label, y_label)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        if colorbar_label:
            bar.set_label(colorbar_label)
        return _to_svg(fig, uid, title, desc)
