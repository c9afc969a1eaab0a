"""Photo storage: one interface, content-addressed files on disk, atomic writes.

Every blob (a sanitised photo, its thumbnail, a saliency overlay) is stored under the SHA-256 of
its bytes, ``<root>/<aa>/<bb>/<sha256>``. Content addressing makes writes idempotent (a retried
upload stores nothing new) and lets the database refer to files by a name that proves their
content. A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
renamed over the final name with ``os.replace`` and the folder is fsync'ed: a crash leaves either
the whole file or none, never half of one.

What is stored is never the upload itself: :meth:`PhotoStore.ingest` re-encodes it through
:func:`pipeline.intake.sanitized_image_bytes`, which applies the EXIF orientation and drops every
metadata field (GPS included).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

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
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file():
            return digest
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
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFoundError(sha256) from exc

    def ingest(self, upload: bytes, *, max_bytes: int, max_pixels: int) -> StoredPhoto:
        """Sanitise an upload (or raise ``IntakeError``), store it and its thumbnail."""
        clean, mime = sanitized_image_bytes(upload, max_bytes=max_bytes, max_pixels=max_pixels)
        with Image.open(io.BytesIO(clean)) as image:
            width, height = image.size
            thumbnail = make_thumbnail(image)
        return StoredPhoto(
            sha256=self.put(clean),
            mime=mime,
            width=width,
            height=height,
            size_bytes=len(clean),
            thumbnail_sha256=self.put(thumbnail),
        )


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
