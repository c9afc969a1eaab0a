"""A realistic demo for a newcomer's first look: three dozen cases from derm-dev photos.

:func:`seed_demo` creates cases from real derm-dev images with plausible questionnaires (age, sex
and body site from the image's metadata; red flags drawn more often for malignant lesions, as in
real referrals), spread over the last ten weeks and taken through the workflow as a resource
centre would: older cases are answered, validated and closed; recent ones wait in the worklist,
some with a question to the GP. Every case is scored by the service's own model when it can be
loaded (otherwise the scoring worker scores them as soon as a model is available).

Behind them, an *archive* of forty older cases (three to nine months back) went the whole way:
read, coded, validated, closed, and later confirmed by an outcome whose source follows how
derm-dev confirmed the photo (``dx_type``: histology, follow-up, else a consultation), with the
photo's true diagnosis. A few naevi were excised as suspected melanomas, so the histology
corrects the expert there. Recent closed cases get their histology when it is due. This is what
the real-world performance pages judge the champion on, so they show figures on first start.

Idempotent: demo cases carry ``DEMO-`` pseudonyms, and nothing is added when some exist.
Deterministic: the same data set gives the same demo.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select

from pipeline.diagnosis import DiagnosisCode, OutcomeSource
from pipeline.questionnaire import BodySite, parse_questionnaire
from pipeline.report import parse_report
from serving import case_service as svc
from serving.db.models import Case
from serving.db.session import Database
from serving.scoring_worker import PredictorLike, ScoringWorker, default_predictor_loader
from serving.settings import Settings
from serving.storage import PhotoStore
from serving.users import User, find_user

logger = logging.getLogger(__name__)

PREFIX = "DEMO-"
PLAN: dict[str, int] = {"mel": 8, "bcc": 5, "akiec": 3, "nv": 13, "bkl": 5, "df": 1, "vasc": 1}
# The archive of closed, confirmed cases. Forty keeps first-start seeding fast (each case costs
# one scoring, about 0.4 s on two busy cores) while giving the real-world figures enough cancers
# for an AUROC and a sensitivity with an interval.
ARCHIVE_PLAN: dict[str, int] = {
    "mel": 8, "bcc": 5, "akiec": 4, "nv": 15, "bkl": 5, "df": 2, "vasc": 1,
}  # fmt: skip
ARCHIVE_DAYS = (75.0, 270.0)
# Naevi (histology-proven) the expert reported as suspected melanoma: the excision settles it.
ARCHIVE_OVERCALLS = 2
# How derm-dev confirmed a photo (metadata ``dx_type``) -> the outcome's source.
OUTCOME_SOURCES = {
    "histo": OutcomeSource.HISTOLOGY,
    "follow_up": OutcomeSource.FOLLOW_UP,
    "consensus": OutcomeSource.CONSULTATION,
    "confocal": OutcomeSource.CONSULTATION,
}
# Days from the validated report to the outcome, by source: a pathology report comes back in weeks,
# the follow-up visit months later.
OUTCOME_DELAY_DAYS = {
    OutcomeSource.HISTOLOGY: (12.0, 30.0),
    OutcomeSource.CONSULTATION: (7.0, 40.0),
    OutcomeSource.FOLLOW_UP: (60.0, 180.0),
}
SITES = {s.value for s in BodySite}
RECENT = ["under_1_month", "1_6_months", "6_12_months"]
OLD = ["1_5_years", "over_5_years", "6_12_months"]

QUESTIONS = {
    "mel": "Lésion pigmentée {site} apparue ou modifiée récemment, asymétrique : mélanome ?",
    "bcc": "Lésion perlée {site} qui ne cicatrise pas : carcinome basocellulaire ?",
    "akiec": "Lésion squameuse {site} chez un patient très exposé au soleil : kératose ou "
    "carcinome ?",
    "nv": "Naevus {site} que le patient souhaite faire contrôler : bénin ?",
    "bkl": "Lésion brune verruqueuse {site} : kératose séborrhéique ?",
    "df": "Petite lésion ferme {site}, signe de la fossette : dermatofibrome ?",
    "vasc": "Lésion rouge violacée {site} : angiome ?",
}
SITE_WORDS = {
    "scalp": "du cuir chevelu", "face": "du visage", "ear": "de l'oreille", "neck": "du cou",
    "chest": "du thorax", "abdomen": "de l'abdomen", "back": "du dos", "trunk": "du tronc",
    "upper extremity": "du bras", "lower extremity": "de la jambe", "hand": "de la main",
    "foot": "du pied", "acral": "plantaire", "genital": "génitale", "other": "",
}  # fmt: skip
REPORTS = {
    "mel": ("urgent", None, "Suspicion de mélanome",
            "Lésion asymétrique, polychrome, à bords irréguliers. Exérèse complète rapide "
            "avec examen histologique ; rendez-vous proposé par le centre."),
    "bcc": ("consultation", 4, "Carcinome basocellulaire probable",
            "Aspect perlé avec télangiectasies. Consultation pour exérèse chirurgicale."),
    "akiec": ("consultation", 8, "Kératose actinique / carcinome in situ",
              "Lésion kératosique sur peau héliodermique. Consultation pour traitement "
              "(cryothérapie ou exérèse selon l'examen)."),
    "nv": ("monitor", 6, "Naevus d'aspect bénin",
           "Réseau pigmentaire régulier, pas de critère de malignité. Surveillance et nouvelles "
           "photos dans 6 mois, ou plus tôt en cas de modification."),
    "bkl": ("reassure", None, "Kératose séborrhéique",
            "Aspect typique de kératose séborrhéique, lésion bénigne. Rassurer le patient."),
    "df": ("reassure", None, "Dermatofibrome",
           "Lésion bénigne typique, aucune prise en charge nécessaire."),
    "vasc": ("reassure", None, "Angiome",
             "Lésion vasculaire bénigne. Rassurer ; traitement esthétique possible."),
}  # fmt: skip

# The coded diagnosis each demo report gives (pipeline.diagnosis), from the photo's HAM10000 class.
REPORT_CODES = {
    "mel": DiagnosisCode.MELANOMA,
    "bcc": DiagnosisCode.BCC,
    "akiec": DiagnosisCode.AK_BOWEN,
    "nv": DiagnosisCode.NAEVUS,
    "bkl": DiagnosisCode.SEBORRHOEIC_KERATOSIS,
    "df": DiagnosisCode.DERMATOFIBROMA,
    "vasc": DiagnosisCode.VASCULAR,
}


@dataclass(frozen=True)
class DemoCase:
    image_id: str
    dx: str
    age: int
    sex: str
    site: str
    days_ago: float
    requester: str
    lesion_id: str = ""
    dx_type: str = ""  # how derm-dev confirmed it: histo, follow_up, consensus, confocal
    report_dx: str = ""  # what the expert's report says, when it is not ``dx``


def choose_images(
    metadata: pd.DataFrame, plan: dict[str, int] = PLAN, seed: int = 7
) -> list[DemoCase]:
    """A fixed, diagnosis-balanced pick of images with usable metadata (``plan``: dx -> count)."""
    rng = random.Random(seed)
    picks = _pick(metadata, plan, seed, rng)
    rng.shuffle(picks)
    # Spread over ten weeks; 40 % arrived in the last 3 days and are still in the worklist.
    spread = []
    for i, pick in enumerate(picks):
        days = rng.uniform(0.05, 3.0) if i < len(picks) * 2 // 5 else rng.uniform(3.0, 70.0)
        spread.append(DemoCase(**{**pick.__dict__, "days_ago": round(days, 3)}))
    return sorted(spread, key=lambda c: -c.days_ago)


def choose_archive(
    metadata: pd.DataFrame,
    plan: dict[str, int] = ARCHIVE_PLAN,
    exclude: frozenset[str] = frozenset(),
    seed: int = 13,
) -> list[DemoCase]:
    """The archive's pick: other lesions than ``exclude`` (lesion ids), spread over
    :data:`ARCHIVE_DAYS`, oldest first. :data:`ARCHIVE_OVERCALLS` of the naevi are drawn among
    histology-proven ones and reported as suspected melanomas (they were excised for it)."""
    rng = random.Random(seed)
    available = metadata[~metadata["lesion_id"].isin(exclude)]
    overcalls = min(ARCHIVE_OVERCALLS, plan.get("nv", 0))
    excised = [
        dataclasses.replace(pick, report_dx="mel")
        for pick in _pick(
            available[(available["dx"] == "nv") & (available["dx_type"] == "histo")],
            {"nv": overcalls},
            seed,
            rng,
        )
    ]
    rest = {**plan, "nv": plan.get("nv", 0) - len(excised)}
    taken = {pick.lesion_id for pick in excised}
    picks = _pick(available[~available["lesion_id"].isin(taken)], rest, seed, rng) + excised
    rng.shuffle(picks)
    spread = [
        dataclasses.replace(pick, days_ago=round(rng.uniform(*ARCHIVE_DAYS), 3)) for pick in picks
    ]
    return sorted(spread, key=lambda c: -c.days_ago)


def _pick(
    metadata: pd.DataFrame, plan: dict[str, int], seed: int, rng: random.Random
) -> list[DemoCase]:
    """``plan[dx]`` lesions of each diagnosis with usable metadata, one image each."""
    usable = metadata[
        metadata["age"].notna()
        & metadata["sex"].isin(["male", "female"])
        & metadata["localization"].isin(SITES)
    ]
    picks: list[DemoCase] = []
    for dx, count in plan.items():
        rows = usable[usable["dx"] == dx].drop_duplicates("lesion_id").sort_values("image_id")
        for row in rows.sample(n=min(count, len(rows)), random_state=seed).itertuples():
            picks.append(
                DemoCase(
                    image_id=str(row.image_id),
                    dx=dx,
                    age=int(row.age),
                    sex=str(row.sex),
                    site=str(row.localization),
                    days_ago=0.0,
                    requester=rng.choice(["dr-martin", "dr-leroy"]),
                    lesion_id=str(row.lesion_id),
                    dx_type=str(getattr(row, "dx_type", "")),
                )
            )
    return picks


def questionnaire_for(pick: DemoCase, number: int, rng: random.Random) -> dict:
    """The GP's answers for a demo case (who sends it is the requester's account)."""
    malignant = pick.dx in ("mel", "bcc", "akiec")
    changed = rng.random() < (0.7 if pick.dx == "mel" else 0.3 if malignant else 0.1)
    return {
        "patient_pseudonym": f"{PREFIX}{number:03d}",
        "age": pick.age,
        "sex": pick.sex,
        "fitzpatrick": rng.choice(["I", "II", "II", "III", "III", "IV"]),
        "body_site": pick.site,
        "duration": rng.choice(RECENT if malignant else OLD),
        "changed_size": changed,
        "changed_colour": changed and rng.random() < 0.5,
        "changed_shape": changed and rng.random() < 0.3,
        "bleeding": pick.dx in ("bcc", "mel") and rng.random() < 0.35,
        "itching": rng.random() < 0.2,
        "personal_history_skin_cancer": malignant and rng.random() < 0.25,
        "family_history_skin_cancer": rng.random() < 0.12,
        "immunosuppression": rng.random() < 0.06,
        "treatments": rng.choice(["", "", "Ramipril 5 mg", "Metformine", "Lévothyrox"]),
        "allergies": rng.choice(["", "", "", "Pénicilline"]),
        "clinical_question": QUESTIONS[pick.dx].format(site=SITE_WORDS.get(pick.site, "")),
    }


def seed_demo(
    settings: Settings,
    *,
    load_predictor: Callable[[], PredictorLike] | None = None,
    now: datetime | None = None,
    plan: dict[str, int] = PLAN,
    archive: dict[str, int] = ARCHIVE_PLAN,
) -> int:
    """Create the demo cases unless they exist; returns how many were created.

    ``load_predictor`` defaults to the service's model (the registered champion); ``plan`` says
    how many recent cases of each diagnosis to make, ``archive`` how many older closed cases with
    outcomes (tests use small ones).
    """
    now = now or datetime.now(UTC)
    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        with database.session() as session:
            existing = session.scalar(
                select(func.count()).select_from(Case).where(Case.patient_pseudonym.like("DEMO-%"))
            )
        if existing:
            logger.info("demo already seeded (%d cases)", existing)
            return 0
        metadata_path = settings.dataset_dir / "metadata.csv"
        if not metadata_path.is_file():
            logger.warning("no data set at %s: demo not seeded", settings.dataset_dir)
            return 0
        metadata = pd.read_csv(metadata_path)
        picks = choose_images(metadata, plan)
        older = choose_archive(metadata, archive, frozenset(p.lesion_id for p in picks))
        store = PhotoStore(settings.data_dir / "photos")
        loader = load_predictor or default_predictor_loader(
            settings.model_uri, settings.tracking_uri
        )
        clock_value = {"now": now}
        worker = ScoringWorker(database, store, loader, clock=lambda: clock_value["now"])
        # Each part draws from its own generator, so the archive leaves the recent cases as
        # they were; archive cases come first, in time order like the rest.
        recent_rng, archive_rng, outcome_rng = (
            random.Random(11),
            random.Random(19),
            random.Random(17),
        )
        steps = [(p, archive_rng, 1.0) for p in older] + [(p, recent_rng, 0.7) for p in picks]
        for number, (pick, rng, closing) in enumerate(steps, start=1):
            submitted = now - timedelta(days=pick.days_ago)
            case_id = _create(database, store, settings, pick, number, submitted, rng)
            clock_value["now"] = submitted + timedelta(minutes=rng.uniform(0.2, 3))
            if not worker.score_case(case_id):
                logger.warning("demo case %s left queued for scoring", case_id)
            validated = _advance(database, case_id, pick, submitted, now, rng, close_share=closing)
            if validated is not None:
                _outcome(database, case_id, pick, validated, now, outcome_rng)
        logger.info("seeded %d demo cases (%d in the archive)", len(picks) + len(older), len(older))
        return len(picks) + len(older)
    finally:
        database.dispose()


def _create(
    database: Database,
    store: PhotoStore,
    settings: Settings,
    pick: DemoCase,
    number: int,
    submitted: datetime,
    rng: random.Random,
) -> int:
    user = find_user(pick.requester)
    assert user is not None
    image = settings.dataset_dir / "images" / f"{pick.image_id}.jpg"
    questionnaire = parse_questionnaire(questionnaire_for(pick, number, rng))
    photos = [svc.PhotoUpload(image.read_bytes(), "dermoscopy")]
    with database.session() as session:
        case = svc.create_case(
            session, store, user, questionnaire, photos, now=submitted,
            max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
        )  # fmt: skip
        return case.id


def _advance(
    database: Database,
    case_id: int,
    pick: DemoCase,
    submitted: datetime,
    now: datetime,
    rng: random.Random,
    *,
    close_share: float = 0.7,
) -> datetime | None:
    """Take the case as far through the workflow as its age makes plausible; the GP closes
    about ``close_share`` of the answered cases. Returns when the report was validated (the
    moment an outcome may follow), or None when it is not."""
    age_h = (now - submitted) / timedelta(hours=1)
    if age_h < 72 and rng.random() < 0.6:
        return None  # recent: still waiting in the worklist (some of them past the deadline)
    reader = find_user(rng.choice(["dr-bernard", "dr-nguyen"]))
    senior = find_user(rng.choice(["pr-dubois", "dr-garnier"]))
    gp = find_user(pick.requester)
    assert reader and senior and gp
    malignant = pick.dx in ("mel", "bcc", "akiec")
    first_read = rng.uniform(2, 20) if malignant else rng.uniform(6, 46)
    if age_h < first_read or (age_h < 20 and rng.random() < 0.5):
        return None  # still waiting for its first reading
    t = submitted + timedelta(hours=first_read)

    def step(action: Callable[..., object], user: User, *args: object) -> None:
        with database.session() as session:
            case = svc.get_case(session, case_id, user, for_update=True)
            action(session, case, user, *args)

    step(lambda s, c, u: svc.start_review(s, c, u, t), reader)
    if rng.random() < 0.3:
        ask = t + timedelta(minutes=20)
        step(
            lambda s, c, u: svc.request_info(
                s, c, u, "Pouvez-vous préciser depuis quand la lésion a changé, et joindre "
                "une vue plus large ?", ask,
            ), reader,
        )  # fmt: skip
        answered = ask + timedelta(hours=rng.uniform(3, 30))
        if answered > now:
            return None
        step(
            lambda s, c, u: svc.answer(
                s, c, u, "Modification remarquée par le conjoint il y a environ deux mois.",
                answered,
            ), gp,
        )  # fmt: skip
        t = answered
    written = t + timedelta(hours=rng.uniform(0.3, 4))
    if written > now:
        return None
    said = pick.report_dx or pick.dx
    conduct, interval, diagnosis, text = REPORTS[said]
    content = parse_report(
        {"conduct": conduct, "interval": interval, "diagnosis": diagnosis, "text": text,
         "diagnosis_code": REPORT_CODES[said]}
    )  # fmt: skip
    step(lambda s, c, u: svc.write_report(s, c, u, content, written), reader)
    validated = written + timedelta(hours=rng.uniform(1, 20))
    if validated > now:
        return None
    step(lambda s, c, u: svc.validate(s, c, u, validated), senior)
    closed = validated + timedelta(hours=rng.uniform(4, 60))
    if closed < now and rng.random() < close_share:
        step(lambda s, c, u: svc.close(s, c, u, closed), gp)
    return validated


def _outcome(
    database: Database,
    case_id: int,
    pick: DemoCase,
    validated: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    """Record what the lesion turned out to be, once that is due: the photo's true diagnosis,
    from derm-dev's own confirmation (histology, follow-up or consultation), entered by a
    reader of the centre a few days after it came back."""
    source = OUTCOME_SOURCES.get(pick.dx_type)
    if source is None:
        return
    came_back = validated + timedelta(days=rng.uniform(*OUTCOME_DELAY_DAYS[source]))
    entered = came_back + timedelta(days=rng.uniform(0.5, 6))
    if entered > now:
        return  # not back yet
    reader = find_user(rng.choice(["dr-bernard", "dr-nguyen"]))
    assert reader is not None
    with database.session() as session:
        case = svc.get_case(session, case_id, reader, for_update=True)
        svc.record_outcome(
            session, case, reader, REPORT_CODES[pick.dx], source, came_back.date(), entered
        )
