"""Files for the attachment tests, made here: PDFs written by hand (text pages, a flate
bomb), an encrypted one by pypdf, images by Pillow, a pixel bomb by editing a PNG's
header."""

from __future__ import annotations

import io
import struct
import zlib

import pypdf
from PIL import Image


def pdf(pages: list[str], *, bomb_bytes: int = 0) -> bytes:
    """A PDF with one line of text per page; with `bomb_bytes`, the first page's content
    stream is that many spaces flate-compressed (a few KB that expand to megabytes)."""
    objects: list[bytes] = []
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    font = 3 + 2 * count
    for i, text in enumerate(pages):
        content = 4 + 2 * i
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
                f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
            ).encode()
        )
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        if bomb_bytes and i == 0:
            packed = zlib.compress(stream + b" " * bomb_bytes, 9)
            objects.append(
                f"<< /Length {len(packed)} /Filter /FlateDecode >>\nstream\n".encode()
                + packed
                + b"\nendstream"
            )
        else:
            objects.append(
                f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream"
            )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _pdf_file(objects)


def _pdf_file(objects: list[bytes]) -> bytes:
    """A PDF file of these numbered objects (the first the catalog), with its xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def encrypted_pdf() -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf(["secret"]))))
    writer.encrypt("a password", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png(width: int = 4, height: int = 3, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 4, height: int = 3) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says it is width by height pixels (its CRC made right):
    decoding it would ask for all those pixels."""
    data = bytearray(png())
    # Signature (8), then the IHDR chunk: length (4), type (4), width, height, ...
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


def operator_bomb_pdf(pages: int = 100, operators: int = 400_000) -> bytes:
    """A few KB of PDF whose every page shares one content stream of `operators` cheap
    operators (`0 0 m`, flate-compressed) before a line of text: minutes of pure-Python
    CPU for a text extractor."""
    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (hi) Tj ET\n" + b"0 0 m\n" * operators, 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
        + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    )
    objects += [page] * pages
    return _pdf_file(objects)


def mpo(width: int = 40, height: int = 30) -> bytes:
    """A phone camera's JPEG as Pillow names it: MPO (a main picture and a second frame)."""
    out = io.BytesIO()
    first = Image.new("RGB", (width, height), (10, 120, 200))
    second = Image.new("RGB", (width, height), (200, 120, 10))
    first.save(out, "MPO", save_all=True, append_images=[second])
    return out.getvalue()
