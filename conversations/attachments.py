"""What a file attached to a message is, judged by its content, never by its name; and
what the model is sent for it.

Pure: bytes in, a verdict out (`inspect`), or a ValidationError with a sentence for the
page. CPU-bound (PDF parsing, image decoding): callers run it in a worker thread, never
on the event loop. Hostile files are refused with bounded work:

* text: UTF-8 without NUL or other control bytes (a binary behind a `.txt` name is not);
* PDFs: parsed by pypdf with every decompression capped (a flate bomb stops at
  PDF_STREAM_BYTES), a page cap, an extracted-text cap; encrypted ones refused;
* images: the real format from the content (PNG, JPEG, WebP, GIF), sides and pixels
  checked from the header before any pixel is decoded, then decoded and re-encoded
  (metadata, trailing payloads and other frames dropped).
"""

from __future__ import annotations

import base64
import fnmatch
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pypdf
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf.errors import PyPdfError

TEXT, PDF, IMAGE = "text", "pdf", "image"


def file_ceiling() -> int:
    """The largest file read at all, whatever a user's quota allows: what one upload
    request may carry (chatsite/limits.py), so an import takes no more than an upload."""
    return int(settings.CHATSITE_ATTACHMENT_MAX_BYTES) * int(
        settings.CHATSITE_ATTACHMENTS_PER_MESSAGE
    )


# Decompressed bytes any one PDF stream may grow to (a flate bomb stops here).
PDF_STREAM_BYTES = 20_000_000
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_PDF_CAPS = (  # pypdf's Configuration: every decompressing filter's output
    "maximum_declared_stream_length",
    "array_based_stream_maximum_output_length",
    "jbig2_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "zlib_maximum_output_length",
)
_IMAGE_NAMES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
# Control bytes a text file does not contain (tab, newlines and form feed are fine).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# What malformed PDFs make pypdf raise besides its own errors: it parses untrusted
# structure with plain Python, and these are how a broken one surfaces.
_PDF_BROKEN = (
    PyPdfError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    AssertionError,
    RecursionError,
    struct.error,
    zlib.error,
)


@dataclass(frozen=True)
class Inspected:
    kind: str
    content_type: str
    data: bytes  # what is stored: images re-encoded, everything else as uploaded
    text: str = ""
    pages: int | None = None
    width: int | None = None
    height: int | None = None


def name_clean(name: Any) -> str:
    """The uploaded file's name as shown: its last path part, printable, at most 200."""
    text = str(name or "")
    text = PurePath(text.replace("\\", "/")).name
    text = _CONTROL.sub("", text).strip()
    if len(text) > 200:
        stem, dot, suffix = text.rpartition(".")
        text = (
            (stem[: 190 - len(suffix)] + dot + suffix) if dot and len(suffix) < 10 else text[:200]
        )
    return text or "file"


def inspect(*, name: str, data: bytes) -> Inspected:
    """What this file is and what to keep of it; ValidationError when it is refused."""
    if not data:
        raise ValidationError(f"{name} is empty.")
    suffix = PurePath(name).suffix.lower()
    if data.startswith(b"%PDF-"):
        return _pdf(name, data)
    if _looks_like_image(data):
        return _image(name, data)
    if suffix == ".pdf":
        raise ValidationError(f"{name} is not a PDF, whatever its name says.")
    if suffix in _IMAGE_NAMES:
        raise ValidationError(
            f"{name} is not a PNG, JPEG, WebP or GIF image, whatever its name says."
        )
    return _text(name, data)


def _looks_like_image(data: bytes) -> bool:
    return data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


def _text(name: str, data: bytes) -> Inspected:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(
            f"{name} is neither text (UTF-8) nor a PDF or an image this site reads."
        ) from None
    if _CONTROL.search(text):
        raise ValidationError(f"{name} holds binary data, not text.")
    _text_cap(name, text)
    return Inspected(kind=TEXT, content_type="text/plain; charset=utf-8", data=data, text=text)


def _text_cap(name: str, text: str) -> None:
    limit = settings.CHATSITE_ATTACHMENT_TEXT_CHARS
    if len(text) > limit:
        raise ValidationError(
            f"{name} holds more than {limit:,} characters of text; attach a shorter file."
        )


