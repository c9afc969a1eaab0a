"""How fast the real-world figures answer with 10,000 closed cases.

Run: ``python -m benchmarks.real_world [--database-url URL]``.

Generates closed cases (two centres, one dermoscopy photo, a champion score of version 1 and a
shadow score of version 2, a validated coded report, a histology outcome for a third of them)
in a fresh SQLite database (or ``--database-url postgresql+psycopg://...``), then times
:func:`serving.governance_real_world.version_real_world` cold (computed) and warm (cached), the
way the page and the JSON API call it. Prints one line per measure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from serving.db import Database
from serving.db.models import Case, Outcome, Photo, Report, Score
from serving.governance_real_world import version_real_world

MODEL = "dermtriage-classifier"


def generate(db: Database, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    cases, photos, scores, reports, outcomes = [], [], [], [], []
    for i in range(1, n + 1):
        submitted = t0 + timedelta(hours=float(i * 0.8 + rng.uniform(0, 0.5)))
        malignant = rng.random() < 0.2
        p = float(np.clip(rng.beta(2, 5) + 0.35 * malignant, 0, 1))
        cases.append(
            dict(
                id=i, status="closed", submitted_at=submitted, updated_at=submitted,
                requester_id="dr-martin", requester_name="Dr", requester_organisation="Cabinet",
                centre="crd-lyon" if i % 3 else "crd-grenoble", patient_pseudonym=f"B-{i}",
                questionnaire={"fitzpatrick": str(rng.choice(["I", "II", "III", "IV", "V"])),
                               "body_site": str(rng.choice(["back", "face", "chest", "leg"])),
                               "age": int(rng.integers(20, 90))},
                scoring_state="done",
                first_read_at=submitted + timedelta(hours=float(rng.uniform(1, 40))),
                scoring_attempts=1, version=1, reuse_consent=False,
            )
        )  # fmt: skip
        photos.append(
            dict(id=i, case_id=i, position=0, kind="dermoscopy", sha256="0" * 64,
                 mime="image/jpeg", width=224, height=224, size_bytes=1, thumbnail_sha256="0" * 64,
                 quality_acceptable=True, created_at=submitted)
        )  # fmt: skip
        for version, role, q in (
            (1, "champion", p),
            (2, "shadow", float(np.clip(p + rng.normal(0, 0.1), 0, 1))),
        ):
            scores.append(
                dict(case_id=i, photo_id=i, photo_position=0, model_version=f"{MODEL}/{version}",
                     p_malignant=q, uncertainty=float(rng.uniform(0, 0.5)), predicted_class="nv",
                     superseded=False, created_at=submitted + timedelta(minutes=version), role=role)
            )  # fmt: skip
        code = "melanoma" if malignant else "naevus"
        reports.append(
            dict(case_id=i, conduct="monitor", interval=6, diagnosis="", diagnosis_code=code,
                 text="x", author_id="dr-bernard", author_name="Dr", revision=1,
                 written_at=submitted + timedelta(hours=41), validated_by_id="pr-dubois",
                 validated_by_name="Pr", validated_at=submitted + timedelta(hours=42))
        )  # fmt: skip
        if rng.random() < 0.33:
            outcomes.append(
                dict(case_id=i, diagnosis_code=code, outcome_date=date(2025, 6, 1),
                     source="histology", recorded_by_id="dr-bernard", recorded_by_name="Dr",
                     recorded_at=submitted + timedelta(days=20))
            )  # fmt: skip
    with db.session() as session:
        for model, rows in ((Case, cases), (Photo, photos), (Score, scores), (Report, reports),
                            (Outcome, outcomes)):  # fmt: skip
            for start in range(0, len(rows), 2000):
                session.execute(insert(model), rows[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        db.upgrade()
        generate(db, args.cases)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        for label in ("cold", "warm"):
            start = time.perf_counter()
            with db.session() as session:
                found = version_real_world(
                    session, MODEL, "1", registered={"sens_at_95_spec": 0.72}, now=now,
                    deadline_hours=48.0, challenger="2",
                )  # fmt: skip
            elapsed = time.perf_counter() - start
            print(
                f"{url.split(':')[0]} {args.cases} cases, {label}: {elapsed:.2f} s "
                f"({found.figures.overall.n_cases} confirmed, "
                f"{len(found.figures.subgroups)} subgroups, challenger on the same cases)"
            )
        db.dispose()


if __name__ == "__main__":
    main()
