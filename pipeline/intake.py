"""Safe image intake: bytes from a GP's phone in, a clean decoded picture out, or a clear refusal.

Why this module exists: an upload is untrusted. It may be huge, a decompression bomb (a few kB
that expand to gigapixels), a truncated transfer, or a PDF renamed ``.jpg``. Every check here
runs on the bytes *before* the pixels are decoded, and decoding is forced to completion, so a
caller either gets a whole image or an :class:`IntakeError` naming the problem: nothing
half-read is ever returned.

Accepted formats are sniffed from the content (never from the file name): JPEG, PNG and
HEIC/HEIF (iPhone photos, through ``pillow-heif``). The EXIF orientation is applied to the
pixels and every metadata field (EXIF with its GPS block, XMP, ICC profile, comments) is dropped.
Data after the picture is refused unless a phone camera put it there (a Motion Photo's video, a
gain map, Samsung's trailer): see :func:`_check_trailing_data`.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Formats we accept, as Pillow names them, with the MIME type of their sanitised re-encoding.
ACCEPTED_FORMATS = ("JPEG", "PNG", "HEIF")

#: ISO-BMFF brands that mark a HEIF still image (``heic`` from iPhones, ``mif1`` generic...).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})

#: Magic numbers of image formats we recognise but do not accept: a clearer message than
#: "not an image" for a GIF or a WebP.
_OTHER_IMAGE_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

#: What a French-speaking GP reads for each refusal code (the English is the error's message).
INTAKE_MESSAGES_FR = {
    "empty": "Le fichier est vide.",
    "too_large": "Le fichier dépasse la taille maximale autorisée.",
    "not_an_image": "Le fichier n'est pas une image (son contenu n'est ni JPEG, ni PNG, ni HEIC, "
    "quel que soit son nom).",
    "unsupported_format": "Format d'image non pris en charge : "
    "envoyez une photo JPEG, PNG ou HEIC.",
    "corrupt": "Le fichier est tronqué ou endommagé : "
    "ses pixels ne peuvent pas être lus en entier.",
    "decompression_bomb": "L'image annonce un nombre de pixels démesuré ; "
    "elle n'a pas été décodée.",
    "too_small": "L'image ne fait que quelques pixels : ce n'est pas une photo de la lésion.",
    "trailing_data": "Le fichier contient d'autres données après la fin de l'image (fichier "
    "composite) : exportez la photo d'origine en JPEG simple.",
}

#: Bytes a camera may pad a file with after the image ends (besides a phone's trailer).
_PADDING = frozenset(b"\x00\xff")

#: Narrowest picture we take, in pixels: thinner than this, no check can look at it (the quality
#: checks then report a too-low resolution for anything still far from a real photo).
MIN_SIDE = 2

#: EXIF orientations that swap width and height (rotations by 90 or 270 degrees).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112


class IntakeError(ValueError):
    """An upload we refuse, with a stable machine ``code`` and an English sentence for people.

    Codes: ``empty``, ``too_large``, ``not_an_image``, ``unsupported_format``, ``corrupt``,
    ``decompression_bomb``, ``trailing_data``, ``too_small``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def text(self, lang: str) -> str:
        """The refusal for a person reading ``lang`` (``fr`` or ``en``; English otherwise)."""
        if lang == "fr":
            return INTAKE_MESSAGES_FR.get(self.code, self.message)
        return self.message

    def __repr__(self) -> str:
        return f"IntakeError(code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True)
class DecodedImage:
    """A fully decoded, upright, metadata-free picture.

    ``image`` is RGB; it may be a reduced copy when the caller asked for ``max_side``, which is
    why ``original_size`` (the upright full-resolution ``(width, height)``) travels with it.
    """

    image: Image.Image
    format: str
    original_size: tuple[int, int]


