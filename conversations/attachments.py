"""What a file attached to a message is, judged by its content, never by its name; and
what the model is sent for it.

Bytes in, a verdict out (`inspect`), or a ValidationError with a sentence for the page.
Hostile files are refused with bounded work:

* text: UTF-8 without NUL or other control bytes (a binary behind a `.txt` name is not);
* PDFs and images: checked in a short-lived child process (conversations/inspecting.py)
  under hard limits on its CPU time and memory and a wall-clock timeout
  (CHATSITE_ATTACHMENT_INSPECT_SECONDS), at most INSPECTIONS at once per process;
* PDFs: parsed by pypdf with every decompression capped (a flate bomb stops at
  PDF_STREAM_BYTES), a page cap, an extracted-text cap; encrypted ones refused;
* images: the real format from the content (PNG, JPEG (MPO too), WebP, GIF), sides and
  pixels checked from the header before any pixel is decoded, then decoded, scaled down
  to CHATSITE_ATTACHMENT_IMAGE_MAX_SIDE and re-encoded (metadata, trailing payloads and
  other frames dropped).

Blocking (it waits for the child): callers run it in a worker thread, never on the event
loop.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import subprocess
import sys
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from . import inspecting

TEXT, PDF, IMAGE = "text", "pdf", "image"


def file_ceiling() -> int:
    """The largest file read at all, whatever a user's quota allows: what one upload
    request may carry (chatsite/limits.py), so an import takes no more than an upload."""
    return int(settings.CHATSITE_ATTACHMENT_MAX_BYTES) * int(
        settings.CHATSITE_ATTACHMENTS_PER_MESSAGE
    )


# Decompressed bytes any one PDF stream may grow to (a flate bomb stops here).
PDF_STREAM_BYTES = 20_000_000
IMAGE_FORMATS = inspecting.IMAGE_FORMATS
# Child processes checking files at once in this process: uploads cannot take every CPU
# (the others wait for a turn, then are refused).
INSPECTIONS = 2
_turns = threading.BoundedSemaphore(INSPECTIONS)
_IMAGE_NAMES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
# Control bytes a text file does not contain (tab, newlines and form feed are fine).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Characters a name never shows: controls (CR, LF: a header split), format characters
# (U+202E turns "evil\u202etxt.exe" into "evilexe.txt" on screen; zero-width ones), and
# line and paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}


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
    """The uploaded file's name as shown: its last path part, printable (no controls,
    format characters or separators; runs of whitespace one space), at most 200."""
    text = str(name or "")
    text = PurePath(text.replace("\\", "/")).name
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE
    )
    text = " ".join(text.split())
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
        return _in_child(PDF, name, data)
    if _looks_like_image(data):
        return _in_child(IMAGE, name, data)
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


def _in_child(kind: str, name: str, data: bytes) -> Inspected:
    """A PDF or an image checked by conversations/inspecting.py in a process of its own."""
    seconds = float(settings.CHATSITE_ATTACHMENT_INSPECT_SECONDS)
    what = "PDF" if kind == PDF else "image"
    slow = (
        f"This {what} takes too long to read, or too much memory ({name}); refused. "
        "Attach a simpler or smaller file."
    )
    limits = {
        "cpu_seconds": max(1, int(seconds + 0.999)),
        "pdf_pages": int(settings.CHATSITE_ATTACHMENT_PDF_PAGES),
        "text_chars": int(settings.CHATSITE_ATTACHMENT_TEXT_CHARS),
        "pdf_stream_bytes": PDF_STREAM_BYTES,
        "image_pixels": int(settings.CHATSITE_ATTACHMENT_IMAGE_PIXELS),
        "image_side": int(settings.CHATSITE_ATTACHMENT_IMAGE_SIDE),
        "max_side": int(settings.CHATSITE_ATTACHMENT_IMAGE_MAX_SIDE),
    }
    header = json.dumps({"kind": kind, "name": name, "limits": limits}).encode() + b"\n"
    # A turn, or a refusal: a thread waits this long at most for another upload's check.
    if not _turns.acquire(timeout=seconds):
        raise ValidationError(
            f"The site is busy reading other files; attach {name} again in a moment."
        )
    try:
        # -I: no environment variables, no user site, not the current directory.
        done = subprocess.run(
            [sys.executable, "-I", inspecting.__file__],
            input=header + data,
            capture_output=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() has killed the child and waited for it
        raise ValidationError(slow) from None
    finally:
        _turns.release()
    line, _, stored = done.stdout.partition(b"\n")
    try:
        verdict = json.loads(line) if done.returncode == 0 else None
    except ValueError:
        verdict = None
    if not isinstance(verdict, dict) or len(stored) != verdict.get("size"):
        # Killed by its CPU limit (SIGXCPU), or out of memory before it could say so.
        raise ValidationError(slow)
    if "error" in verdict:
        raise ValidationError(str(verdict["error"]))
    return Inspected(
        kind=verdict["kind"],
        content_type=verdict["content_type"],
        data=data if kind == PDF else stored,
        text=verdict.get("text", ""),
        pages=verdict.get("pages"),
        width=verdict.get("width"),
        height=verdict.get("height"),
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
    older: bool = False  # an image past the request's most recent ones: left out


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
        elif vision and part.older:
            limit = settings.CHATSITE_ATTACHMENT_IMAGES_PER_REQUEST
            blocks.append(
                f"[Image {part.name} left out: only the {limit} most recent images are sent.]"
            )
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
