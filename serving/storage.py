"""Photo storage: one interface, content-addressed files on disk, atomic writes.

Every blob (a sanitised photo, its thumbnail, a saliency overlay) is stored under the SHA-256 of
its bytes, ``<root>/<aa>/<bb>/<sha256>``. Content addressing makes writes idempotent (a retried
upload stores nothing new) and lets the database refer to files by a name that proves their
content. A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
linked to its final name and the folder is fsync'ed: a crash leaves either the whole file or
none, never half of one.

What is stored is never the upload itself: :meth:`PhotoStore.prepare` re-encodes it through
:func:`pipeline.intake.sanitized_image_bytes`, which applies the EXIF orientation and drops every
metadata field (GPS included).

Files and rows: a case's files are written (durably) *before* its transaction commits, so a
committed row never names a missing file. The reverse, a file no row names, happens when the
transaction then fails or the process dies before the commit. Two things remove those orphans:
:meth:`PhotoStore.remove_unreferenced` right after a failed unit of work, and
:meth:`PhotoStore.sweep` at start-up for what a crash left (only blobs older than a grace
period). A unit of work *holds* its blobs (a shared file lock, valid across processes) until it
commits or rolls back, and a clean-up deletes only a blob it can lock exclusively and that no
committed row names, so one request's clean-up never deletes a blob another is about to commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import re
import tempfile
import time
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

        Durable means: temporary file in the same folder, written and fsync'ed, given its final
        name atomically, then the folder fsync'ed; only then does this return. The final name is
        made with a hard link, which fails if the name exists, rather than a rename over it: when
        two requests store the same photo at once, the first file stays in place (a hold taken on
        it stays valid) and the second request finds it there (``created`` false).
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
            try:
                os.link(tmp_name, target)
                created = True
            except FileExistsError:
                created = False
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return digest, created

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

    # -- holds and orphans ---------------------------------------------------------------------

    def write_and_hold(self, data: bytes) -> tuple[str, bool, Callable[[], None]]:
        """Store ``data`` durably and hold it until the returned ``release`` is called.

        Returns ``(sha256, created, release)``. A hold is a shared ``flock`` on the blob file, so
        it works across threads *and* processes: :meth:`remove_unreferenced` takes an exclusive
        lock before deleting and skips a held blob. Taking the lock, then checking that the path
        still names the locked file, closes the race with a clean-up that deleted it in between
        (the blob is then simply written again).
        """
        while True:
            digest, created = self.write(data)
            path = self.path(digest)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # removed between the write and the open: write it again
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _same_file(path, fd):
                return digest, created, _closer(fd)
            os.close(fd)

    @contextmanager
    def holding(self, data: bytes) -> Iterator[str]:
        """:meth:`write_and_hold` as a context: the blob is held inside the block."""
        digest, _, release = self.write_and_hold(data)
        try:
            yield digest
        finally:
            release()

    def remove_unreferenced(
        self, digests: Collection[str], referenced: Callable[[Collection[str]], set[str]]
    ) -> list[str]:
        """Delete those of ``digests`` that no row references and no unit of work holds.

        Each candidate is locked exclusively first (a held blob is skipped), *then* the database
        is asked which of the locked ones some row names (``referenced``), so a unit of work that
        commits in between cannot lose its file. Returns the digests removed.
        """
        locked: dict[str, int] = {}
        removed: list[str] = []
        try:
            for digest in sorted(set(digests)):
                path = self.path(digest)
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # held by a unit of work, here or in another process
                    os.close(fd)
                    continue
                if not _same_file(path, fd):
                    os.close(fd)
                    continue
                locked[digest] = fd
            keep = referenced(list(locked)) if locked else set()
            for digest in locked:
                if digest in keep:
                    continue
                path = self.path(digest)
                path.unlink()
                _fsync_dir(path.parent)
                removed.append(digest)
        finally:
            for fd in locked.values():
                os.close(fd)
        if removed:
            logger.info("removed %d blob(s) that no row names", len(removed))
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
    name them, so an acknowledged case never lacks a photo. They stay *held* (see
    :meth:`PhotoStore.write_and_hold`) until the transaction ends, so no other request's
    clean-up can take them meanwhile. If the transaction rolls back instead of committing, the
    files this call created are removed again, unless a committed row names them or another unit
    of work holds them. A crash before either leaves orphans for :meth:`PhotoStore.sweep`.
    """
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    releases: list[Callable[[], None]] = []
    created: list[str] = []
    finished = False

    def finish(committed: bool) -> None:
        nonlocal finished
        if finished:
            return
        finished = True
        for release in releases:
            release()
        if not committed and created:
            store.remove_unreferenced(created, database_references(engine))

    event.listen(session, "after_commit", lambda _session: finish(True))
    event.listen(session, "after_rollback", lambda _session: finish(False))
    stored: list[StoredPhoto] = []
    try:
        for photo in prepared:
            sha, new_photo, release_photo = store.write_and_hold(photo.clean)
            releases.append(release_photo)
            thumb, new_thumb, release_thumb = store.write_and_hold(photo.thumbnail)
            releases.append(release_thumb)
            created.extend(d for d, new in ((sha, new_photo), (thumb, new_thumb)) if new)
            stored.append(
                StoredPhoto(
                    sha256=sha,
                    mime=photo.mime,
                    width=photo.width,
                    height=photo.height,
                    size_bytes=len(photo.clean),
                    thumbnail_sha256=thumb,
                )
            )
    except BaseException:
        finish(False)
        raise
    return stored


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not deleted nor replaced)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _closer(fd: int) -> Callable[[], None]:
    """A release function closing ``fd`` once (closing drops its lock)."""
    closed = False

    def release() -> None:
        nonlocal closed
        if not closed:
            closed = True
            os.close(fd)

    return release