@lru_cache(maxsize=1)
def _register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF once per process (idempotent, no other global change)."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def sniff_format(data: bytes) -> str:
    """The accepted format the bytes *contain* (``JPEG``, ``PNG``, ``HEIF``), whatever the name.

    Raises :class:`IntakeError` (``empty``, ``unsupported_format`` or ``not_an_image``) otherwise.
    """
    if not data:
        raise IntakeError("empty", "The file is empty.")
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brands = {data[8:12]}
        box_size = int.from_bytes(data[0:4], "big")
        compatible = data[16 : min(box_size, 64)]
        brands.update(compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4))
        if brands & _HEIF_BRANDS:
            return "HEIF"
        raise IntakeError(
            "unsupported_format",
            "This is a video or another ISO media file, not a photo: "
            "send a JPEG, PNG or HEIC photo.",
        )
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        raise IntakeError(
            "unsupported_format", "WebP images are not accepted: send a JPEG, PNG or HEIC photo."
        )
    for magic, name in _OTHER_IMAGE_MAGIC:
        if data.startswith(magic):
            raise IntakeError(
                "unsupported_format",
                f"{name} images are not accepted: send a JPEG, PNG or HEIC photo.",
            )
    raise IntakeError(
        "not_an_image",
        "The file is not an image (its content is not JPEG, PNG or HEIC, whatever its name says).",
    )


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the JPEG's end-of-image marker, walking its segments; ``None`` when the
    structure cannot be followed (a truncated or damaged file: the decoder then says why).

    Walking the segments (rather than searching for ``FF D9``) matters: an EXIF thumbnail holds
    an end-of-image marker of its own, and an appended JPEG would hold the last one.
    """
    size = len(data)
    i = 2  # past SOI
    while i < size:
        if data[i] != 0xFF:
            return None
        while i < size and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= size:
            return None
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            return i
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if i + 2 > size:
            return None
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            return None
        i += length
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next real marker
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= size:
                    return None
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2  # stuffed byte or restart marker: still scan data
                elif following == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    return None


def _png_end(data: bytes) -> int | None:
    """Offset just past the PNG's ``IEND`` chunk; ``None`` when the chunks cannot be followed."""
    size = len(data)
    i = 8
    while i + 12 <= size:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        i += 12 + length
        if kind == b"IEND":
            return i if i <= size else None
    return None


def _bmff_end(data: bytes) -> int:
    """Offset where the ISO-BMFF (HEIF) top-level boxes stop making sense: the file's length
    for a clean file, earlier when something that is not a box follows the last one."""
    size = len(data)
    i = 0
    while i + 8 <= size:
        box_size = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        if not all(0x20 <= byte <= 0x7E for byte in kind):
            return i
        header = 8
        if box_size == 0:  # the last box, running to the end of the file
            return size
        if box_size == 1:
            if i + 16 > size:
                return i
            box_size, header = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        if box_size < header or i + box_size > size:
            return i
        i += box_size
    return i


#: Samsung's trailer ends with its directory's length (4 bytes, little-endian) and ``SEFT``.
_SEF_END = b"SEFT"
_SEF_HEAD = b"SEFH"


def _samsung_fields_start(trailer: bytes) -> int | None:
    """Where a Samsung (SEF) trailer's fields begin, when ``trailer`` ends with a well-formed
    SEF directory; ``None`` otherwise.

    Samsung phones append tagged fields (a Motion Photo's video, depth maps, editing data) after
    the JPEG, then a directory: ``SEFH``, a version, a count, 12 bytes per field (a marker, the
    field's offset back from ``SEFH``, its size), the directory's length and ``SEFT``. The check
    is of shape only: the directory must account for itself exactly and every field must lie
    between the trailer's start and the directory.
    """
    if len(trailer) < 20 or not trailer.endswith(_SEF_END):
        return None
    length = int.from_bytes(trailer[-8:-4], "little")
    head = len(trailer) - 8 - length
    if length < 12 or head < 0 or trailer[head : head + 4] != _SEF_HEAD:
        return None
    count = int.from_bytes(trailer[head + 8 : head + 12], "little")
    if count == 0 or 12 + 12 * count != length:
        return None
    start = head
    for k in range(count):
        entry = head + 12 + 12 * k
        back = int.from_bytes(trailer[entry + 4 : entry + 8], "little")
        size = int.from_bytes(trailer[entry + 8 : entry + 12], "little")
        if back > head or size > back:
            return None
        start = min(start, head - back)
    return start


