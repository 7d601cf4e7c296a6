"""Small inline-SVG charts for the HTML report (no plotting library, nothing fetched).

Three chart kinds cover the report:

- :func:`line_chart`: several series over a numeric x axis, each with an optional
  shaded band (a confidence interval), plus horizontal / vertical reference lines;
- :func:`bar_chart`: grouped vertical bars per category with optional error bars;
- :func:`interval_chart`: a horizontal dot-and-whisker chart (estimate with CI per
  row label, several series offset within a row), filled dots for flagged values.

Every chart returns one ``<svg>`` string with ``role="img"``, a ``<title>`` and a
``<desc>`` referenced by ``aria-labelledby`` (so screen readers announce it), a
``viewBox`` so it scales with the page, and only system fonts. Missing values
(None, NaN, ±inf) are skipped: lines break there instead of dropping to zero.
Colours are the Okabe–Ito palette, distinguishable with the common forms of
colour blindness; series can also differ by dash pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

__all__ = [
    "PALETTE",
    "DASHES",
    "Series",
    "BarSeries",
    "IntervalSeries",
    "RefLine",
    "finite",
    "nice_ticks",
    "line_chart",
    "bar_chart",
    "interval_chart",
    "group_styles",
]

# Okabe & Ito (2008), "Color Universal Design"; yellow last (low contrast on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
DASHES = ("", "7 4", "2 3", "9 3 2 3")
GREY = "#6b6b6b"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
CHAR_W = 0.58  # average glyph width / font size, for layout estimates


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite real number, else None (bools excluded)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class Series:
    """One line of a :func:`line_chart`; ``lo``/``hi`` draw a shaded band."""

    name: str
    x: Sequence[Any]
    y: Sequence[Any]
    lo: Sequence[Any] | None = None
    hi: Sequence[Any] | None = None
    color: str | None = None
    dash: str = ""
    width: float = 2.0
    markers: bool = True


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


def _f(v: float) -> str:
    """Compact coordinate text."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _text_w(text: str, size: float) -> float:
    return len(text) * size * CHAR_W


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps 1, 2, 2.5, 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if step >= raw * 0.999:
            break
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
        if len(ticks) > 50:
            break
    return ticks


def _tick_label(v: float, step: float) -> str:
    if step >= 1 and abs(v - round(v)) < 1e-9:
        return str(int(round(v))).replace("-", "\u2212")
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(step / 10 ** -decimals - round(step / 10 ** -decimals)) > 1e-6:
        decimals += 1
    text = f"{v:.{decimals}f}"
    return "0" if float(text) == 0 else text.replace("-", "\u2212")


