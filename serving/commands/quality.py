"""``dermtriage quality [--json] [--lang fr|en] FILE...``: photo-quality verdicts for files.

One result per file, in the order given: with ``--json`` one JSON object per line (the same object
as ``POST /api/v1/quality``), otherwise one readable line. A file that is not a readable photo is
a result with the problem ``unreadable_file``, never a crash.

Exit status: 0 when every file was read and assessed, whatever the verdicts (a bad photo is an
answer, not a failure); 1 when at least one path could not be opened at all (missing, a folder,
no permission), after printing an ``unreadable_file`` result for it; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.quality import Problem, QualityResult, assess_bytes
from pipeline.quality_messages import LANGUAGES, message
from serving.settings import get_settings

_VERDICT = {
    "fr": {True: "acceptable", False: "à reprendre"},
    "en": {True: "acceptable", False: "retake"},
}
_CANNOT_OPEN = {
    "fr": "impossible d'ouvrir le fichier",
    "en": "the file cannot be opened",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quality",
        help="check whether photos are good enough for a dermatologist",
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 all files assessed; 1 a path could not be opened; 2 usage error.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JPEG, PNG or HEIC photos")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--lang", choices=LANGUAGES, default=None, help="message language (default: settings)"
    )
    parser.set_defaults(func=run)


def _read_limited(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes: enough for the intake to refuse a file that is too large
    without loading all of it."""
    with path.open("rb") as handle:
        return handle.read(max_bytes + 1)


def _unopenable(lang: str, error: OSError) -> QualityResult:
    reason = error.strerror or type(error).__name__
    text = f"{message('unreadable_file', lang)} ({_CANNOT_OPEN[lang]}: {reason})"
    return QualityResult(acceptable=False, problems=(Problem("unreadable_file", text),), metrics={})


def _line(file: str, result: QualityResult, lang: str) -> str:
    verdict = _VERDICT[lang][result.acceptable]
    if result.acceptable:
        return f"{file}: {verdict}"
    details = "; ".join(f"[{p.code}] {p.message}" for p in result.problems)
    return f"{file}: {verdict}: {details}"


def run(args: argparse.Namespace) -> int:
    from models.segmenter import segment  # torch: loaded only when photos are judged

    settings = get_settings()
    lang = args.lang or settings.language
    status = 0
    for file in args.files:
        try:
            data = _read_limited(Path(file), settings.max_upload_bytes)
        except OSError as error:
            result = _unopenable(lang, error)
            status = 1
        else:
            result = assess_bytes(
                data,
                lang=lang,
                max_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_image_pixels,
                lesion_segmenter=segment,
            )
        if args.json:
            sys.stdout.write(json.dumps(result.to_dict(file=file), ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(_line(file, result, lang) + "\n")
        sys.stdout.flush()
    return status
