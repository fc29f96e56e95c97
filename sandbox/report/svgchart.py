"""Budget use over a trial as a small inline SVG chart, from a bounded sample.

`BudgetSeries` takes every BudgetCharge of a trial but keeps at most about
`max_points` points per budget (it halves its resolution when full), so a
100k-event log costs a few kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

_COLOURS = ("#5e35b1", "#00897b", "#d0452f", "#c98a00", "#2b7bb9", "#6d4c41", "#546e7a")


@dataclass
class _Series:
    stride: int = 1
    seen: int = 0
    points: list[tuple[int, float]] = field(default_factory=list)
    limit: float | None = None
    peak: float = 0.0
    final: tuple[int, float] | None = None


@dataclass
class BudgetSeries:
    """Collects (seq, used) points per budget, down-sampled to a bounded size."""

    max_points: int = 400
    series: dict[str, _Series] = field(default_factory=dict)
    last_seq: int = 0

    def add(self, seq: int, budget: str, used: float, limit: float | None) -> None:
        """Record one charge."""
        s = self.series.setdefault(budget, _Series())
        s.limit = limit if limit is not None else s.limit
        s.peak = max(s.peak, used)
        self.last_seq = max(self.last_seq, seq)
        if s.seen % s.stride == 0:
            s.points.append((seq, used))
            if len(s.points) > 2 * self.max_points:
                s.points = s.points[::2]
                s.stride *= 2
        s.seen += 1
        s.final = (seq, used)  # always drawn, whatever the sampling kept

    def svg(self, *, width: int = 640, height: int = 150) -> str:
        """The chart (fraction of each budget's limit, or of its peak, against event seq)."""
        if not self.series:
            return '<p class="muted">no budget charges in this log</p>'
        pad_l, pad_r, pad_t, pad_b = 34, 8, 8, 20
        w, h = width - pad_l - pad_r, height - pad_t - pad_b
        xmax = max(1, self.last_seq)
        out = [
            f'<svg class="budget" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
            ' role="img" aria-label="budget use over the trial">',
            f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" '
            'stroke="#999"/>',
            f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#999"/>',
            f'<text x="2" y="{pad_t + 8}" font-size="10">100%</text>',
            f'<text x="10" y="{pad_t + h}" font-size="10">0</text>',
            f'<text x="{pad_l}" y="{height - 4}" font-size="10">event #0</text>',
            f'<text x="{pad_l + w - 60}" y="{height - 4}" font-size="10">#{xmax}</text>',
        ]
        legend: list[str] = []
        for i, (name, s) in enumerate(sorted(self.series.items())):
            colour = _COLOURS[i % len(_COLOURS)]
            pts = list(s.points)
            final = s.final
            if final is not None and (not pts or pts[-1] != final):
                pts.append(final)
            scale = s.limit if s.limit else (s.peak or 1.0)
            coords = " ".join(
                f"{pad_l + w * seq / xmax:.1f},{pad_t + h - h * min(1.0, used / scale):.1f}"
                for seq, used in pts
            )
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
            )
            last = final[1] if final is not None else (pts[-1][1] if pts else 0.0)
            of = f" of {s.limit:g}" if s.limit else " (no limit; scaled to peak)"
            legend.append(
                f'<span style="color:{colour}">&#9632;</span> {escape(name)}: {last:g}{escape(of)}'
            )
        out.append("</svg>")
        return "".join(out) + '<div class="muted">' + " &nbsp; ".join(legend) + "</div>"


@dataclass(frozen=True)
class RateBar:
    """One row of a rates chart: a label and (k, n, low, high) for attempt and success."""

    label: str
    attempt: tuple[int, int, float, float]
    success: tuple[int, int, float, float]


def rates_svg(rows: list[RateBar], *, title: str, width: int = 720) -> str:
    """Attempt and success rates as horizontal bars (0-100%) with their confidence
    intervals as whiskers, one row per label; every text is escaped."""
    if not rows:
        return ""
    label_w, row_h, top = 260, 30, 24
    plot_w = width - label_w - 90
    height = top + row_h * len(rows) + 18
    out = [
        f'<svg class="rates" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for pct in (0, 25, 50, 75, 100):
        x = label_w + plot_w * pct / 100
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 14}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 2}" font-size="10" text-anchor="middle"'
            f' fill="#777">{pct}%</text>'
        )
    for i, row in enumerate(rows):
        y = top + i * row_h
        out.append(
            f'<text x="{label_w - 8}" y="{y + 14}" font-size="11" text-anchor="end">'
            f"{escape(row.label[:40])}</text>"
        )
        for j, (name, (k, n, low, high), colour) in enumerate(
            (("attempt", row.attempt, "#c98a00"), ("success", row.success, "#d0452f"))
        ):
            by = y + 3 + j * 11
            frac = k / n if n else 0.0
            out.append(
                f'<rect x="{label_w}" y="{by}" width="{plot_w * frac:.1f}" height="9"'
                f' fill="{colour}"><title>{name} {k}/{n}, interval {low:.0%}-{high:.0%}'
                "</title></rect>"
                f'<line x1="{label_w + plot_w * low:.1f}" y1="{by + 4.5}"'
                f' x2="{label_w + plot_w * high:.1f}" y2="{by + 4.5}" stroke="#333"'
                ' stroke-width="1.2"/>'
                f'<text x="{label_w + plot_w + 6}" y="{by + 8}" font-size="10" fill="#555">'
                f"{name[0]} {k}/{n}</text>"
            )
    out.append("</svg>")
    return "".join(out)


__all__ = ["BudgetSeries", "RateBar", "rates_svg"]
