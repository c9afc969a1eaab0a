"""``POST /api/v1/quality``: the instant photo-quality verdict for one uploaded photo.

The answer is the same object ``dermtriage quality --json`` prints for a file, with ``file`` set
to the uploaded file's name as pages show it (:func:`serving.uploads.display_name`: last path
component, no control, bidi or markup characters, 80 characters at most), never the raw name the
client sent: ``{"file", "acceptable", "problems": [{"code", "message"}], "metrics"}``. A file
that is not a readable image is a verdict (``unreadable_file``), not an error; the 4xx answers
are for requests that carry no file to judge, as ``{"detail": {"code", "message"}}``: 413
``too_large``, 415 ``not_multipart``, 422 ``missing_file``, 400 ``malformed_multipart``.

Nothing is stored. The check is CPU-bound (decoding up to 12-MP photos), so it runs in a worker
thread, at most one per CPU core at a time, and the event loop keeps serving other requests.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel

from models.segmenter import segment
from pipeline.quality import QualityResult, assess_bytes
from serving.deps import SettingsDep
from serving.uploads import UploadError, display_name, read_single_upload

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["quality"])

#: The multipart field that carries the photo.
FILE_FIELD = "file"


class ProblemOut(BaseModel):
    code: str
    message: str


class QualityOut(BaseModel):
    """One photo's verdict: ``acceptable`` exactly when ``problems`` is empty."""

    file: str
    acceptable: bool
    problems: list[ProblemOut]
    metrics: dict[str, float]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    detail: ErrorDetail


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "The photo: JPEG, PNG or HEIC/HEIF.",
                        }
                    },
                }
            }
        },
    }
}


def _limiter(app: FastAPI) -> anyio.CapacityLimiter:
    """One token per CPU core for this application: more parallel checks would only queue on
    the cores while each holding a decoded photo in memory."""
    limiter = getattr(app.state, "quality_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
        app.state.quality_limiter = limiter
    return limiter


@router.post(
    "/quality",
    response_model=QualityOut,
    summary="Judge one photo's quality and say how to retake it",
    openapi_extra=_UPLOAD_SCHEMA,
    responses={
        400: {"model": ErrorOut, "description": "Malformed multipart body."},
        413: {"model": ErrorOut, "description": "The file is over the upload limit."},
        415: {"model": ErrorOut, "description": "The body is not multipart/form-data."},
        422: {"model": ErrorOut, "description": "No file in the `file` field."},
    },
)
async def check_quality(
    request: Request,
    settings: SettingsDep,
    lang: Annotated[
        Literal["fr", "en"] | None,
        Query(description="Language of the messages; default: the service's (French)."),
    ] = None,
) -> QualityOut:
    try:
        upload = await read_single_upload(request, FILE_FIELD, max_bytes=settings.max_upload_bytes)
    except UploadError as exc:
        logger.info("quality upload refused: %s (%s)", exc.code, exc.message)
        raise HTTPException(exc.status, {"code": exc.code, "message": exc.message}) from exc
    check = functools.partial(
        assess_bytes,
        upload.data,
        lang=lang or settings.language,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        lesion_segmenter=segment,
    )
    result: QualityResult = await anyio.to_thread.run_sync(check, limiter=_limiter(request.app))
    return QualityOut.model_validate(result.to_dict(file=display_name(upload.filename)))
