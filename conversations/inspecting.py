"""The costly half of checking a file (PDF text extraction, image decoding and
re-encoding), run in a short-lived child process of its own: `attachments.inspect`
starts `python -I conversations/inspecting.py`, and a hostile file that would cost
minutes of CPU or gigabytes of memory costs the child that, never the server (whose
event loop, GIL and threads it would otherwise hold).

The child limits itself before reading anything (RLIMIT_CPU, RLIMIT_AS); the parent
kills it after a wall-clock timeout. Plain Python, no Django: the child imports only
this file, pypdf and Pillow.

Protocol: stdin is one JSON line (`kind`, `name`, `limits`) then the file's raw bytes;
stdout is one JSON line (`error`: a sentence for the page; or the verdict's fields and
`size`) then that many raw bytes (an image as it is stored; nothing for a PDF).
"""

from __future__ import annotations

import io
import json
import resource
import struct
import sys
import warnings
import zlib
from typing import Any

import pypdf
from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf.errors import PyPdfError

PDF, IMAGE = "pdf", "image"
MEMORY_BYTES = 1 << 30  # the child's address space: decoding more than this is refused
IMAGE_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # a phone camera's JPEG (with a second, depth or preview, frame)
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
_PDF_CAPS = (  # pypdf's Configuration: every decompressing filter's output
    "maximum_declared_stream_length",
    "array_based_stream_maximum_output_length",
    "jbig2_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "zlib_maximum_output_length",
)
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
_ORIENTATION = 0x0112  # the EXIF tag a camera sets when the picture is sideways


class Refused(Exception):
    """The file is refused: the sentence says why."""


def pdf(name: str, data: bytes, limits: dict[str, int]) -> tuple[dict[str, Any], bytes]:
    limit = limits["pdf_pages"]
    chars = limits["text_chars"]
    caps: dict[str, Any] = dict.fromkeys(_PDF_CAPS, limits["pdf_stream_bytes"])
    try:
        with pypdf.apply_configuration(None, **caps), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns about every oddity it repairs
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise Refused(
                    f"{name} is encrypted (password-protected); attach a copy without a password."
                )
            pages = len(reader.pages)
            if pages > limit:
                raise Refused(f"{name} has {pages:,} pages; the limit is {limit:,}.")
            parts: list[str] = []
            total = 0
            for page in reader.pages:
                part = page.extract_text() or ""
                total += len(part) + 2
                if total > chars:
                    raise Refused(
                        f"{name} holds more than {chars:,} characters of text; attach fewer pages."
                    )
                parts.append(part)
    except pypdf.errors.LimitReachedError:
        raise Refused(
            f"{name} expands to far more data than it holds (a compression bomb?); refused."
        ) from None
    except _PDF_BROKEN:
        raise Refused(f"{name} is a damaged PDF that cannot be read.") from None
    text = "\n\n".join(p.strip() for p in parts).strip()
    if not text:
        raise Refused(
            f"{name} has no text to read (a scanned PDF?); attach its pages as images instead."
        )
    verdict = {"kind": PDF, "content_type": "application/pdf", "text": text, "pages": pages}
    return verdict, b""  # the PDF is stored as it came


def image(name: str, data: bytes, limits: dict[str, int]) -> tuple[dict[str, Any], bytes]:
    pixels, side, keep_side = limits["image_pixels"], limits["image_side"], limits["max_side"]
    try:
        with warnings.catch_warnings():
            # Our caps come first; Pillow's own bomb check stays on as a second wall.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as picture:
                if picture.format not in IMAGE_FORMATS:
                    raise Refused(f"{name}: only PNG, JPEG, WebP and GIF images are read.")
                width, height = picture.size  # from the header: nothing decoded yet
                if width > side or height > side or width * height > pixels:
                    raise Refused(
                        f"{name} is {width:,} by {height:,} pixels; the limit is {side:,} a side "
                        f"and {pixels:,} in all."
                    )
                jpeg = IMAGE_FORMATS[picture.format] == "image/jpeg"
                picture.seek(0)  # an animation (or an MPO): its first frame
                if jpeg:
                    # Decoded at a fraction of its size already (JPEG's DCT scaling).
                    picture.draft("RGB", (keep_side, keep_side))
                picture.load()
                upright: Image.Image = picture
                if picture.getexif().get(_ORIENTATION, 1) != 1:
                    upright = ImageOps.exif_transpose(picture)
                # A model gains nothing from more pixels than this; the stored copy stays small.
                upright.thumbnail((keep_side, keep_side))
                out = io.BytesIO()
                if jpeg:
                    upright.convert("RGB").save(out, "JPEG", quality=90)
                    content_type = "image/jpeg"
                else:
                    keep = "RGBA" if upright.mode in ("RGBA", "LA", "P", "PA") else "RGB"
                    upright.convert(keep).save(out, "PNG", optimize=False)
                    content_type = "image/png"
                width, height = upright.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise Refused(f"{name} decodes to too many pixels; refused.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error, EOFError):
        # Pillow's errors for truncated or malformed image data.
        raise Refused(f"{name} is a damaged image that cannot be read.") from None
    verdict = {"kind": IMAGE, "content_type": content_type, "width": width, "height": height}
    return verdict, out.getvalue()


def main() -> int:
    header = json.loads(sys.stdin.buffer.readline())
    seconds = int(header["limits"]["cpu_seconds"])
    # Set by the child itself, before it reads the file: a hostile one is stopped by the
    # kernel (SIGXCPU, or MemoryError), whatever pypdf or Pillow does with it.
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    data = sys.stdin.buffer.read()
    name = str(header["name"])
    run = pdf if header["kind"] == PDF else image
    try:
        verdict, stored = run(name, data, header["limits"])
    except Refused as exc:
        verdict, stored = {"error": str(exc)}, b""
    except MemoryError:
        verdict, stored = {"error": f"{name} needs too much memory to read; refused."}, b""
    verdict["size"] = len(stored)
    sys.stdout.buffer.write(json.dumps(verdict).encode() + b"\n" + stored)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
