"""A realistic demo for a newcomer's first look: three dozen cases from derm-dev photos.

:func:`seed_demo` creates cases from real derm-dev images with plausible questionnaires (age, sex
and body site from the image's metadata; red flags drawn more often for malignant lesions, as in
real referrals), spread over the last ten weeks and taken through the workflow as a resource
centre would: older cases are answered, validated and closed; recent ones wait in the worklist,
some with a question to the GP. Every case is scored by the service's own model when it can be
loaded (otherwise the scoring worker scores them as soon as a model is available).

Idempotent: demo cases carry ``DEMO-`` pseudonyms, and nothing is added when some exist.
Deterministic: the same data set gives the same demo.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select

from pipeline.diagnosis import DiagnosisCode
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


def choose_images(
    metadata: pd.DataFrame, plan: dict[str, int] = PLAN, seed: int = 7
) -> list[DemoCase]:
    """A fixed, diagnosis-balanced pick of images with usable metadata (``plan``: dx -> count)."""
    rng = random.Random(seed)
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
                )
            )
    rng.shuffle(picks)
    # Spread over ten weeks; 40 % arrived in the last 3 days and are still in the worklist.
    spread = []
    for i, pick in enumerate(picks):
        days = rng.uniform(0.05, 3.0) if i < len(picks) * 2 // 5 else rng.uniform(3.0, 70.0)
        spread.append(DemoCase(**{**pick.__dict__, "days_ago": round(days, 3)}))
    return sorted(spread, key=lambda c: -c.days_ago)


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
) -> int:
    """Create the demo cases unless they exist; returns how many were created.

    ``load_predictor`` defaults to the service's model (the registered champion); ``plan`` says
    how many cases of each diagnosis to make (tests use a small one).
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
        picks = choose_images(pd.read_csv(metadata_path), plan)
        store = PhotoStore(settings.data_dir / "photos")
        loader = load_predictor or default_predictor_loader(
            settings.model_uri, settings.tracking_uri
        )
        clock_value = {"now": now}
        worker = ScoringWorker(database, store, loader, clock=lambda: clock_value["now"])
        rng = random.Random(11)
        for number, pick in enumerate(picks, start=1):
            submitted = now - timedelta(days=pick.days_ago)
            case_id = _create(database, store, settings, pick, number, submitted, rng)
            clock_value["now"] = submitted + timedelta(minutes=rng.uniform(0.2, 3))
            if not worker.score_case(case_id):
                logger.warning("demo case %s left queued for scoring", case_id)
            _advance(database, case_id, pick, submitted, now, rng)
        logger.info("seeded %d demo cases", len(picks))
        return len(picks)
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
) -> None:
    """Take the case as far through the workflow as its age makes plausible."""
    age_h = (now - submitted) / timedelta(hours=1)
    if age_h < 72 and rng.random() < 0.6:
        return  # recent: still waiting in the worklist (some of them past the deadline)
    reader = find_user(rng.choice(["dr-bernard", "dr-nguyen"]))
    senior = find_user(rng.choice(["pr-dubois", "dr-garnier"]))
    gp = find_user(pick.requester)
    assert reader and senior and gp
    malignant = pick.dx in ("mel", "bcc", "akiec")
    first_read = rng.uniform(2, 20) if malignant else rng.uniform(6, 46)
    if age_h < first_read or (age_h < 20 and rng.random() < 0.5):
        return  # still waiting for its first reading
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
            return
        step(
            lambda s, c, u: svc.answer(
                s, c, u, "Modification remarquée par le conjoint il y a environ deux mois.",
                answered,
            ), gp,
        )  # fmt: skip
        t = answered
    written = t + timedelta(hours=rng.uniform(0.3, 4))
    if written > now:
        return
    conduct, interval, diagnosis, text = REPORTS[pick.dx]
    content = parse_report(
        {"conduct": conduct, "interval": interval, "diagnosis": diagnosis, "text": text,
         "diagnosis_code": REPORT_CODES[pick.dx]}
    )  # fmt: skip
    step(lambda s, c, u: svc.write_report(s, c, u, content, written), reader)
    validated = written + timedelta(hours=rng.uniform(1, 20))
    if validated > now:
        return
    step(lambda s, c, u: svc.validate(s, c, u, validated), senior)
    closed = validated + timedelta(hours=rng.uniform(4, 60))
    if closed < now and rng.random() < 0.7:
        step(lambda s, c, u: svc.close(s, c, u, closed), gp)
