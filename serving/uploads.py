"""Reading one uploaded file from a multipart request without trusting the client about its size.

FastAPI's ``UploadFile`` parameters parse the whole body before the route runs, so a client could
stream gigabytes to disk before any limit is checked. :func:`read_single_upload` instead refuses
at once when ``Content-Length`` announces too much, and otherwise counts the bytes as they
arrive and stops reading the moment the body passes the limit (chunked uploads included). What
it returns is the whole file in memory, at most ``max_bytes`` long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import Message, Receive

logger = logging.getLogger(__name__)

#: Room for the multipart envelope around the file: boundaries, part headers, a few small fields.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadError(Exception):
    """A request that carries no acceptable file; ``status`` and ``code`` say why."""

    status: int = 400
    code: str = "bad_upload"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadTooLargeError(UploadError):
    status = 413
    code = "too_large"


class MissingUploadError(UploadError):
    status = 422
    code = "missing_file"


class NotMultipartError(UploadError):
    status = 415
    code = "not_multipart"


class MalformedUploadError(UploadError):
    status = 400
    code = "malformed_multipart"


@dataclass(frozen=True)
class Upload:
    """One received file: the name the client gave it (may be empty) and its bytes."""

    filename: str
    content_type: str | None
    data: bytes


def _limited(receive: Receive, limit: int, max_bytes: int) -> Receive:
    """``receive`` that raises :class:`UploadTooLargeError` once the body exceeds ``limit``."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(max_bytes)
        return message

    return receive_limited


def _too_large(max_bytes: int) -> UploadTooLargeError:
    return UploadTooLargeError(f"the file exceeds the limit of {max_bytes} bytes")


async def read_single_upload(request: Request, field: str, *, max_bytes: int) -> Upload:
    """The file sent in multipart field ``field``, at most ``max_bytes`` long.

    Raises :class:`UploadError` subclasses: 413 ``too_large`` (announced or actual size),
    415 ``not_multipart``, 422 ``missing_file`` (no such field, or a field that is not a file),
    400 ``malformed_multipart``. Temporary files of the parse are always closed.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise NotMultipartError("send the photo as multipart/form-data")
    body_limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > body_limit:
        raise _too_large(max_bytes)

    limited = Request(request.scope, _limited(request.receive, body_limit, max_bytes))
    try:
        form = await limited.form(max_files=1, max_fields=8)
    except StarletteHTTPException as exc:  # Starlette's verdict on a malformed multipart body
        raise MalformedUploadError(str(exc.detail)) from exc
    try:
        part = form.get(field)
        if not isinstance(part, UploadFile):
            raise MissingUploadError(f"no file in the multipart field {field!r}")
        if not part.filename and not part.size:  # a form submitted with no file chosen
            raise MissingUploadError(f"the multipart field {field!r} holds no file")
        if part.size is not None and part.size > max_bytes:
            raise _too_large(max_bytes)
        data = await part.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _too_large(max_bytes)
        return Upload(filename=part.filename or "", content_type=part.content_type, data=data)
    finally:
        await form.close()
