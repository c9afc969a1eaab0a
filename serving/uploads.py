"""Reading uploaded files from a multipart request without trusting the client about anything.

FastAPI's ``UploadFile`` parameters parse the whole body before the route runs, so a client could
stream gigabytes to disk before any limit is checked. Here every limit is enforced while the
bytes arrive, and the request is refused the moment one is passed:

- :class:`RequestSizeLimitMiddleware` caps every request body (``max_request_bytes``): refused at
  once when ``Content-Length`` announces too much, else when the streamed bytes pass the limit
  (chunked uploads included). It answers 413 in JSON for the API and as a French or English page
  for the pages.
- :func:`read_case_form` parses a multipart case submission as a stream: each file is capped at
  ``max_file_bytes`` as its bytes arrive, the number of files and fields is capped, and what it
  returns is at most the limits' worth of bytes in memory.
- :func:`read_single_upload` does the same for the one-photo quality check.

File names are the client's words, never ours: they are not used for any storage path (photos
are stored under the SHA-256 of their re-encoded bytes) and :func:`display_name` makes one safe
to show back (no folders, no control characters, bounded length; templates escape it again).
"""

from __future__ import annotations

import html
import json
import logging
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class TooManyFilesError(UploadError):
    status = 422
    code = "too_many_files"


class RequestTooLargeError(StarletteHTTPException):
    """The request body passed ``max_request_bytes`` while it streamed in.

    An ``HTTPException`` so that FastAPI's own body parsing lets it through unchanged (it turns
    other exceptions into a 400); :class:`RequestSizeLimitMiddleware` answers it.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request exceeds the limit of {limit} bytes")
        self.limit = limit


#: Characters never shown back from a file name (markup and quoting), escaping or not.
_UNSHOWN = frozenset("<>\"'`&")

#: Longest file name shown back to a user, in characters.
DISPLAY_NAME_MAX = 80


def display_name(raw: str | None) -> str:
    """A client-supplied file name made safe to show (never to use as a path).

    Keeps the last path component (``../../etc/passwd`` -> ``passwd``, ``C:\\x\\y.jpg`` ->
    ``y.jpg``), drops control and format characters (NUL, newlines, bidi overrides that disguise
    an extension) and markup characters, normalises Unicode and cuts it to
    :data:`DISPLAY_NAME_MAX` characters.
    """
    text = unicodedata.normalize("NFC", raw or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(
        ch
        for ch in text
        if (unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ") and ch not in _UNSHOWN
    )
    text = text.strip(" .")
    if len(text) > DISPLAY_NAME_MAX:
        text = text[: DISPLAY_NAME_MAX - 1] + "…"
    return text or "photo"


@dataclass(frozen=True)
class Upload:
    """One received file: the name the client gave it (may be empty) and its bytes."""

    filename: str
    content_type: str | None
    data: bytes
    field: str = ""


@dataclass
class MultipartForm:
    """A parsed multipart body: text fields (each may repeat) and files, in arrival order."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = field(default_factory=bytearray)


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