def _pdf(name: str, data: bytes) -> Inspected:
    limit = settings.CHATSITE_ATTACHMENT_PDF_PAGES
    chars = settings.CHATSITE_ATTACHMENT_TEXT_CHARS
    caps: dict[str, Any] = dict.fromkeys(_PDF_CAPS, PDF_STREAM_BYTES)
    try:
        with pypdf.apply_configuration(None, **caps), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns about every oddity it repairs
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise ValidationError(
                    f"{name} is encrypted (password-protected); attach a copy without a password."
                )
            pages = len(reader.pages)
            if pages > limit:
                raise ValidationError(f"{name} has {pages:,} pages; the limit is {limit:,}.")
            parts: list[str] = []
            total = 0
            for page in reader.pages:
                part = page.extract_text() or ""
                total += len(part) + 2
                if total > chars:
                    raise ValidationError(
                        f"{name} holds more than {chars:,} characters of text; attach fewer pages."
                    )
                parts.append(part)
    except pypdf.errors.LimitReachedError:
        raise ValidationError(
            f"{name} expands to far more data than it holds (a compression bomb?); refused."
        ) from None
    except _PDF_BROKEN:
        raise ValidationError(f"{name} is a damaged PDF that cannot be read.") from None
    text = "\n\n".join(p.strip() for p in parts).strip()
    if not text:
        raise ValidationError(
            f"{name} has no text to read (a scanned PDF?); attach its pages as images instead."
        )
    return Inspected(kind=PDF, content_type="application/pdf", data=data, text=text, pages=pages)


def _image(name: str, data: bytes) -> Inspected:
    pixels = settings.CHATSITE_ATTACHMENT_IMAGE_PIXELS
    side = settings.CHATSITE_ATTACHMENT_IMAGE_SIDE
    try:
        with warnings.catch_warnings():
            # Our caps come first; Pillow's own bomb check stays on as a second wall.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in IMAGE_FORMATS:
                    raise ValidationError(f"{name}: only PNG, JPEG, WebP and GIF images are read.")
                width, height = image.size  # from the header: nothing decoded yet
                if width > side or height > side or width * height > pixels:
                    raise ValidationError(
                        f"{name} is {width:,} by {height:,} pixels; the limit is {side:,} a side "
                        f"and {pixels:,} in all."
                    )
                image.seek(0)  # an animation: its first frame
                image.load()
                fmt = image.format
                upright = ImageOps.exif_transpose(image)
                out = io.BytesIO()
                if fmt == "JPEG":
                    upright.convert("RGB").save(out, "JPEG", quality=90)
                    content_type = "image/jpeg"
                else:
                    keep = "RGBA" if upright.mode in ("RGBA", "LA", "P", "PA") else "RGB"
                    upright.convert(keep).save(out, "PNG", optimize=False)
                    content_type = "image/png"
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ValidationError(f"{name} decodes to too many pixels; refused.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error, EOFError):
        # Pillow's errors for truncated or malformed image data.
        raise ValidationError(f"{name} is a damaged image that cannot be read.") from None
    return Inspected(
        kind=IMAGE, content_type=content_type, data=out.getvalue(), width=width, height=height
    )


def vision_accepts(model: str) -> bool:
    """Whether this model is sent images (CHATSITE_VISION_MODELS: names, patterns, `*`)."""
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in settings.CHATSITE_VISION_MODELS)


def vision_refusal(model: str) -> str:
    return (
        f"{model} cannot read images, so nothing was sent. Remove the image, or pick a model "
        "that reads images."
    )


@dataclass(frozen=True)
class Part:
    """An attachment as the model is sent it: text (files, PDFs) or an image's bytes."""

    kind: str
    name: str
    text: str = ""
    stored: str = ""  # an image's name in storage: read when the request is made


def _fenced(part: Part) -> str:
    # A fence longer than any run of backticks inside: the file cannot close it early.
    runs = [len(run) for run in re.findall(r"`+", part.text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    label = "PDF" if part.kind == PDF else "File"
    return f"{label}: {part.name}\n{fence}\n{part.text}\n{fence}"


def upstream_content(*, text: str, parts: list[Part], vision: bool) -> str | list[dict[str, Any]]:
    """A user message's content for the model: each file's text fenced under its name,
    then the user's words; images as `image_url` parts (data: URLs) when the model reads
    them, else a line saying one was left out."""
    blocks: list[str] = []
    images: list[dict[str, Any]] = []
    for part in parts:
        if part.kind != IMAGE:
            blocks.append(_fenced(part))
        elif vision:
            # Read and encoded by `image_url` outside the database thread, just before
            # the request is sent.
            url = STORED + part.stored
            images.append({"type": "image_url", "image_url": {"url": url}})
        else:
            blocks.append(f"[Image {part.name} left out: this model does not read images.]")
    combined = "\n\n".join([*blocks, text]) if blocks else text
    if not images:
        return combined
    return [{"type": "text", "text": combined}, *images]


STORED = "chatsite-stored:"  # an image part's URL until its file is read


def image_url(data: bytes) -> str:
    """A stored image (re-encoded: JPEG or PNG) as a `data:` URL."""
    kind = "image/jpeg" if data.startswith(b"\xff\xd8") else "image/png"
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def content_chars(content: Any) -> int:
    """Characters of a message's content, parts included (images count as none)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return 0


def content_text(content: Any) -> str:
    """A message's text, whether plain or in parts."""
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return content if isinstance(content, str) else ""
