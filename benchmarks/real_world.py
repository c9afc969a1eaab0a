"""How fast the real-world figures answer with 10,000 closed cases.

Run: ``python -m benchmarks.real_world [--database-url URL]``.

Generates closed cases (two centres, one dermoscopy photo, a champion score of version 1 and a
shadow score of version 2, a validated coded report, a histology outcome for a third of them)
in a fresh SQLite database (or ``--database-url postgresql+psycopg://...``, an empty database),
then times :func:`serving.governance_real_world.version_real_world` the way the service uses it:

- ``first computation``: nothing stored yet (what the service does once at start, in the
  background, before any reader comes);
- ``page, stored``: a page or API call on unchanged data (reads the stored result);
- ``page, after an outcome``: a page right after a new outcome (answers from the stored result
  and starts the recomputation in the background);
- ``background recomputation``: until the recomputed figures are stored.

Prints one line per measure, wall-clock and CPU seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from serving.db import Database
from serving.db.models import Case, Outcome, Photo, Report, Score
from serving.governance_real_world import version_real_world, wait_for_refreshes

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

        def look(stale_ok: bool = True):  # -> RealWorldReport
            with db.session() as session:
                return version_real_world(
                    session, MODEL, "1", registered={"sens_at_95_spec": 0.72}, now=now,
                    deadline_hours=48.0, challenger="2", stale_ok=stale_ok,
                )  # fmt: skip

        def timed(label: str, action: Callable[[], Any]) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            result = action()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"{url.split(':')[0]} {args.cases} cases, {label}: {wall:.2f} s ({cpu:.2f} s CPU)"
            )
            return result

        found = timed("first computation", look)
        print(
            f"  ({found.figures.overall.n_cases} confirmed, {len(found.figures.subgroups)} "
            "subgroups, challenger on the same cases)"
        )
        timed("page, stored", look)
        with db.session() as session:
            session.add(
                Outcome(case_id=1, diagnosis_code="melanoma", outcome_date=date(2025, 6, 2),
                        source="histology", recorded_by_id="dr-bernard", recorded_by_name="Dr",
                        recorded_at=now)
            )  # fmt: skip
        stale = timed("page, after an outcome", look)
        assert stale.refreshing
        timed("background recomputation", wait_for_refreshes)
        assert not look().refreshing
        db.dispose()


if __name__ == "__main__":
    main()