class _StreamingForm:
    """The callbacks of ``python_multipart``'s parser, enforcing the limits part by part."""

    def __init__(
        self, *, max_file_bytes: int, max_files: int, max_fields: int, max_field_bytes: int
    ) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.form = MultipartForm()
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.field_count = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        name = bytes(self.header_field).decode("latin-1").strip().lower()
        self.part.headers[name] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        # Raw bytes: a UTF-8 file name must not crash the header parser (it works in latin-1).
        disposition, options = parse_options_header(
            self.part.headers.get("content-disposition", b"")
        )
        if disposition != b"form-data" or b"name" not in options:
            raise MalformedUploadError("a multipart part has no form-data name")
        self.part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            self.part.filename = options[b"filename"].decode("utf-8", "replace")
            declared = self.part.headers.get("content-type")
            self.part.content_type = declared.decode("latin-1") if declared else None
            if len(self.form.files) + 1 > self.max_files:
                raise TooManyFilesError(f"at most {self.max_files} files per request")
        else:
            self.field_count += 1
            if self.field_count > self.max_fields:
                raise MalformedUploadError(f"at most {self.max_fields} form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        limit = self.max_file_bytes if part.filename is not None else self.max_field_bytes
        if len(part.data) + (end - start) > limit:
            if part.filename is not None:
                raise UploadTooLargeError(
                    f"the file {display_name(part.filename)!r} exceeds the limit of "
                    f"{self.max_file_bytes} bytes"
                )
            raise UploadTooLargeError(f"the field {part.name[:40]!r} exceeds {limit} bytes")
        part.data += data[start:end]

    def on_part_end(self) -> None:
        part = self.part
        if part.filename is None:
            self.form.fields.setdefault(part.name, []).append(
                bytes(part.data).decode("utf-8", "replace")
            )
            return
        if not part.filename and not part.data:  # a file input left empty on a form
            return
        self.form.files.append(
            Upload(
                filename=part.filename,
                content_type=part.content_type,
                data=bytes(part.data),
                field=part.name,
            )
        )


async def read_case_form(
    request: Request,
    *,
    max_file_bytes: int,
    max_files: int,
    max_fields: int = 16,
    max_field_bytes: int = 64 * 1024,
) -> MultipartForm:
    """Parse a ``multipart/form-data`` body as it streams in, within every limit.

    A URL-encoded form (what a browser sends when no file was chosen) is read as fields and no
    file, so the caller can say which field is missing. Raises :class:`UploadError` subclasses,
    each as soon as the offending bytes arrive: 415 ``not_multipart`` (any other content type),
    413 ``too_large`` (one file over ``max_file_bytes``, or a text field over
    ``max_field_bytes``), 422 ``too_many_files``, 400 ``malformed_multipart``. The whole request
    is capped separately by :class:`RequestSizeLimitMiddleware`.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"application/x-www-form-urlencoded":
        return await _read_urlencoded(request, max_fields, max_field_bytes)
    if content_type != b"multipart/form-data":
        raise NotMultipartError("send the request as multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedUploadError("the multipart boundary is missing")
    state = _StreamingForm(
        max_file_bytes=max_file_bytes,
        max_files=max_files,
        max_fields=max_fields,
        max_field_bytes=max_field_bytes,
    )
    parser = MultipartParser(boundary, state.callbacks(), max_header_count=4)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedUploadError(f"malformed multipart body: {exc}") from exc
    return state.form


async def _read_urlencoded(
    request: Request, max_fields: int, max_field_bytes: int
) -> MultipartForm:
    limit = max_fields * max_field_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadTooLargeError(f"a form without files is limited to {limit} bytes")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=max_fields,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedUploadError(f"malformed form: {exc}") from exc
    form = MultipartForm()
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form


# --- the request size limit, for every route ---------------------------------------------------

_TOO_LARGE_TEXT = {
    "fr": (
        "Envoi trop volumineux",
        "La demande dépasse {mb} Mo au total. Envoyez moins de photos à la fois, ou les photos "
        "d'origine en JPEG ou HEIC, sans les convertir.",
        "Revenir au formulaire",
    ),
    "en": (
        "Upload too large",
        "The request is over {mb} MB in total. Send fewer photos at a time, or the original "
        "JPEG or HEIC photos, unconverted.",
        "Back to the form",
    ),
}


def _language(scope: Scope, default: str) -> str:
    """``?lang=``, then the language cookie, then the service default (as the pages decide)."""
    request = Request(scope)
    for value in (request.query_params.get("lang"), request.cookies.get("dermtriage_lang")):
        if value in ("fr", "en"):
            return value
    return default if default in ("fr", "en") else "fr"


def too_large_response_parts(scope: Scope, limit: int, default_lang: str) -> tuple[bytes, bytes]:
    """``(content type, body)`` of the 413 answer: JSON under ``/api/``, a small page elsewhere."""
    path = str(scope.get("path", ""))
    if path.startswith("/api/"):
        body = {"detail": {"code": "too_large", "message": f"the request exceeds {limit} bytes"}}
        return b"application/json", json.dumps(body).encode()
    lang = _language(scope, default_lang)
    title, text, back = _TOO_LARGE_TEXT[lang]
    page = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text.format(mb=round(limit / 1e6)))}</p>"
        f'<p><a href="/gp/requests/new">{html.escape(back)}</a></p></main></body></html>'
    )
    return b"text/html; charset=utf-8", page.encode()


class RequestSizeLimitMiddleware:
    """Refuses any request body over ``max_bytes`` with a 413, before or while it streams in.

    Nothing downstream sees more than ``max_bytes``: the body stream raises
    :class:`RequestTooLargeError` at the first chunk past the limit, which this middleware turns
    into the answer (unless a response has already started, in which case the connection ends).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, default_lang: str = "fr") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.default_lang = default_lang

    async def _refuse(self, scope: Scope, send: Send) -> None:
        content_type, body = too_large_response_parts(scope, self.max_bytes, self.default_lang)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    logger.info("request refused: announced %s bytes", value[:20])
                    await self._refuse(scope, send)
                    return
                break
        seen = 0
        started = tripped = False

        async def limited_receive() -> Message:
            nonlocal seen, tripped
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    tripped = True
                    raise RequestTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if tripped:
                # Whatever the app made of the error (FastAPI's 400, Starlette's JSON 413), the
                # client gets the one clear 413, in its language.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    logger.info("request refused: body passed %d bytes", self.max_bytes)
                    await self._refuse(scope, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestTooLargeError:
            if started:
                raise
            logger.info("request refused: body passed %d bytes while streaming", self.max_bytes)
            await self._refuse(scope, send)
