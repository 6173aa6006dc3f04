"""Small inline SVG charts for the HTML report: histograms, bar charts and line charts.

Each function returns a legend (when there are several series) and one ``<svg>`` element as a
string, with axes, ticks and a tooltip (``<title>``) on every mark. Nothing is fetched and
nothing but the standard library is used, so a report stays one self-contained file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

__all__ = ["PALETTE", "bar_chart", "histogram", "line_chart", "task_bars"]

PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#999999")
"""Okabe-Ito colours, readable by colour-blind people; series take them in order."""

WIDTH, HEIGHT = 520, 250
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 44
_CHAR_W = 5.6  # rough width of a character at font-size 10


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _num(value: float) -> str:
    """A short label for a number: integers without decimals, others with 3 significant."""
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _frame(
    y_ticks: Sequence[float], x_label: str, y_label: str, height: int, bottom: int
) -> list[str]:
    """Grid lines, the y axis with its ticks, and the axis captions."""
    plot_h = height - TOP - bottom
    parts = []
    for tick in y_ticks:
        y = TOP + plot_h * (1 - tick / y_ticks[-1])
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e4e7ec"/><text x="{LEFT - 6}" y="{y + 3:.1f}" font-size="10" '
            f'text-anchor="end">{_num(tick)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{height - bottom}" y2="{height - bottom}" '
        f'stroke="#666"/><text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{height - 6}" '
        f'font-size="11" text-anchor="middle">{_esc(x_label)}</text>'
        f'<text transform="translate(12 {TOP + plot_h / 2:.1f}) rotate(-90)" font-size="11" '
        f'text-anchor="middle">{_esc(y_label)}</text>'
    )
    return parts


def _slanted(labels: Sequence[str], slot: float) -> bool:
    every = max(1, math.ceil(len(labels) / 16))
    return any(min(len(label), 16) * _CHAR_W > slot * every for label in labels)


def _x_margin(labels: Sequence[str], slot: float) -> int:
    """Room under the plot for the x labels and the axis caption."""
    if not _slanted(labels, slot):
        return BOTTOM
    return int(max(min(len(label), 16) for label in labels) * _CHAR_W * 0.6) + 36


def _x_labels(labels: Sequence[str], slot: float, baseline: float) -> list[str]:
    """Category labels under the x axis, slanted when they do not fit; at most 16 shown."""
    every = max(1, math.ceil(len(labels) / 16))
    slanted = _slanted(labels, slot)
    parts = []
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + (i + 0.5) * slot
        shown = label if len(label) <= 16 else label[:15] + "…"
        if slanted:
            parts.append(
                f'<text transform="translate({x:.1f} {baseline + 10}) rotate(-35)" '
                f'font-size="10" text-anchor="end"><title>{_esc(label)}</title>{_esc(shown)}'
                "</text>"
            )
        else:
            parts.append(
                f'<text x="{x:.1f}" y="{baseline + 13}" font-size="10" text-anchor="middle">'
                f"{_esc(shown)}</text>"
            )
    return parts


def _legend(names: Sequence[str], colours: Sequence[str], dashed: Sequence[bool]) -> str:
    if len(names) < 2:
        return ""
    items = "".join(
        f'<span class="key"><i style="background:{colour}{";opacity:.55" if dash else ""}">'
        f"</i>{_esc(name)}{' (dashed)' if dash else ''}</span>"
        for name, colour, dash in zip(names, colours, dashed, strict=True)
    )
    return f'<div class="legend">{items}</div>'


def _svg(parts: Sequence[str], label: str, height: int) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{_esc(label)}">{"".join(parts)}</svg>'
    )


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    x_label: str = "",
    y_label: str = "",
    y_max: float | None = None,
) -> str:
    """Vertical bars, one group per category and one bar per series within it.

    Args:
        categories: The x positions, in order.
        series: Name -> one value per category.
        label: Accessible name of the chart.
        x_label: Caption of the x axis.
        y_label: Caption of the y axis.
        y_max: Top of the y axis (default: the largest value, rounded up).

    Returns:
        The ``<svg>`` element, preceded by a legend when there are several series.
    """
    names = list(series)
    values = [v for vs in series.values() for v in vs]
    ticks = _ticks(y_max if y_max is not None else max(values, default=1.0))
    plot_w = WIDTH - LEFT - RIGHT
    slot = plot_w / max(len(categories), 1)
    bottom = _x_margin(categories, slot)
    height = HEIGHT - BOTTOM + bottom
    plot_h = height - TOP - bottom
    parts = _frame(ticks, x_label, y_label, height, bottom)
    bar = max(slot * 0.8 / max(len(names), 1), 1.0)
    for i, category in enumerate(categories):
        x0 = LEFT + i * slot + slot * 0.1
        for j, name in enumerate(names):
            value = series[name][i]
            h = plot_h * value / ticks[-1]
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{_colour(j)}"><title>'
                f"{_esc(name)} · {_esc(category)}: {_num(value)}</title></rect>"
            )
    parts.extend(_x_labels(categories, slot, height - bottom))
    legend = _legend(names, [_colour(j) for j in range(len(names))], [False] * len(names))
    return legend + _svg(parts, label, height)


def histogram(
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    x_label: str,
    bins: int = 10,
    integer: bool = False,
) -> str:
    """Counts of values in equal-width bins (one bin per integer when ``integer``).

    Args:
        series: Name -> the values to count.
        label: Accessible name of the chart.
        x_label: Caption of the x axis (what the values are).
        bins: Number of bins for real values.
        integer: Use one bin per integer value (e.g. turns).

    Returns:
        The ``<svg>`` element, preceded by a legend when there are several series. Bins are
        labelled by their centre (their value when ``integer``).
    """
    values = [v for vs in series.values() for v in vs]
    if not values:
        return bar_chart([], {}, label=label, x_label=x_label, y_label="episodes")
    low, high = min(values), max(values)
    if integer:
        low, count = math.floor(low), math.floor(high) - math.floor(low) + 1
        width = 1.0
        categories = [_num(low + i) for i in range(count)]
    else:
        count, width = bins, ((high - low) or 1.0) / bins
        categories = [_num(low + width * (i + 0.5)) for i in range(count)]
    counts: dict[str, list[float]] = {}
    for name, vs in series.items():
        row = [0.0] * count
        for v in vs:
            row[min(max(int((v - low) / width), 0), count - 1)] += 1
        counts[name] = row
    return bar_chart(categories, counts, label=label, x_label=x_label, y_label="episodes")


def line_chart(
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    label: str,
    x_label: str,
    y_label: str,
    y_max: float = 1.0,
    colours: Mapping[str, int] | None = None,
    dashed: Sequence[str] = (),
) -> str:
    """Lines with a marker per point; x positions are evenly spaced in the order given.

    Args:
        xs: The x values (shown as tick labels).
        series: Name -> one value per x; None leaves the point out.
        label: Accessible name of the chart.
        x_label: Caption of the x axis.
        y_label: Caption of the y axis.
        y_max: Top of the y axis.
        colours: Name -> index into :data:`PALETTE` (default: series order), so related series
            can share a colour.
        dashed: Names of the series drawn dashed with hollow markers.

    Returns:
        The ``<svg>`` element, preceded by a legend when there are several series.
    """
    ticks = _ticks(y_max)
    height = HEIGHT
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    step = plot_w / max(len(xs), 1)
    parts = _frame(ticks, x_label, y_label, height, BOTTOM)
    parts.extend(_x_labels([_num(x) for x in xs], step, height - BOTTOM))
    palette = {name: _colour((colours or {}).get(name, j)) for j, name in enumerate(series)}
    for name, ys in series.items():
        colour, dash = palette[name], name in dashed
        points = [
            (LEFT + (i + 0.5) * step, TOP + plot_h * (1 - y / ticks[-1]), x, y)
            for i, (x, y) in enumerate(zip(xs, ys, strict=True))
            if y is not None
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
        pattern = ' stroke-dasharray="6 4"' if dash else ""
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{pattern}/>'
        )
        fill = "#fff" if dash else colour
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{4 if dash else 3}" fill="{fill}" '
            f'stroke="{colour}" stroke-width="1.5"><title>{_esc(name)} at {_num(x)}: '
            f"{y:.3f}</title></circle>"
            for px, py, x, y in points
        )
    names = list(series)
    legend = _legend(names, [palette[n] for n in names], [n in dashed for n in names])
    return legend + _svg(parts, label, height)


def task_bars(
    tasks: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    x_label: str,
    low: float = 0.0,
    high: float = 1.0,
) -> str:
    """Horizontal bars from 0, one row per task (success per task, or differences per task).

    Args:
        tasks: Row labels, top to bottom.
        series: Name -> one value per task; values outside ``[low, high]`` are drawn clipped
            (the tooltip shows the true value).
        label: Accessible name of the chart.
        x_label: Caption of the x axis.
        low: Left end of the x axis (e.g. -1 for differences).
        high: Right end of the x axis.

    Returns:
        The ``<svg>`` element (its height grows with the number of rows), after a legend when
        there are several series.
    """
    names = list(series)
    row = 6 + 11 * max(len(names), 1)
    left, top = 150, 8
    height = top + row * max(len(tasks), 1) + 30
    plot_w = WIDTH - left - RIGHT

    def x_of(value: float) -> float:
        return left + plot_w * (min(max(value, low), high) - low) / (high - low)

    parts = []
    for i in range(5):
        tick = low + (high - low) * i / 4
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 30}" '
            f'stroke="{"#888" if tick == 0 else "#e4e7ec"}"/><text x="{x:.1f}" '
            f'y="{height - 18}" font-size="10" text-anchor="middle">{_num(tick)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="11" '
        f'text-anchor="middle">{_esc(x_label)}</text>'
    )
    zero = x_of(0.0)
    for i, task in enumerate(tasks):
        y0 = top + i * row + 3
        shown = task if len(task) <= 24 else task[:23] + "…"
        parts.append(
            f'<text x="{left - 6}" y="{y0 + row / 2 + 1:.1f}" font-size="10" '
            f'text-anchor="end"><title>{_esc(task)}</title>{_esc(shown)}</text>'
        )
        for j, name in enumerate(names):
            value = series[name][i]
            end = x_of(value)
            parts.append(
                f'<rect x="{min(zero, end):.1f}" y="{y0 + j * 11:.1f}" '
                f'width="{abs(end - zero):.1f}" height="9" fill="{_colour(j)}">'
                f"<title>{_esc(name)} · {_esc(task)}: {value:.3f}</title></rect>"
            )
    legend = _legend(names, [_colour(j) for j in range(len(names))], [False] * len(names))
    return legend + _svg(parts, label, height)
