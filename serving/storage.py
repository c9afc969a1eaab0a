"""Photo storage: one interface, content-addressed files on disk, atomic writes.

Every blob (a sanitised photo, its thumbnail, a saliency overlay) is stored under the SHA-256 of
its bytes, ``<root>/<aa>/<bb>/<sha256>``. Content addressing makes writes idempotent (a retried
upload stores nothing new) and lets the database refer to files by a name that proves their
content. A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
renamed over the final name with ``os.replace`` and the folder is fsync'ed: a crash leaves either
the whole file or none, never half of one.

What is stored is never the upload itself: :meth:`PhotoStore.prepare` re-encodes it through
:func:`pipeline.intake.sanitized_image_bytes`, which applies the EXIF orientation and drops every
metadata field (GPS included).

Files and rows: a case's files are written (durably) *before* its transaction commits, so a
committed row never names a missing file. The reverse, a file no row names, happens when the
transaction then fails or the process dies before the commit. Two things remove those orphans:
:meth:`PhotoStore.remove_unreferenced` right after a failed unit of work (blobs are *pinned* while
a unit of work in this process uses them, so one request's clean-up never deletes a blob another
request is about to commit), and :meth:`PhotoStore.sweep` at start-up for what a crash left
(only blobs older than a grace period, so another process's in-flight upload is safe).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from pipeline.intake import sanitized_image_bytes

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
THUMBNAIL_SIDE = 320


class BlobNotFoundError(LookupError):
    """No blob is stored under that digest."""


@dataclass(frozen=True)
class StoredPhoto:
    """A sanitised photo now on disk, with what the database records about it."""

    sha256: str
    mime: str
    width: int
    height: int
    size_bytes: int
    thumbnail_sha256: str


@dataclass(frozen=True)
class PreparedPhoto:
    """A sanitised photo and its thumbnail, in memory: validated, not yet stored."""

    clean: bytes
    mime: str
    width: int
    height: int
    thumbnail: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.clean).hexdigest()

    @property
    def thumbnail_sha256(self) -> str:
        return hashlib.sha256(self.thumbnail).hexdigest()

    @property
    def digests(self) -> tuple[str, str]:
        return self.sha256, self.thumbnail_sha256


class BlobStore(Protocol):
    """What the service needs from storage; a second backend (object storage) fits behind it."""

    def put(self, data: bytes) -> str: ...

    def get(self, sha256: str) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...


class PhotoStore:
    """Content-addressed blobs under ``root`` (normally ``settings.data_dir / "photos"``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._pins: Counter[str] = Counter()
        self._pin_lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        """Where the blob named ``sha256`` lives; refuses anything that is not a hex digest."""
        if not _SHA256.match(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably, return its SHA-256; storing the same bytes twice is a no-op."""
        return self.write(data)[0]

    def write(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` durably: ``(sha256, created)``, ``created`` false when it was there.

        Durable means: temporary file in the same folder, written and fsync'ed, renamed over the
        final name, then the folder fsync'ed; only then does this return.
        """
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file():
            return digest, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return digest, True

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFoundError(sha256) from exc

    @staticmethod
    def prepare(upload: bytes, *, max_bytes: int, max_pixels: int) -> PreparedPhoto:
        """Sanitise an upload and make its thumbnail, in memory (or raise ``IntakeError``).

        Nothing touches the disk, so a request whose third photo is refused leaves no file.
        """
        clean, mime = sanitized_image_bytes(upload, max_bytes=max_bytes, max_pixels=max_pixels)
        with Image.open(io.BytesIO(clean)) as image:
            width, height = image.size
            thumbnail = make_thumbnail(image)
        return PreparedPhoto(clean, mime, width, height, thumbnail)

    def store(self, prepared: PreparedPhoto) -> tuple[StoredPhoto, list[str]]:
        """Write a prepared photo and its thumbnail: the record, and the digests newly created."""
        sha, created_photo = self.write(prepared.clean)
        thumb, created_thumb = self.write(prepared.thumbnail)
        stored = StoredPhoto(
            sha256=sha,
            mime=prepared.mime,
            width=prepared.width,
            height=prepared.height,
            size_bytes=len(prepared.clean),
            thumbnail_sha256=thumb,
        )
        created = [d for d, new in ((sha, created_photo), (thumb, created_thumb)) if new]
        return stored, created

    def ingest(self, upload: bytes, *, max_bytes: int, max_pixels: int) -> StoredPhoto:
        """Sanitise an upload (or raise ``IntakeError``), store it and its thumbnail."""
        prepared = self.prepare(upload, max_bytes=max_bytes, max_pixels=max_pixels)
        return self.store(prepared)[0]

    # -- orphans -------------------------------------------------------------------------------

    def pin(self, digests: Collection[str]) -> Callable[[], None]:
        """Mark blobs as in use by a unit of work in this process; call the result to release.

        Pin *before* writing or relying on a blob: :meth:`remove_unreferenced` never deletes a
        pinned blob, so a request that found a photo already stored cannot lose it to another
        request's clean-up before its own transaction commits.
        """
        held = list(digests)
        with self._pin_lock:
            self._pins.update(held)
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            with self._pin_lock:
                self._pins.subtract(held)
                for digest in held:
                    if self._pins[digest] <= 0:
                        del self._pins[digest]

        return release

    @contextmanager
    def pinned(self, digests: Collection[str]) -> Iterator[None]:
        release = self.pin(digests)
        try:
            yield
        finally:
            release()

    def remove_unreferenced(
        self, digests: Collection[str], referenced: Callable[[Collection[str]], set[str]]
    ) -> list[str]:
        """Delete those of ``digests`` that no row references and no unit of work has pinned.

        ``referenced`` answers, from the database, which of the given digests some row names.
        Returns the digests removed.
        """
        removed: list[str] = []
        with self._pin_lock:
            candidates = sorted({d for d in digests if self._pins[d] <= 0})
            if not candidates:
                return removed
            keep = referenced(candidates)
            for digest in candidates:
                if digest in keep:
                    continue
                path = self.path(digest)
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                _fsync_dir(path.parent)
                removed.append(digest)
        if removed:
            logger.info("removed %d blob(s) of a unit of work that did not commit", len(removed))
        return removed

    def blobs(self) -> Iterator[tuple[str, float]]:
        """Every stored blob as ``(sha256, modification time)``."""
        for path in self.root.glob("??/??/*"):
            if _SHA256.match(path.name) and path.is_file():
                yield path.name, path.stat().st_mtime

    def sweep(
        self,
        referenced: Callable[[Collection[str]], set[str]],
        *,
        grace_seconds: float = 3600.0,
        now: float | None = None,
    ) -> list[str]:
        """Remove what a crash left: unreferenced blobs and temporary files older than the grace.

        The grace period protects uploads in flight in another process (their files are written
        before their rows commit). Returns the digests removed.
        """
        cutoff = (time.time() if now is None else now) - grace_seconds
        for temp in self.root.glob("??/??/.tmp-*"):
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
            except FileNotFoundError:
                continue
        old = [digest for digest, mtime in self.blobs() if mtime < cutoff]
        removed: list[str] = []
        for start in range(0, len(old), 500):
            removed += self.remove_unreferenced(old[start : start + 500], referenced)
        if removed:
            logger.warning("start-up sweep removed %d orphan blob(s)", len(removed))
        return removed


def make_thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG no larger than ``side`` on its long side, for worklist rows and galleries."""
    copy = image.convert("RGB")
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: fsync the folder entry (a no-op where the OS does not allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("folder fsync not supported for %s", folder)
    finally:
        os.close(fd)


def blob_columns() -> list[Any]:
    """Every database column that names a blob: the ``*sha256`` columns of every table.

    Read from the models' metadata, so a table added later (shadow scores, attachments) is
    covered without touching the clean-up. ``cases.request_sha256`` is a fingerprint of a
    request, not a blob, and is left out.
    """
    from serving.db.models import Base

    return [
        column
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("sha256") and column.name != "request_sha256"
    ]


def database_references(engine: Engine) -> Callable[[Collection[str]], set[str]]:
    """``referenced(digests)``: which of ``digests`` some row of the case database names.

    Runs on its own connection, so it can be called after a session's transaction failed.
    """

    def referenced(digests: Collection[str]) -> set[str]:
        wanted = list(digests)
        found: set[str] = set()
        if not wanted:
            return found
        with engine.connect() as connection:
            for column in blob_columns():
                query = select(column).where(column.in_(wanted)).distinct()
                found.update(connection.scalars(query))
        return found

    return referenced


def write_for_session(
    session: Session, store: PhotoStore, prepared: Sequence[PreparedPhoto]
) -> list[StoredPhoto]:
    """Write prepared photos durably now, tied to ``session``'s unit of work.

    The files are on disk (fsync'ed) when this returns, before the caller commits the rows that
    name them, so an acknowledged case never lacks a photo. If the transaction rolls back
    instead, the files this call created are removed again, unless a committed row names them or
    another unit of work has them pinned. A crash before either leaves orphans for
    :meth:`PhotoStore.sweep`.
    """
    digests = [digest for photo in prepared for digest in photo.digests]
    release = store.pin(digests)
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    created: list[str] = []
    finished = False

    def finish(committed: bool) -> None:
        nonlocal finished
        if finished:
            return
        finished = True
        release()
        if not committed and created:
            store.remove_unreferenced(created, database_references(engine))

    event.listen(session, "after_commit", lambda _session: finish(True))
    event.listen(session, "after_rollback", lambda _session: finish(False))
    stored: list[StoredPhoto] = []
    try:
        for photo in prepared:
            record, new = store.store(photo)
            created.extend(new)
            stored.append(record)
    except BaseException:
        finish(False)
        raise
    return stored