def _phone_trailer(trailer: bytes) -> str | None:
    """What a phone camera put after the picture, or ``None`` when it is not a known shape.

    Known, and found in ordinary phone photos (docs/quality.md, "Phone trailers"): further JPEG
    images (the Multi-Picture Format's secondary images, an Ultra HDR photo's gain map), an
    ISO-BMFF video whose boxes run exactly to the end (a Google Motion Photo's MP4, an older
    "MicroVideo"), and a Samsung SEF trailer. They may follow one another (a Pixel writes the
    gain map, then the video) with NUL or 0xFF padding between them. Each part must be whole (a
    JPEG walked to its end marker, a video's boxes each complete) and nothing else may follow.
    """
    end = len(trailer)
    kinds: list[str] = []
    samsung = _samsung_fields_start(trailer)
    if samsung is not None:
        end = samsung
        kinds.append("Samsung trailer")
    pos = 0
    while pos < end:
        if trailer.startswith(b"\xff\xd8\xff", pos, end):
            length = _jpeg_end(trailer[pos:end])
            if length is None:
                return None
            kinds.append("JPEG image")
            pos += length
        elif end - pos >= 16 and trailer.startswith(b"ftyp", pos + 4, end):
            length = _bmff_end(trailer[pos:end])
            if length < 16:
                return None
            kinds.append("video")
            pos += length  # what follows the last whole box must itself be known, or padding
        elif trailer[pos] in _PADDING:
            pos += 1  # padding, or the first bytes of the next part's header: tried byte by byte
        else:
            return None
    return ", ".join(dict.fromkeys(kinds)) if kinds else None


def _check_trailing_data(data: bytes, fmt: str) -> None:
    """Refuse a file with something after the picture that no phone camera writes.

    Why this exists: a polyglot (an image that is also a ZIP, a Java archive, an HTML page or a
    script: a "GIFAR" is a GIF that is also a JAR) is a valid picture to an image viewer and
    something else to another program. What protects the service from one is that only a
    re-encoded copy of the pixels is ever stored or shown (:func:`sanitized_image_bytes`), so no
    byte after the picture survives; this check refuses, with a clear message, files that were
    glued together rather than taken by a camera.

    Phones do append data after a JPEG (:func:`_phone_trailer`: a Motion Photo's video, a gain
    map, Samsung's trailer): such a photo is accepted, and its trailer is neither read, decoded
    nor stored. The shape check is not a security boundary (anything can hide inside an MP4
    box): the re-encoding is. Padding with NUL or 0xFF bytes is tolerated.
    """
    if fmt == "JPEG":
        end = _jpeg_end(data)
    elif fmt == "PNG":
        end = _png_end(data)
    else:
        end = _bmff_end(data)
    if end is None or end >= len(data):
        return  # a structure we cannot follow is the decoder's to refuse as corrupt
    trailer = data[end:]
    if set(trailer) <= _PADDING:
        return
    if fmt == "JPEG":
        kind = _phone_trailer(trailer)
        if kind is not None:
            logger.debug("JPEG with a phone trailer (%s, %d bytes) accepted", kind, len(trailer))
            return
    raise IntakeError(
        "trailing_data",
        f"The {fmt} file carries {len(data) - end} bytes of other data after the end of the "
        "picture (a composite file): export the original photo as a plain JPEG.",
    )


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1) or 1)
    except (ValueError, TypeError, SyntaxError, OSError):  # malformed EXIF: treat as upright
        logger.debug("unreadable EXIF block; assuming upright orientation")
        return 1


