"""The drift page's weekly chart as inline SVG: no JavaScript, prints and archives as it is.

One column per ISO week: the interquartile range of the malignant scores as a bar, the median as
a dot (red when the week is flagged for any measure), and the training reference's median and
interquartile range as a dashed line and a shaded band.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

from pipeline.drift import SCORE, Reference, WeekDrift

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 44


def _y(value: float) -> float:
    return TOP + (1.0 - value) * (HEIGHT - TOP - BOTTOM)


def drift_chart_svg(weeks: Sequence[WeekDrift], reference: Reference | None) -> str:
    """The SVG markup (a ``<svg>`` element with a ``<title>``) of the weekly score chart."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'class="drift-chart" aria-labelledby="drift-chart-title">',
        '<title id="drift-chart-title">Malignant score per ISO week (median and interquartile '
        "range) against the training reference</title>",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ee"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick:g}</text>'
        )
    ref_scores = reference.values.get(SCORE, ()) if reference is not None else ()
    if ref_scores:
        q25, q50, q75 = np.quantile(np.asarray(ref_scores), [0.25, 0.5, 0.75])
        parts.append(
            f'<rect x="{LEFT}" y="{_y(q75):.1f}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{_y(q25) - _y(q75):.1f}" fill="#0b4f8a" fill-opacity="0.08"/>'
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_y(q50):.1f}" y2="{_y(q50):.1f}" '
            'stroke="#0b4f8a" stroke-dasharray="5 4" class="reference-median"/>'
        )
    step = (WIDTH - LEFT - RIGHT) / max(len(weeks), 1)
    for i, week in enumerate(weeks):
        x = LEFT + step * (i + 0.5)
        quantiles = week.score_quantiles
        colour = "#c0392b" if week.flagged else "#0b4f8a"
        if quantiles:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_y(quantiles["p75"]):.1f}" '
                f'y2="{_y(quantiles["p25"]):.1f}" stroke="{colour}" stroke-width="8" '
                'stroke-opacity="0.35"/>'
                f'<circle cx="{x:.1f}" cy="{_y(quantiles["median"]):.1f}" r="4" fill="{colour}" '
                f'class="week{" flagged" if week.flagged else ""}" data-week="{escape(week.week)}">'
                f"<title>{escape(week.week)}: median {quantiles['median']:.2f}, "
                f"{week.n_scored} scored photos{', shift flagged' if week.flagged else ''}"
                "</title></circle>"
            )
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="10" text-anchor="middle">'
            f"{escape(week.week[5:])}</text>"
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 29}" font-size="9" text-anchor="middle" '
            f'fill="#5a626e">n={week.n_photos}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