def _domain(values: list[float], lo: float | None, hi: float | None, include: Sequence[float] = ()) -> tuple[float, float, list[float]]:
    vals = [v for v in list(values) + list(include) if v is not None]
    dlo = lo if lo is not None else (min(vals) if vals else 0.0)
    dhi = hi if hi is not None else (max(vals) if vals else 1.0)
    ticks = nice_ticks(dlo, dhi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if lo is None:
        dlo = min(ticks[0], dlo)
    if hi is None:
        dhi = max(ticks[-1], dhi)
    if dhi - dlo < 1e-12:
        dlo, dhi = dlo - step, dhi + step
    ticks = [t for t in ticks if dlo - 1e-9 <= t <= dhi + 1e-9]
    return dlo, dhi, ticks


class _Canvas:
    """Plot-area geometry and the SVG opening / closing."""

    def __init__(self, width: int, plot_h: int, left: float, right: float, top: float, legend_h: float, x_label: bool):
        self.width = width
        self.left = left
        self.right = width - right
        self.top = top
        self.bottom = top + plot_h
        self.height = self.bottom + (34 if x_label else 22) + legend_h

    def open(self, uid: str, title: str, desc: str) -> list[str]:
        return [
            f'<svg class="chart" viewBox="0 0 {self.width} {_f(self.height)}" '
            f'width="{self.width}" height="{_f(self.height)}" role="img" aria-labelledby="{uid}-t {uid}-d" '
            f'font-family="{escape(FONT)}" font-size="11">',
            f'<title id="{uid}-t">{escape(title)}</title>',
            f'<desc id="{uid}-d">{escape(desc or title)}</desc>',
        ]


def _legend_layout(items: list[str], width: float, left: float, size: float = 11) -> tuple[list[tuple[float, float]], float]:
    """Positions (x, y offset) of legend entries in a grid of equal columns; total height.

    Entries fill rows left to right, so a race × gender list of groups lands as
    one row per race and one column per gender when the columns fit.
    """
    if not items:
        return [], 0.0
    left = min(left, 12.0)
    col_w = max(26 + _text_w(text, size) + 12 for text in items)
    cols = max(1, int((width - left - 4) // col_w))
    if cols >= len(items):
        # one row: pack tightly
        pos, x = [], left
        for text in items:
            pos.append((x, 0.0))
            x += 26 + _text_w(text, size) + 14
        return pos, 22.0
    pos = [(left + (i % cols) * col_w, (i // cols) * 16.0) for i in range(len(items))]
    return pos, ((len(items) - 1) // cols + 1) * 16.0 + 6


def _legend(entries: list[tuple[str, str]], pos: list[tuple[float, float]], y0: float) -> list[str]:
    """``entries``: (label, swatch SVG drawn in a 22×10 box at the origin)."""
    out = ['<g class="legend">']
    for (label, swatch), (x, dy) in zip(entries, pos):
        y = y0 + dy
        out.append(f'<g transform="translate({_f(x)},{_f(y)})">{swatch}<text x="26" y="9">{escape(label)}</text></g>')
    out.append("</g>")
    return out


def _line_swatch(color: str, dash: str, width: float = 2.0, band: bool = False, marker: bool = False) -> str:
    s = ""
    if band:
        s += f'<rect x="0" y="0" width="22" height="10" fill="{color}" fill-opacity="0.18"/>'
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    s += f'<line x1="0" y1="5" x2="22" y2="5" stroke="{color}" stroke-width="{width}"{dash_attr}/>'
    if marker:
        s += f'<circle cx="11" cy="5" r="3" fill="{color}"/>'
    return s


def _axes(c: _Canvas, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]], x_label: str, y_label: str, grid_x: bool = False) -> list[str]:
    out = ['<g class="axes">']
    for y, text in yticks:
        out.append(f'<line x1="{_f(c.left)}" y1="{_f(y)}" x2="{_f(c.right)}" y2="{_f(y)}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{_f(c.left - 6)}" y="{_f(y + 3.5)}" text-anchor="end" fill="#333">{escape(text)}</text>')
    for x, text in xticks:
        if grid_x:
            out.append(f'<line x1="{_f(x)}" y1="{_f(c.top)}" x2="{_f(x)}" y2="{_f(c.bottom)}" stroke="#e3e3e3"/>')
        out.append(f'<line x1="{_f(x)}" y1="{_f(c.bottom)}" x2="{_f(x)}" y2="{_f(c.bottom + 4)}" stroke="#333"/>')
        out.append(f'<text x="{_f(x)}" y="{_f(c.bottom + 15)}" text-anchor="middle" fill="#333">{escape(text)}</text>')
    out.append(
        f'<path d="M{_f(c.left)},{_f(c.top)}V{_f(c.bottom)}H{_f(c.right)}" fill="none" stroke="#333"/>'
    )
    if x_label:
        out.append(
            f'<text x="{_f((c.left + c.right) / 2)}" y="{_f(c.bottom + 30)}" text-anchor="middle" fill="#222">{escape(x_label)}</text>'
        )
    if y_label:
        cy = (c.top + c.bottom) / 2
        out.append(
            f'<text transform="translate(13,{_f(cy)}) rotate(-90)" text-anchor="middle" fill="#222">{escape(y_label)}</text>'
        )
    out.append("</g>")
    return out


def _no_data(c: _Canvas) -> str:
    return (
        f'<text x="{_f((c.left + c.right) / 2)}" y="{_f((c.top + c.bottom) / 2)}" text-anchor="middle" '
        f'fill="{GREY}">no data</text>'
    )


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
    width: int = 460,
    plot_height: int = 210,
) -> str:
    """Lines (with optional CI bands) of several series over a shared x axis.

    With ``x_categories`` the x axis is categorical: series give x as the index of
    their category (0, 1, ...) and the ticks are labelled with the category names.
    """
    xs = [v for s in series for v in (finite(x) for x in s.x) if v is not None]
    ys: list[float] = []
    for s in series:
        for seq in (s.y, s.lo or [], s.hi or []):
            ys.extend(v for v in (finite(y) for y in seq) if v is not None)
    ref_ys = [r.value for r in hlines if finite(r.value) is not None]
    ylo, yhi, yt = _domain(ys, y_min, y_max, include=ref_ys if ys else ())
    if x_categories is not None:
        xlo, xhi = -0.3, max(len(x_categories) - 1, 0) + 0.3
    elif xs:
        xlo, xhi = min(xs), max(xs)
    else:
        xlo, xhi = 0.0, 1.0
    if xhi - xlo < 1e-12:
        xlo, xhi = xlo - 1, xhi + 1
    if x_categories is not None:
        xt = [float(i) for i in range(len(x_categories))]
    elif integer_x:
        span = xhi - xlo
        step = max(1, math.ceil(span / 10))
        for nice in (1, 2, 5, 10, 20, 25, 50, 100):
            if nice >= step:
                step = nice
                break
        xt = [float(v) for v in range(int(math.ceil(xlo)), int(math.floor(xhi)) + 1) if v % step == 0]
    else:
        xt = [t for t in nice_ticks(xlo, xhi) if xlo - 1e-9 <= t <= xhi + 1e-9]
    ylabel_w = max((_text_w(_tick_label(t, (yt[1] - yt[0]) if len(yt) > 1 else 1), 11) for t in yt), default=20)
    left = 24 + ylabel_w + 8
    legend_items = [s.name for s in series]
    pos, legend_h = _legend_layout(legend_items, width, left)
    c = _Canvas(width, plot_height, left, 14, 12, legend_h, bool(x_label))

    def px(x: float) -> float:
        return c.left + (x - xlo) / (xhi - xlo) * (c.right - c.left)

    def py(y: float) -> float:
        y = min(max(y, ylo), yhi)
        return c.bottom - (y - ylo) / (yhi - ylo) * (c.bottom - c.top)

    ystep = (yt[1] - yt[0]) if len(yt) > 1 else 1.0
    xstep = (xt[1] - xt[0]) if len(xt) > 1 else 1.0
    out = c.open(uid, title, desc)
    out += _axes(
        c,
        [(px(t), x_categories[int(t)] if x_categories is not None else _tick_label(t, xstep)) for t in xt],
        [(py(t), _tick_label(t, ystep)) for t in yt],
        x_label,
        y_label,
    )
    out.append(f'<clipPath id="{uid}-clip"><rect x="{_f(c.left)}" y="{_f(c.top)}" width="{_f(c.right - c.left)}" height="{_f(c.bottom - c.top)}"/></clipPath>')
    out.append(f'<g clip-path="url(#{uid}-clip)">')
    for r in hlines:
        if finite(r.value) is None or not ylo <= r.value <= yhi:
            continue
        y = py(r.value)
        out.append(f'<line x1="{_f(c.left)}" y1="{_f(y)}" x2="{_f(c.right)}" y2="{_f(y)}" stroke="{r.color}" stroke-width="1.2" stroke-dasharray="{r.dash}"/>')
    for r in vlines:
        if finite(r.value) is None or not xlo <= r.value <= xhi:
            continue
        x = px(r.value)
        out.append(f'<line x1="{_f(x)}" y1="{_f(c.top)}" x2="{_f(x)}" y2="{_f(c.bottom)}" stroke="{r.color}" stroke-width="1.2" stroke-dasharray="{r.dash}"/>')
    if not xs or not any(finite(y) is not None for s in series for y in s.y):
        out.append(_no_data(c))
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        pts = [(finite(x), finite(y)) for x, y in zip(s.x, s.y)]
        out.append(f'<g class="series"><title>{escape(s.name)}</title>')
        if s.lo is not None and s.hi is not None:
            for seg in _segments([(finite(x), finite(lo), finite(hi)) for x, lo, hi in zip(s.x, s.lo, s.hi)]):
                top = " ".join(f"{_f(px(x))},{_f(py(h))}" for x, _, h in seg)
                bot = " ".join(f"{_f(px(x))},{_f(py(lo))}" for x, lo, _ in reversed(seg))
                out.append(f'<polygon points="{top} {bot}" fill="{color}" fill-opacity="0.18" stroke="none"/>')
        dash_attr = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        for seg in _segments([(x, y) for x, y in pts]):
            if len(seg) < 2:
                if not s.markers:  # an isolated point would vanish without a marker
                    out.append(f'<circle cx="{_f(px(seg[0][0]))}" cy="{_f(py(seg[0][1]))}" r="2" fill="{color}"/>')
                continue
            d = "M" + "L".join(f"{_f(px(x))},{_f(py(y))}" for x, y in seg)
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{s.width}" stroke-linejoin="round"{dash_attr}/>')
        if s.markers and len(pts) <= 60:
            for x, y in pts:
                if x is not None and y is not None:
                    out.append(f'<circle cx="{_f(px(x))}" cy="{_f(py(y))}" r="2.4" fill="{color}"/>')
        out.append("</g>")
    out.append("</g>")
    for r in hlines:
        if r.label and finite(r.value) is not None and ylo <= r.value <= yhi:
            out.append(f'<text x="{_f(c.right - 3)}" y="{_f(py(r.value) - 4)}" text-anchor="end" fill="{r.color}" font-size="10">{escape(r.label)}</text>')
    for r in vlines:
        if r.label and finite(r.value) is not None and xlo <= r.value <= xhi:
            out.append(f'<text x="{_f(px(r.value) + 3)}" y="{_f(c.top + 10)}" fill="{r.color}" font-size="10">{escape(r.label)}</text>')
    entries = [
        (s.name, _line_swatch(s.color or PALETTE[i % len(PALETTE)], s.dash, min(s.width, 2.5), s.lo is not None and s.hi is not None))
        for i, s in enumerate(series)
    ]
    out += _legend(entries, pos, c.bottom + (36 if x_label else 24))
    out.append("</svg>")
    return "\n".join(out)


def _segments(points: list[tuple]) -> list[list[tuple]]:
    """Runs of consecutive points whose every coordinate is finite."""
    segs: list[list[tuple]] = []
    cur: list[tuple] = []
    for p in points:
        if all(v is not None for v in p):
            cur.append(p)
        else:
            if cur:
                segs.append(cur)
            cur = []
    if cur:
        segs.append(cur)
    return segs


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
    vals: list[float] = [0.0]
    for s in series:
        for seq in (s.values, s.lo or [], s.hi or []):
            vals.extend(v for v in (finite(y) for y in seq) if v is not None)
    ylo, yhi, yt = _domain(vals, y_min, y_max)
    ystep = (yt[1] - yt[0]) if len(yt) > 1 else 1.0
    ylabel_w = max((_text_w(_tick_label(t, ystep), 11) for t in yt), default=20)
    left = 24 + ylabel_w + 8
    pos, legend_h = _legend_layout([s.name for s in series], width, left)
    c = _Canvas(width, plot_height, left, 14, 12, legend_h, bool(x_label))

    def py(y: float) -> float:
        y = min(max(y, ylo), yhi)
        return c.bottom - (y - ylo) / (yhi - ylo) * (c.bottom - c.top)

    n_cat = max(1, len(categories))
    band = (c.right - c.left) / n_cat
    inner = band * 0.78
    bw = inner / max(1, len(series))
    out = c.open(uid, title, desc)
    out += _axes(
        c,
        [(c.left + band * (i + 0.5), str(cat)) for i, cat in enumerate(categories)],
        [(py(t), _tick_label(t, ystep)) for t in yt],
        x_label,
        y_label,
    )
    if ylo < 0 < yhi:
        out.append(f'<line x1="{_f(c.left)}" y1="{_f(py(0))}" x2="{_f(c.right)}" y2="{_f(py(0))}" stroke="#333"/>')
    has_data = False
    for j, s in enumerate(series):
        color = s.color or PALETTE[j % len(PALETTE)]
        out.append(f'<g class="series"><title>{escape(s.name)}</title>')
        for i, _ in enumerate(categories):
            v = finite(s.values[i]) if i < len(s.values) else None
            x = c.left + band * i + (band - inner) / 2 + bw * j
            if v is not None:
                has_data = True
                y0, y1 = py(0 if ylo <= 0 <= yhi else ylo), py(v)
                top, h = min(y0, y1), abs(y1 - y0)
                out.append(f'<rect x="{_f(x + 1)}" y="{_f(top)}" width="{_f(max(1.0, bw - 2))}" height="{_f(max(h, 0.8))}" fill="{color}"/>')
            lo = finite(s.lo[i]) if s.lo is not None and i < len(s.lo) else None
            hi = finite(s.hi[i]) if s.hi is not None and i < len(s.hi) else None
            if lo is not None and hi is not None:
                cx = x + bw / 2
                out.append(
                    f'<path d="M{_f(cx)},{_f(py(lo))}V{_f(py(hi))}M{_f(cx - 4)},{_f(py(lo))}H{_f(cx + 4)}M{_f(cx - 4)},{_f(py(hi))}H{_f(cx + 4)}" '
                    f'stroke="#222" stroke-width="1.2" fill="none"/>'
                )
        out.append("</g>")
    for r in hlines:
        if finite(r.value) is not None and ylo <= r.value <= yhi:
            y = py(r.value)
            out.append(f'<line x1="{_f(c.left)}" y1="{_f(y)}" x2="{_f(c.right)}" y2="{_f(y)}" stroke="{r.color}" stroke-width="1.2" stroke-dasharray="{r.dash}"/>')
            if r.label:
                out.append(f'<text x="{_f(c.right - 3)}" y="{_f(y - 4)}" text-anchor="end" fill="{r.color}" font-size="10">{escape(r.label)}</text>')
    if not has_data:
        out.append(_no_data(c))
    entries = [
        (s.name, f'<rect x="4" y="0" width="14" height="10" fill="{s.color or PALETTE[j % len(PALETTE)]}"/>')
        for j, s in enumerate(series)
    ]
    out += _legend(entries, pos, c.bottom + (36 if x_label else 24))
    out.append("</svg>")
    return "\n".join(out)


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
    width: int = 640,
    row_height: int = 22,
) -> str:
    """Horizontal dot-and-whisker rows; several series are offset within a row.

    A dot is filled when its ``flagged`` entry is true (e.g. significant), hollow
    otherwise; ``flag_legend`` explains the filled dot in the legend.
    """
    vals: list[float] = []
    for s in series:
        for seq in (s.values, s.lo, s.hi):
            vals.extend(v for v in (finite(y) for y in seq) if v is not None)
    include = [ref] if ref is not None else []
    if vals:
        span = (max(vals + include) - min(vals + include)) or 1.0
        lo_d, hi_d = min(vals + include) - 0.04 * span, max(vals + include) + 0.04 * span
    else:
        lo_d, hi_d = -1.0, 1.0
    xlo, xhi, xt = _domain([lo_d, hi_d], None, None)
    label_w = max((_text_w(str(t), 11) for t in labels), default=30)
    left = 14 + label_w + 8
    legend_items = [s.name for s in series] + ([flag_legend, "hollow: not significant"] if flag_legend else [])
    pos, legend_h = _legend_layout(legend_items, width, left)
    plot_h = max(1, len(labels)) * row_height
    c = _Canvas(width, plot_h, left, 16, 8, legend_h, bool(x_label))

    def px(x: float) -> float:
        x = min(max(x, xlo), xhi)
        return c.left + (x - xlo) / (xhi - xlo) * (c.right - c.left)

    xstep = (xt[1] - xt[0]) if len(xt) > 1 else 1.0
    out = c.open(uid, title, desc)
    for i in range(0, len(labels), 2):
        out.append(f'<rect x="{_f(c.left)}" y="{_f(c.top + row_height * i)}" width="{_f(c.right - c.left)}" height="{row_height}" fill="#f4f4f4"/>')
    out += _axes(c, [(px(t), _tick_label(t, xstep)) for t in xt], [], x_label, "", grid_x=True)
    for i, label in enumerate(labels):
        y = c.top + row_height * (i + 0.5)
        out.append(f'<text x="{_f(c.left - 6)}" y="{_f(y + 4)}" text-anchor="end" fill="#222">{escape(str(label))}</text>')
    if ref is not None and xlo <= ref <= xhi:
        out.append(f'<line x1="{_f(px(ref))}" y1="{_f(c.top)}" x2="{_f(px(ref))}" y2="{_f(c.bottom)}" stroke="#333" stroke-width="1.2"/>')
    n = max(1, len(series))
    has_data = False
    for j, s in enumerate(series):
        color = s.color or PALETTE[j % len(PALETTE)]
        out.append(f'<g class="series"><title>{escape(s.name)}</title>')
        for i, _ in enumerate(labels):
            y = c.top + row_height * i + row_height * (j + 1) / (n + 1)
            v = finite(s.values[i]) if i < len(s.values) else None
            lo = finite(s.lo[i]) if i < len(s.lo) else None
            hi = finite(s.hi[i]) if i < len(s.hi) else None
            if lo is not None and hi is not None:
                out.append(
                    f'<path d="M{_f(px(lo))},{_f(y)}H{_f(px(hi))}M{_f(px(lo))},{_f(y - 3)}V{_f(y + 3)}M{_f(px(hi))},{_f(y - 3)}V{_f(y + 3)}" '
                    f'stroke="{color}" stroke-width="1.6" fill="none"/>'
                )
            if v is not None:
                has_data = True
                flagged = bool(s.flagged[i]) if i < len(s.flagged) else False
                fill = color if flagged else "#ffffff"
                out.append(f'<circle cx="{_f(px(v))}" cy="{_f(y)}" r="3.6" fill="{fill}" stroke="{color}" stroke-width="1.6"/>')
        out.append("</g>")
    if not has_data:
        out.append(_no_data(c))
    entries = [
        (s.name, f'<line x1="0" y1="5" x2="22" y2="5" stroke="{s.color or PALETTE[j % len(PALETTE)]}" stroke-width="1.6"/>'
                 f'<circle cx="11" cy="5" r="3.6" fill="{s.color or PALETTE[j % len(PALETTE)]}"/>')
        for j, s in enumerate(series)
    ]
    if flag_legend:
        entries.append((flag_legend, '<circle cx="11" cy="5" r="3.6" fill="#333" stroke="#333" stroke-width="1.6"/>'))
        entries.append(("hollow: not significant", '<circle cx="11" cy="5" r="3.6" fill="#fff" stroke="#333" stroke-width="1.6"/>'))
    out += _legend(entries, pos, c.bottom + (36 if x_label else 24))
    out.append("</svg>")
    return "\n".join(out)


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