def _open_checked(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[Image.Image, str, int]:
    """Open (header only) and vet an upload: size, format, pixel count. Nothing decoded yet."""
    if not data:
        raise IntakeError("empty", "The file is empty.")
    if len(data) > max_bytes:
        raise IntakeError(
            "too_large",
            f"The file is too large ({len(data) / 1e6:.1f} MB; the limit is "
            f"{max_bytes / 1e6:.1f} MB).",
        )
    fmt = sniff_format(data)
    _check_trailing_data(data, fmt)
    if fmt == "HEIF":
        _register_heif()
    try:
        with warnings.catch_warnings():
            # We enforce our own, stricter pixel limit below from the header; Pillow's warning
            # (and its error at twice its limit) only back it up.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise IntakeError(
            "decompression_bomb",
            "The image declares far too many pixels (a decompression bomb); it was not decoded.",
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise IntakeError(
            "corrupt", f"The {fmt} file is corrupt: its header cannot be read."
        ) from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise IntakeError("corrupt", f"The {fmt} file is corrupt: it declares an empty picture.")
    if min(width, height) < MIN_SIDE:
        raise IntakeError(
            "too_small",
            f"The image is only {width} x {height} pixels: it is not a photo of a lesion.",
        )
    if width * height > max_pixels:
        raise IntakeError(
            "decompression_bomb",
            f"The image declares {width} x {height} pixels, more than the "
            f"{max_pixels / 1e6:.0f}-megapixel limit; it was not decoded.",
        )
    return image, fmt, _exif_orientation(image)


def _verify_checksums(data: bytes, fmt: str) -> None:
    """PNG chunks carry CRCs: check them all, so a damaged file is refused even when its pixels
    would still inflate to something (JPEG and HEIF have no such checksums)."""
    if fmt != "PNG":
        return
    try:
        Image.open(io.BytesIO(data), formats=["PNG"]).verify()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise IntakeError("corrupt", "The PNG file is corrupt: a checksum does not match.") from exc


def _load_fully(image: Image.Image, fmt: str) -> None:
    """Decode every pixel now, refusing truncated data instead of padding it with grey.

    Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off (its default), so a file that ends early
    raises here, even when only its end-of-image marker is missing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as exc:
        raise IntakeError(
            "decompression_bomb", "The image expands to far too many pixels; it was not decoded."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise IntakeError(
            "corrupt",
            f"The {fmt} file is truncated or corrupt: its pixels cannot be read in full.",
        ) from exc


def _strip(image: Image.Image) -> Image.Image:
    """An RGB copy carrying pixels only: no EXIF, GPS, XMP, ICC profile, comments or text."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Flatten transparency onto white, as a viewer would show it.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        rgb = background
    elif image.mode == "I;16" or image.mode.startswith("I;16") or image.mode in ("I", "F"):
        rgb = image.point(lambda value: value / 256).convert("RGB")  # 16-bit PNG to 8-bit
    else:
        rgb = image.convert("RGB")
    clean = Image.new("RGB", rgb.size)
    clean.paste(rgb)
    return clean


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    if orientation == 1:
        return image
    image.getexif()[_EXIF_ORIENTATION_TAG] = orientation
    return ImageOps.exif_transpose(image)


def _draft_target(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size to ask JPEG draft mode for: the long side at least ``max_side``."""
    width, height = size
    if width >= height:
        return max_side, max(1, math.floor(max_side * height / width))
    return max(1, math.floor(max_side * width / height)), max_side


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, max_side: int | None = None
) -> DecodedImage:
    """Vet and fully decode an upload; optionally return it reduced to a long side of ``max_side``.

    With ``max_side``, a JPEG is decoded in Pillow's draft mode at the smallest DCT scale (1/2,
    1/4, 1/8) whose long side is still at least ``max_side``, so a 12-MP photo is never decoded
    at full size when about a megapixel answers the question; the result is then resized down to
    ``max_side`` (it is never enlarged). The whole file is still read and validated.

    Raises :class:`IntakeError` for anything we refuse.
    """
    image, fmt, orientation = _open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels)
    width, height = image.size
    original_size = (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)
    if max_side is not None and max_side <= 0:
        raise ValueError("max_side must be positive")
    if max_side is not None and fmt == "JPEG" and max(width, height) > max_side:
        image.draft("RGB", _draft_target((width, height), max_side))
    _verify_checksums(data, fmt)
    _load_fully(image, fmt)
    clean = _upright(_strip(image), orientation)
    if max_side is not None and max(clean.size) > max_side:
        scale = max_side / max(clean.size)
        new_size = (max(1, round(clean.width * scale)), max(1, round(clean.height * scale)))
        clean = clean.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(image=clean, format=fmt, original_size=original_size)


def sanitized_image_bytes(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[bytes, str]:
    """The full-resolution upload re-encoded upright with no metadata at all: ``(bytes, mime)``.

    What we store is this, never the upload: the GP's phone puts GPS coordinates, the device and
    the time in EXIF. JPEG and HEIF become JPEG (quality 92, like a phone's own); PNG stays PNG
    (lossless in, lossless out).
    """
    decoded = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    buffer = io.BytesIO()
    if decoded.format == "PNG":
        decoded.image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue(), "image/png"
    decoded.image.save(buffer, format="JPEG", quality=92, subsampling=0, optimize=True)
    return buffer.getvalue(), "image/jpeg"
