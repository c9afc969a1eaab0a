"""The report as a PDF for the requesting GP and the patient record (fpdf2, no external service).

One A4 page in the reader's language: who asked and about whom (pseudonym only), the photos, the
conduct to hold in a highlighted box, the expert's text, who wrote and who validated it. Nothing of
the model's output (score, probabilities, version): the document goes to the requesting GP and
the patient's record, and a GP never sees the model's output (docs/access.md). Fonts are the
DejaVu faces that ship with matplotlib, so accents and every French character render without
system fonts.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from pathlib import Path
from typing import Literal

from fpdf import FPDF

from pipeline.diagnosis import SNOMED_CT, DiagnosisCode
from pipeline.questionnaire import label
from pipeline.report import Conduct, conduct_sentence
from pipeline.workflow import STATUS_LABELS, Status
from serving.db.models import Case
from serving.i18n import translate
from serving.storage import BlobStore

logger = logging.getLogger(__name__)

Lang = Literal["fr", "en"]

ACCENT = (11, 79, 138)  # the product's blue (#0b4f8a)
MUTED = (90, 98, 110)
CONDUCT_COLOURS: dict[Conduct, tuple[int, int, int]] = {
    Conduct.reassure: (225, 242, 232),
    Conduct.monitor: (232, 240, 250),
    Conduct.consultation: (253, 241, 222),
    Conduct.urgent: (251, 226, 226),
}

TEXT = {
    "fr": {
        "title": "Avis de télédermatologie",
        "case": "Dossier",
        "patient": "Patient (pseudonyme)",
        "age_sex": "Âge / sexe",
        "years": "ans",
        "site": "Localisation",
        "submitted": "Demande reçue le",
        "requester": "Médecin demandeur",
        "question": "Question clinique",
        "conduct": "Conduite à tenir",
        "coded_diagnosis": "Diagnostic",
        "diagnosis": "Hypothèse diagnostique",
        "comment": "Commentaire de l'expert",
        "written": "Rédigé par",
        "validated": "Validé par",
        "not_validated": "Non encore validé par un senior",
        "on": "le",
        "status": "Statut",
        "photos": "Photos transmises",
        "footer": "DermTriage - document généré le {when} - page {page}/{pages}",
    },
    "en": {
        "title": "Teledermatology opinion",
        "case": "Case",
        "patient": "Patient (pseudonym)",
        "age_sex": "Age / sex",
        "years": "years",
        "site": "Body site",
        "submitted": "Request received on",
        "requester": "Requesting physician",
        "question": "Clinical question",
        "conduct": "Conduct to hold",
        "coded_diagnosis": "Diagnosis",
        "diagnosis": "Diagnostic hypothesis",
        "comment": "Expert's comment",
        "written": "Written by",
        "validated": "Validated by",
        "not_validated": "Not yet validated by a senior",
        "on": "on",
        "status": "Status",
        "photos": "Photos sent",
        "footer": "DermTriage - generated on {when} - page {page}/{pages}",
    },
}


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _when(moment: datetime | None, lang: Lang) -> str:
    if moment is None:
        return "-"
    return moment.strftime("%d/%m/%Y %H:%M UTC" if lang == "fr" else "%Y-%m-%d %H:%M UTC")


class _ReportPDF(FPDF):
    def __init__(self, lang: Lang, generated: datetime) -> None:
        super().__init__(format="A4")
        self.lang = lang
        self.generated = generated
        fonts = _font_dir()
        self.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.add_font("DejaVu", "I", str(fonts / "DejaVuSans-Oblique.ttf"))
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(18, 16, 18)
        self.alias_nb_pages("{nb}")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", "", 7.5)
        self.set_text_color(*MUTED)
        text = TEXT[self.lang]["footer"].format(
            when=_when(self.generated, self.lang), page=self.page_no(), pages="{nb}"
        )
        self.cell(0, 5, text, align="C")


def report_pdf(
    case: Case, lang: Lang = "fr", *, store: BlobStore | None = None, now: datetime | None = None
) -> bytes:
    """The case's report as PDF bytes (the case must have a report)."""
    if case.report is None:
        raise ValueError("the case has no report")
    t = TEXT[lang]
    report = case.report
    q = case.questionnaire
    pdf = _ReportPDF(lang, now or report.validated_at or report.written_at)
    pdf.add_page()
    width = pdf.epw

    pdf.set_fill_color(*ACCENT)
    pdf.rect(0, 0, pdf.w, 5, style="F")
    pdf.set_y(12)
    pdf.set_font("DejaVu", "B", 9)
    pdf.set_text_color(*ACCENT)
    pdf.cell(width / 2, 5, "DermTriage")
    pdf.set_font("DejaVu", "", 9)
    pdf.set_text_color(*MUTED)
    pdf.cell(width / 2, 5, f"{t['case']} #{case.id}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 18)
    pdf.set_text_color(20, 24, 31)
    pdf.cell(0, 11, t["title"], new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    rows = [
        (t["patient"], case.patient_pseudonym),
        (t["age_sex"], f"{q.get('age')} {t['years']} / {label('sex', q.get('sex', ''), lang)}"),
        (t["site"], label("body_site", q.get("body_site", ""), lang)),
        (t["submitted"], _when(case.submitted_at, lang)),
        (t["requester"], f"{case.requester_name}, {case.requester_organisation}"),
        (t["status"], STATUS_LABELS[lang][Status(case.status)]),
    ]
    for key, value in rows:
        pdf.set_font("DejaVu", "", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(48, 6, key)
        pdf.set_font("DejaVu", "", 10)
        pdf.set_text_color(20, 24, 31)
        pdf.multi_cell(0, 6, str(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _section(pdf, t["question"])
    pdf.set_font("DejaVu", "I", 10)
    pdf.multi_cell(0, 5.5, q.get("clinical_question", ""), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    conduct = Conduct(report.conduct)
    _section(pdf, t["conduct"])
    pdf.set_fill_color(*CONDUCT_COLOURS[conduct])
    pdf.set_font("DejaVu", "B", 12)
    pdf.set_text_color(20, 24, 31)
    pdf.multi_cell(
        0, 9, "  " + conduct_sentence(conduct, report.interval, lang), fill=True,
        new_x="LMARGIN", new_y="NEXT",
    )  # fmt: skip
    pdf.ln(3)
    if report.diagnosis_code:  # reports written before coded diagnoses have none
        concept, _ = SNOMED_CT[DiagnosisCode(report.diagnosis_code)]
        _section(pdf, t["coded_diagnosis"])
        pdf.set_font("DejaVu", "B", 10.5)
        coded = translate(f"diagnosis.{report.diagnosis_code}", lang)
        pdf.multi_cell(0, 5.5, f"{coded} (SNOMED CT {concept})", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    if report.diagnosis:
        _section(pdf, t["diagnosis"])
        pdf.set_font("DejaVu", "", 10.5)
        pdf.multi_cell(0, 5.5, report.diagnosis, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    _section(pdf, t["comment"])
    pdf.set_font("DejaVu", "", 10.5)
    pdf.multi_cell(0, 5.5, report.text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font("DejaVu", "", 9)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(
        0, 5, f"{t['written']} {report.author_name}, {t['on']} {_when(report.written_at, lang)}",
        new_x="LMARGIN", new_y="NEXT",
    )  # fmt: skip
    validated = (
        f"{t['validated']} {report.validated_by_name}, {t['on']} {_when(report.validated_at, lang)}"
        if report.validated_at
        else t["not_validated"]
    )
    pdf.multi_cell(0, 5, validated, new_x="LMARGIN", new_y="NEXT")

    if store is not None and case.photos:
        pdf.ln(3)
        _section(pdf, t["photos"])
        side, x, y = 38.0, pdf.l_margin, pdf.get_y()
        for photo in case.photos[:5]:
            try:
                data = store.get(photo.thumbnail_sha256)
            except LookupError:
                logger.warning("thumbnail of photo %s missing from the store", photo.id)
                continue
            pdf.image(io.BytesIO(data), x=x, y=y, w=side, h=side, keep_aspect_ratio=True)
            x += side + 4
        pdf.set_y(y + side + 3)
    return bytes(pdf.output())


def _section(pdf: FPDF, title: str) -> None:
    pdf.set_font("DejaVu", "B", 10)
    pdf.set_text_color(*ACCENT)
    pdf.cell(0, 6, title.upper(), new_x="LMARGIN", new_y="NEXT")
    pdf.set_draw_color(*ACCENT)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + 20, pdf.get_y())
    pdf.ln(1.5)
    pdf.set_text_color(20, 24, 31)
