"""``dermtriage dataset export``: the consented, validated cases as a derm-dev style folder.

What each case contributes and how it is pseudonymised is decided by
:mod:`pipeline.dataset_export`; this module walks the database and the photo store and writes:

- ``images/<image_id>.jpg``: the stored (already sanitised, metadata-free) photo; a PNG upload is
  re-encoded as JPEG (quality 95) so every image has derm-dev's name and format;
- ``metadata.csv``: one row per image (:data:`pipeline.dataset_export.METADATA_COLUMNS`);
- ``SHA256SUMS``: the hash of every file above, in ``sha256sum -c`` format;
- ``manifest.json``: counts, the classes, what was left out and why, the pseudonymisation rules,
  and the hashes of ``metadata.csv`` and ``SHA256SUMS`` (so one hash pins the whole folder).

No ``masks/`` folder: a live case stores no lesion outline drawn by a person (the quality
check's learned outline is a model's guess, kept as measurements only).

Memory stays bounded whatever the number of cases: the database is read by id in chunks of
narrow rows (no ORM objects, no score probabilities), photos are copied one at a time, and the
rows and hashes are streamed to their files. The folder is written under a temporary name beside
``out`` and renamed at the end, so a failed export leaves nothing that looks finished.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from pipeline.dataset_export import (
    DATASET_NAME,
    METADATA_COLUMNS,
    CaseFacts,
    PhotoFacts,
    Tally,
    export_case,
)
from serving.db.models import SCORE_ROLE_CHAMPION, Case, Photo, Report, Score
from serving.db.session import Database
from serving.outcomes import reference_diagnoses
from serving.storage import PhotoStore

logger = logging.getLogger(__name__)

FORMAT = "dermtriage-dataset/1"
DEFAULT_CHUNK = 200
KEY_BYTES = 32


class ExportError(RuntimeError):
    """The export cannot start (the output folder is taken, the key is unreadable...)."""


@dataclass(frozen=True)
class ExportResult:
    """Where the folder is and what its manifest says."""

    out_dir: Path
    manifest: dict[str, Any]


def pseudonymisation_key(path: Path) -> bytes:
    """The installation's export key, made once (32 random bytes, owner-only) and then reused.

    The same key on every export keeps a lesion's identifier stable across exports; keeping it
    in the data folder, never in an export, is what makes the identifiers pseudonyms.
    """
    if path.is_file():
        key = path.read_bytes()
        if len(key) < 16:
            raise ExportError(f"{path}: the pseudonymisation key is too short ({len(key)} bytes)")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    logger.info("created the dataset export key %s", path)
    return key


def export_dataset(
    database: Database,
    store: PhotoStore,
    out_dir: Path,
    *,
    key: bytes,
    now: datetime,
    chunk_size: int = DEFAULT_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the consented, validated cases to ``out_dir`` (which must not exist or be empty).

    ``on_chunk`` is called with the number of cases read so far after each chunk (progress, and
    the memory benchmark's sampling point).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not an empty folder: choose a new one")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        manifest = _write(database, store, staging, key=key, now=now, chunk_size=chunk_size,
                          on_chunk=on_chunk)  # fmt: skip
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "exported %d images of %d cases to %s", manifest["images"], manifest["cases"], out_dir
    )
    return ExportResult(out_dir, manifest)


def _write(
    database: Database,
    store: PhotoStore,
    folder: Path,
    *,
    key: bytes,
    now: datetime,
    chunk_size: int,
    on_chunk: Callable[[int], None] | None,
) -> dict[str, Any]:
    images_dir = folder / "images"
    images_dir.mkdir()
    tally = Tally()
    converted = 0
    read = 0
    with (
        (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as metadata,
        (folder / "SHA256SUMS").open("w", encoding="utf-8") as sums,
    ):
        writer = csv.writer(metadata, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for chunk in _consented_validated(database, chunk_size):
            read += len(chunk)
            for facts in chunk:
                missing = frozenset(p.sha256 for p in facts.photos if not store.exists(p.sha256))
                export = export_case(facts, key, missing=missing)
                tally.add(export)
                for image in export.images:
                    data, was_png = _jpeg_bytes(store.get(image.source_sha256))
                    converted += was_png
                    name = f"images/{image.row.image_id}.jpg"
                    (folder / name).write_bytes(data)
                    sums.write(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
                    writer.writerow(image.row.as_csv_row())
            if on_chunk is not None:
                on_chunk(read)
    metadata_sha = _file_sha256(folder / "metadata.csv")
    with (folder / "SHA256SUMS").open("a", encoding="utf-8") as sums:
        sums.write(f"{metadata_sha}  metadata.csv\n")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": DATASET_NAME,
        "created": now.date().isoformat(),
        "layout": "derm-dev: images/<image_id>.jpg, metadata.csv (one row per image)",
        "columns": list(METADATA_COLUMNS),
        **tally.summary(),
        "cases_read": read,
        "validated_without_consent": _validated_without_consent(database),
        "png_reencoded_as_jpeg": converted,
        "masks": "none: live cases store no lesion outline drawn by a person",
        "pseudonymisation": {
            "identifiers": "HMAC-SHA256 of the case's GP, patient pseudonym and body site "
            "(lesion_id) and of the photo (image_id) with the installation's export key",
            "kept": "age floored to 5 years (capped at 85), sex, body site, skin phototype, "
            "photo domain and kind, centre, month of submission",
            "removed": "names, RPPS numbers, patient pseudonyms, clinical question, treatments, "
            "allergies, report text, dates finer than the month, photo metadata (EXIF)",
        },
        "files": {
            "metadata.csv": metadata_sha,
            "SHA256SUMS": _file_sha256(folder / "SHA256SUMS"),
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _consented_validated(database: Database, chunk_size: int) -> Iterator[list[CaseFacts]]:
    """The cases to consider, ``chunk_size`` at a time, in id order, as plain values."""
    last = 0
    while True:
        with database.session() as session:
            rows = session.execute(
                select(
                    Case.id,
                    Case.requester_id,
                    Case.centre,
                    Case.submitted_at,
                    Case.questionnaire,
                )
                .join(Report, Report.case_id == Case.id)
                .where(
                    Case.reuse_consent.is_(True),
                    Report.validated_at.is_not(None),
                    Case.id > last,
                )
                .order_by(Case.id)
                .limit(chunk_size)
            ).all()
            if not rows:
                return
            ids = [row.id for row in rows]
            references = reference_diagnoses(session, ids)
            domains = dict(
                session.execute(
                    select(Score.photo_id, Score.domain).where(
                        Score.case_id.in_(ids),
                        Score.superseded.is_(False),
                        Score.role == SCORE_ROLE_CHAMPION,
                    )
                ).all()
            )
            photos: dict[int, list[PhotoFacts]] = {}
            for photo in session.execute(
                select(Photo.id, Photo.case_id, Photo.kind, Photo.sha256, Photo.quality_acceptable)
                .where(Photo.case_id.in_(ids))
                .order_by(Photo.case_id, Photo.position)
            ):
                photos.setdefault(photo.case_id, []).append(
                    PhotoFacts(
                        photo_id=photo.id,
                        kind=photo.kind,
                        sha256=photo.sha256,
                        quality_acceptable=photo.quality_acceptable,
                        domain=domains.get(photo.id),
                    )
                )
        yield [
            CaseFacts(
                case_id=row.id,
                requester_id=row.requester_id,
                centre=row.centre,
                submitted_at=row.submitted_at,
                questionnaire=row.questionnaire,
                photos=photos.get(row.id, []),
                reference=references.get(row.id),
            )
            for row in rows
        ]
        last = ids[-1]


def _validated_without_consent(database: Database) -> int:
    with database.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Case)
                .join(Report, Report.case_id == Case.id)
                .where(Case.reuse_consent.is_(False), Report.validated_at.is_not(None))
            )
            or 0
        )


def _jpeg_bytes(data: bytes) -> tuple[bytes, bool]:
    """The photo as JPEG bytes, unchanged when it already is one; ``(bytes, re-encoded)``."""
    if data[:3] == b"\xff\xd8\xff":
        return data, False
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), True


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
