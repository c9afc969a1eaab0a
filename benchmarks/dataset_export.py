"""Does ``dermtriage dataset export`` stay within bounded memory as the cases grow?

Run: ``python -m benchmarks.dataset_export [--cases 1000 10000] [--database-url URL]``.

For each size, generates that many closed, consented, validated cases (one dermoscopy photo
each, 20 real derm-dev photos stored once and shared, a champion score with the modality
verdict, a coded report: seven diagnoses with a class and one without) in a fresh SQLite
database (or ``--database-url``: an empty throwaway database, one size), exports them, and
prints the wall time and the peak of Python memory allocated during the export
(``tracemalloc``), which should not grow with the number of cases (the photos' bytes pass
through one at a time).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from serving.dataset_export import export_dataset
from serving.db import Database
from serving.db.models import Case, Photo, Report, Score
from serving.settings import Settings
from serving.storage import PhotoStore

CODES = ("melanoma", "bcc", "ak_bowen", "seborrhoeic_keratosis", "dermatofibroma", "naevus",
         "vascular", "inflammatory")  # fmt: skip


def generate(db: Database, store: PhotoStore, n: int, photos: list[bytes]) -> None:
    """``n`` closed cases with consent, bulk-inserted 2,000 rows at a time."""
    shas = [store.put(data) for data in photos]
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    cases, rows_photo, scores, reports = [], [], [], []
    for i in range(1, n + 1):
        at = t0 + timedelta(hours=i)
        cases.append(
            dict(id=i, status="closed", submitted_at=at, updated_at=at, requester_id="dr-martin",
                 requester_name="Dr Claire Martin", requester_organisation="Cabinet",
                 centre="crd-lyon", patient_pseudonym=f"B-{i}",
                 questionnaire={"patient_pseudonym": f"B-{i}", "age": 20 + i % 70,
                                "sex": "female", "fitzpatrick": "II", "body_site": "back",
                                "clinical_question": "question"},
                 scoring_state="done", scoring_attempts=1, version=1, reuse_consent=True)
        )  # fmt: skip
        sha = shas[i % len(shas)]
        rows_photo.append(
            dict(id=i, case_id=i, position=0, kind="dermoscopy", sha256=sha, mime="image/jpeg",
                 width=224, height=224, size_bytes=1, thumbnail_sha256=sha,
                 quality_acceptable=True, created_at=at)
        )  # fmt: skip
        scores.append(
            dict(case_id=i, photo_id=i, photo_position=0, model_version="m/1", p_malignant=0.2,
                 uncertainty=0.1, predicted_class="nv", superseded=False, created_at=at,
                 role="champion", domain="dermoscopic")
        )  # fmt: skip
        reports.append(
            dict(case_id=i, conduct="monitor", interval=6, diagnosis="", text="x",
                 diagnosis_code=CODES[i % len(CODES)], author_id="dr-bernard", author_name="Dr",
                 revision=1, written_at=at, validated_by_id="pr-dubois", validated_by_name="Pr",
                 validated_at=at + timedelta(hours=1))
        )  # fmt: skip
    with db.session() as session:
        for model, rows in ((Case, cases), (Photo, rows_photo), (Score, scores),
                            (Report, reports)):  # fmt: skip
            for start in range(0, len(rows), 2000):
                session.execute(insert(model), rows[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--database-url", help="default: a fresh SQLite file per size")
    args = parser.parse_args()
    if args.database_url and len(args.cases) != 1:
        parser.error("--database-url takes one --cases size (the database must start empty)")
    images = sorted((Settings().dataset_dir / "images").glob("*.jpg"))[:20]
    photos = [path.read_bytes() for path in images]
    for n in args.cases:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
            db = Database(url)
            db.upgrade()
            with db.session() as session:
                if session.query(Case.id).first() is not None:
                    raise SystemExit(f"{url.split('@')[-1]} holds cases: give an empty database")
            store = PhotoStore(Path(tmp) / "photos")
            generate(db, store, n, photos)
            tracemalloc.start()
            start = time.perf_counter()
            result = export_dataset(db, store, Path(tmp) / "export", key=b"b" * 32,
                                    now=datetime.now(UTC))  # fmt: skip
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(
                f"{url.split(':')[0]} {n} cases: {result.manifest['images']} images exported "
                f"in {elapsed:.1f} s, peak Python memory during the export {peak / 2**20:.1f} MiB"
            )
            db.dispose()
            shutil.rmtree(Path(tmp) / "export", ignore_errors=True)


if __name__ == "__main__":
    main()
