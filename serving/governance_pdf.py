"""The audit report of one model version as a PDF (fpdf2, as the case report in serving/pdf.py).

What an auditor files: identity and lineage of the version (who trained it, from which code and
data, split seed and images per diagnosis), its evaluation figures, the subgroup table with its
small-sample warnings, the ROC and calibration plots, the complete promotion history with gates,
how many live cases it scored, and its real-world performance on the centre's confirmed cases
(with the challenger's beside it, and the sensitivity alert). English only: the audience is
regulators and quality staff. Fonts are matplotlib's DejaVu faces so any name or reason renders.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF

from pipeline.real_world import Estimate
from serving.governance_real_world import RealWorldReport
from training.governance import VersionDossier

ACCENT = (11, 79, 138)
MUTED = (90, 98, 110)
WARN = (161, 60, 0)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


class _AuditPDF(FPDF):
    def __init__(self, title: str, generated: datetime) -> None:
        super().__init__(format="A4")
        self.report_title = title
        self.generated = generated
        fonts = _font_dir()
        self.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=16)
        self.set_margins(15, 14, 15)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("DejaVu", "", 7)
        self.set_text_color(*MUTED)
        when = self.generated.strftime("%Y-%m-%d %H:%M UTC")
        self.cell(0, 5, f"{self.report_title} - generated {when} - page {self.page_no()}/{{nb}}")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 11)
    pdf.set_text_color(*ACCENT)
    pdf.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("DejaVu", "", 8.5)


def _pairs(pdf: FPDF, rows: list[tuple[str, str]]) -> None:
    for label, value in rows:
        pdf.set_font("DejaVu", "B", 8.5)
        pdf.cell(48, 5, label)
        pdf.set_font("DejaVu", "", 8.5)
        pdf.multi_cell(0, 5, value, new_x="LMARGIN", new_y="NEXT")


def _table(pdf: FPDF, header: list[str], rows: list[list[str]], widths: list[float]) -> None:
    pdf.set_font("DejaVu", "", 7.5)
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.2) as table:
        head = table.row()
        for cell in header:
            head.cell(cell)
        for values in rows:
            row = table.row()
            for value in values:
                row.cell(value)
    pdf.set_font("DejaVu", "", 8.5)


REAL_WORLD_ROWS = (
    ("auroc", "malignant AUROC"),
    ("sensitivity", "sensitivity at the operating point"),
    ("specificity", "specificity at the operating point"),
    ("npv", "negative predictive value"),
    ("ece", "calibration error (ECE, 10 bins)"),
    ("first_fifth", "cancers in the first fifth of the queue at arrival"),
    ("hours_to_first_reading", "median hours to first reading, cancers"),
    ("hours_fcfs", "same, first come first served (replay)"),
    ("triage_benefit_hours", "triage benefit (hours sooner)"),
)


def _interval(estimate: Estimate) -> str:
    if estimate.low is None or estimate.high is None:
        return "-"
    return f"{_fmt(estimate.low)} to {_fmt(estimate.high)}"


def _real_world_section(pdf: FPDF, report: RealWorldReport) -> None:
    """The version's figures on the centre's confirmed cases, the challenger's beside them."""
    overall = report.figures.overall
    _heading(pdf, "Real-world performance (the centre's confirmed cases)")
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(report.sources.items())) or "none"
    pdf.multi_cell(
        0,
        4.5,
        f"{overall.n_cases} confirmed cases, {overall.n_malignant} cancers (reference: "
        f"{sources}). Operating point: suspected malignant when p >= "
        f"{report.figures.operating_point:.2f}. 95 % bootstrap intervals."
        + (
            f" Computed at {report.computed_at:%Y-%m-%d %H:%M} UTC."
            if report.computed_at is not None
            else ""
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    if report.alert is not None:
        pdf.set_text_color(*WARN)
        pdf.multi_cell(
            0,
            4.5,
            f"ALERT: the live sensitivity interval (up to {_fmt(report.alert.live.high)}) lies "
            f"below the registered {report.alert.registered_metric} "
            f"{_fmt(report.alert.registered)}.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.set_text_color(0, 0, 0)
    challenger = report.challenger_figures
    header = ["figure", "value", "95 % interval", "n"]
    if challenger is not None:
        header += [f"v{report.challenger} (shadow)", "95 % interval"]
    rows = []
    for key, label in REAL_WORLD_ROWS:
        estimate = getattr(overall, key)
        row = [label, _fmt(estimate.value), _interval(estimate), str(estimate.n)]
        if challenger is not None:
            other = getattr(challenger, key)
            row += [_fmt(other.value), _interval(other)]
        rows.append(row)
    widths = [70, 18, 32, 12] + ([26, 32] if challenger is not None else [])
    _table(pdf, header, rows, widths)
    if report.figures.subgroups:
        _table(
            pdf,
            ["subgroup", "value", "n", "cancers", "AUROC", "sensitivity", "specificity", "NPV"],
            [
                [
                    s.dimension,
                    s.value,
                    str(s.figures.n_cases),
                    str(s.figures.n_malignant),
                    _fmt(s.figures.auroc.value),
                    _fmt(s.figures.sensitivity.value),
                    _fmt(s.figures.specificity.value),
                    _fmt(s.figures.npv.value),
                ]
                for s in report.figures.subgroups
            ],
            [26, 30, 14, 16, 20, 22, 22, 20],
        )


def audit_report_pdf(
    dossier: VersionDossier,
    *,
    plots: dict[str, bytes],
    live_cases: dict[str, int],
    generated: datetime,
    real_world: RealWorldReport | None = None,
) -> bytes:
    """The PDF bytes of the audit report of ``dossier``'s version.

    ``plots`` maps plot names (``roc``, ``calibration``) to PNG bytes; ``live_cases`` maps a score
    role (champion, shadow) to the number of live cases the version scored in it.
    """
    title = f"Audit report: {dossier.model_name} version {dossier.version}"
    pdf = _AuditPDF(title, generated)
    pdf.alias_nb_pages("{nb}")
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.set_text_color(*ACCENT)
    pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)

    data = dossier.training_data
    datasets = "; ".join(
        f"{d.get('name')} (digest {d.get('digest')}, source {d.get('source')})"
        for d in data.datasets
    )
    _heading(pdf, "Identity and lineage")
    _pairs(
        pdf,
        [
            ("Aliases now", ", ".join(dossier.aliases) or "none (not in service)"),
            ("In service since", dossier.in_service_since or "never champion"),
            ("Registered", dossier.created or "-"),
            ("Trained by", dossier.trained_by or "unknown"),
            ("Training started", dossier.trained_at or "unknown"),
            ("Code (git commit)", dossier.git_commit or "unknown"),
            ("MLflow run", dossier.run_id or "-"),
            ("Training data", datasets or "not recorded"),
            ("Split seed", _fmt(data.split_seed)),
            ("Images per split", ", ".join(f"{k} {v}" for k, v in data.totals.items()) or "-"),
            (
                "Live cases scored",
                ", ".join(f"{n} as {role}" for role, n in sorted(live_cases.items())) or "none",
            ),
        ],
    )
    if data.counts:
        classes = sorted({dx for by_dx in data.counts.values() for dx in by_dx})
        _table(
            pdf,
            ["split", *classes, "total"],
            [
                [split, *(str(by_dx.get(dx, 0)) for dx in classes), str(sum(by_dx.values()))]
                for split, by_dx in data.counts.items()
            ],
            [20] + [18] * len(classes) + [18],
        )

    _heading(pdf, "Evaluation figures (held-out test split, at registration)")
    _table(
        pdf,
        ["figure", "value"],
        [[k, _fmt(v)] for k, v in dossier.metrics.items()],
        [70, 40],
    )

    _heading(pdf, "Subgroups")
    for note in dossier.subgroup_notes:
        pdf.set_text_color(*WARN)
        pdf.multi_cell(0, 4.5, note, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    if dossier.subgroups:
        _table(
            pdf,
            ["group", "value", "n", "malig.", "AUROC", "sens@95sp", "bal.acc", "warning"],
            [
                [
                    r["group"],
                    r["value"],
                    str(r["n"]),
                    str(r["n_malignant"]),
                    _fmt(r.get("malignant_auroc")),
                    _fmt(r.get("sens_at_95_spec")),
                    _fmt(r.get("balanced_accuracy")),
                    r["warning"] or "",
                ]
                for r in dossier.subgroups
            ],
            [26, 24, 10, 11, 13, 15, 13, 68],
        )

    if real_world is not None:
        _real_world_section(pdf, real_world)

    for name, caption in (("roc", "ROC curve"), ("calibration", "Calibration")):
        if name in plots:
            _heading(pdf, caption)
            pdf.image(io.BytesIO(plots[name]), w=95)

    _heading(pdf, "Promotion history (who, when, why, gates)")
    if not dossier.history:
        pdf.multi_cell(0, 5, "No promotion, refusal, rollback or challenger event.")
    for record in dossier.history:
        gates = record.get("gates") or {}
        gate_text = "; ".join(
            f"{'ok' if g.get('passed') else 'FAILED'} {g.get('name')}: {g.get('detail')}"
            for g in gates.get("gates", [])
        )
        line = (
            f"#{record['sequence']} {record['at']}  {record['action']} of version "
            f"{record['version']} (champion before: {record.get('previous_champion') or 'none'}) "
            f"by {record['user']}. Reason: {record['reason']}."
        )
        if gate_text:
            line += f" Gates: {gate_text}."
        pdf.multi_cell(0, 4.5, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    pdf.set_title(title)
    pdf.set_subject(json.dumps({"model": dossier.model_name, "version": dossier.version}))
    return bytes(pdf.output())
