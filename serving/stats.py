"""Activity statistics of the resource centre, and their chart (server-side SVG, no CDN).

Figures, over the last ``weeks`` ISO weeks:

- requests received per week, split by priority tier;
- time to first reading (submission -> an expert opens the review), median and 90th percentile,
  and the share read within the deadline (a case still unread past the deadline counts as missed);
- the share of validated answers that lead to a consultation (``consultation`` or ``urgent``).

Each is also given by priority tier. The tier used here is the case's tier *on arrival*, from risk
and red flags only (waiting time left out), so that a case's tier in the statistics does not drift
as it waits.

Whose cases are counted follows the worklist
(:func:`pipeline.access.statistics_cover_every_centre`): a first reader or senior sees their own
centre's figures; an auditor, a data scientist or an admin every centre's.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import false, select
from sqlalchemy.orm import Session, selectinload

from pipeline.access import Actor, statistics_cover_every_centre
from pipeline.priority import TIER_LABELS, Tier, assess
from pipeline.report import Conduct
from serving.case_service import case_facts
from serving.db.models import Case

Lang = Literal["fr", "en"]

TIER_COLOURS = {
    Tier.urgent: "#c0392b",
    Tier.high: "#e67e22",
    Tier.routine: "#2e86c1",
    Tier.low: "#7f8c8d",
}


@dataclass
class TierStats:
    requests: int = 0
    read: int = 0
    read_within_deadline: int = 0
    median_hours_to_first_reading: float | None = None
    answered: int = 0
    leading_to_consultation: int = 0

    @property
    def consultation_share(self) -> float | None:
        return self.leading_to_consultation / self.answered if self.answered else None


@dataclass
class WeekStats:
    week_start: str  # ISO date of the Monday
    requests: dict[str, int] = field(default_factory=dict)
    median_hours_to_first_reading: float | None = None


@dataclass
class ActivityStats:
    weeks: list[WeekStats]
    by_tier: dict[str, TierStats]
    total_requests: int
    median_hours_to_first_reading: float | None
    p90_hours_to_first_reading: float | None
    share_read_within_deadline: float | None
    consultation_share: float | None
    deadline_hours: float
    #: The centre whose cases are counted; ``None``: every centre.
    centre: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for tier, stats in self.by_tier.items():
            out["by_tier"][tier]["consultation_share"] = stats.consultation_share
        return out


def _monday(moment: datetime) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def arrival_tier(case: Case, deadline_hours: float) -> Tier:
    """The tier from risk and red flags alone, as the case stood when it arrived."""
    unread = replace(case_facts(case), first_read_at=None)
    return assess(unread, case.submitted_at, deadline_hours=deadline_hours).tier


def stats_centre(user: Actor) -> str | None:
    """The centre whose cases ``user``'s statistics count (``None``: every centre's)."""
    return None if statistics_cover_every_centre(user) else (user.centre or "")


def activity_stats(
    session: Session,
    now: datetime,
    *,
    deadline_hours: float,
    weeks: int = 12,
    centre: str | None = None,
) -> ActivityStats:
    """The figures above, computed from the case rows of ``centre`` (``None``: every centre;
    the routes pass :func:`stats_centre` of the reader; ``""``, an expert without a centre,
    counts nothing)."""
    first_week = _monday(now) - timedelta(weeks=weeks - 1)
    query = (
        select(Case)
        .where(Case.submitted_at >= first_week)
        .options(selectinload(Case.scores), selectinload(Case.photos), selectinload(Case.report))
    )
    if centre is not None:
        query = query.where(Case.centre == centre if centre else false())
    cases = list(session.scalars(query))
    week_rows = {
        (first_week + timedelta(weeks=i)).date().isoformat(): WeekStats(
            week_start=(first_week + timedelta(weeks=i)).date().isoformat(),
            requests={t.value: 0 for t in Tier},
        )
        for i in range(weeks)
    }
    week_hours: dict[str, list[float]] = {key: [] for key in week_rows}
    by_tier = {t.value: TierStats() for t in Tier}
    tier_hours: dict[str, list[float]] = {t.value: [] for t in Tier}
    all_hours: list[float] = []
    answered = consultations = missed_unread = 0
    for case in cases:
        tier = arrival_tier(case, deadline_hours).value
        week = _monday(case.submitted_at).date().isoformat()
        week_rows[week].requests[tier] += 1
        stats = by_tier[tier]
        stats.requests += 1
        if case.first_read_at is not None:
            hours = (case.first_read_at - case.submitted_at) / timedelta(hours=1)
            stats.read += 1
            stats.read_within_deadline += hours <= deadline_hours
            tier_hours[tier].append(hours)
            week_hours[week].append(hours)
            all_hours.append(hours)
        elif (now - case.submitted_at) / timedelta(hours=1) > deadline_hours:
            missed_unread += 1
        report = case.report
        if report is not None and report.validated_at is not None:
            stats.answered += 1
            answered += 1
            if Conduct(report.conduct).leads_to_consultation:
                stats.leading_to_consultation += 1
                consultations += 1
    for key, hours in week_hours.items():
        week_rows[key].median_hours_to_first_reading = statistics.median(hours) if hours else None
    for tier, hours in tier_hours.items():
        by_tier[tier].median_hours_to_first_reading = statistics.median(hours) if hours else None
    within = sum(h <= deadline_hours for h in all_hours)
    due = len(all_hours) + missed_unread
    return ActivityStats(
        weeks=list(week_rows.values()),
        by_tier=by_tier,
        total_requests=len(cases),
        median_hours_to_first_reading=statistics.median(all_hours) if all_hours else None,
        p90_hours_to_first_reading=_percentile(all_hours, 0.9),
        share_read_within_deadline=within / due if due else None,
        consultation_share=consultations / answered if answered else None,
        deadline_hours=deadline_hours,
        centre=centre,
    )


CHART_TEXT = {
    "fr": {
        "requests": "Demandes reçues par semaine",
        "first_reading": "Délai médian de première lecture (h)",
        "consultation": "Part des avis menant à une consultation",
        "deadline": "Échéance {hours:.0f} h",
        "week": "Semaine du",
    },
    "en": {
        "requests": "Requests received per week",
        "first_reading": "Median time to first reading (h)",
        "consultation": "Share of answers leading to a consultation",
        "deadline": "Deadline {hours:.0f} h",
        "week": "Week of",
    },
}


def activity_chart_svg(stats: ActivityStats, lang: Lang = "fr") -> str:
    """Three panels as one inline SVG: weekly requests by tier, time to first reading, and the
    share of answers leading to a consultation by tier."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    text = CHART_TEXT[lang]
    labels = [w.week_start[5:].replace("-", "/") for w in stats.weeks]
    if lang == "fr":
        labels = ["/".join(reversed(label.split("/"))) for label in labels]
    x = list(range(len(stats.weeks)))
    fig = Figure(figsize=(12.0, 3.6), dpi=100)
    fig.patch.set_alpha(0)
    grid = fig.add_gridspec(1, 3, width_ratios=(1.6, 1.2, 0.9), wspace=0.32)
    style = {"fontsize": 10, "color": "#1f2933", "loc": "left", "fontweight": "bold"}

    ax = fig.add_subplot(grid[0])
    bottom = [0] * len(x)
    for tier in Tier:
        values = [w.requests[tier.value] for w in stats.weeks]
        ax.bar(x, values, bottom=bottom, color=TIER_COLOURS[tier], width=0.72,
               label=TIER_LABELS[lang][tier])  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title(text["requests"], **style)
    ax.legend(frameon=False, fontsize=8, ncol=4, loc="upper left", bbox_to_anchor=(0, -0.14))
    _tidy(ax, x, labels)

    ax = fig.add_subplot(grid[1])
    medians = [w.median_hours_to_first_reading for w in stats.weeks]
    points = [(i, m) for i, m in zip(x, medians, strict=True) if m is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#0b4f8a",
                linewidth=2, markersize=4)  # fmt: skip
    ax.axhline(stats.deadline_hours, color="#c0392b", linestyle="--", linewidth=1)
    ax.text(0, stats.deadline_hours, " " + text["deadline"].format(hours=stats.deadline_hours),
            color="#c0392b", fontsize=8, va="bottom")  # fmt: skip
    ax.set_ylim(0, max([stats.deadline_hours * 1.25] + [p[1] * 1.1 for p in points]))
    ax.set_title(text["first_reading"], **style)
    _tidy(ax, x, labels)

    ax = fig.add_subplot(grid[2])
    tiers = list(Tier)
    shares = [stats.by_tier[t.value].consultation_share for t in tiers]
    ax.bar(range(len(tiers)), [100 * (s or 0) for s in shares],
           color=[TIER_COLOURS[t] for t in tiers], width=0.6)  # fmt: skip
    for i, (share, tier) in enumerate(zip(shares, tiers, strict=True)):
        answered = stats.by_tier[tier.value].answered
        caption = f"{100 * share:.0f} %\n(n={answered})" if share is not None else "-"
        ax.text(i, 100 * (share or 0) + 2, caption, ha="center", fontsize=7.5, color="#1f2933")
    ax.set_xticks(range(len(tiers)), [TIER_LABELS[lang][t] for t in tiers], fontsize=8)
    ax.set_ylim(0, 118)
    ax.set_yticks([0, 25, 50, 75, 100], ["0", "25", "50", "75", "100 %"], fontsize=8)
    ax.set_title(text["consultation"], **style)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _tidy(ax: Any, x: list[int], labels: list[str]) -> None:
    step = max(1, len(x) // 6)
    ax.set_xticks(x[::step], labels[::step], fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#e4e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
