"""An uploaded file to checked drafts: its private copy (upload_copy), a zip or a single
JSON file, which of the two formats it is, each conversation yielded as it is read
(import_drafts), and the whole file checked before anything is written (import_check).

Pure: nothing is written here (writing.py writes what import_drafts yields, after
import_check passed). Imported text is stored as it is and, like any model text, only
ever rendered through the sanitising markdown renderer or escaped.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from .chatgpt_format import _chatgpt_document
from .chatsite_format import _chatsite_document
from .reading import Draft, ImportRefused, _events, _Limits, _Source, _Tally

_COPY_IN_MEMORY = 1_000_000  # an upload's copy stays in memory up to this size


@dataclass
class ImportTotals:
    """What a checked file holds: the import's progress counts against these."""

    conversations: int = 0
    messages: int = 0


def upload_copy(upload: UploadedFile) -> IO[bytes]:
    """A private copy of an uploaded file, at most the import limit: the request's own
    file is gone when the response is sent, and a large import is written after that.
    The caller closes it."""
    limit = settings.CHATSITE_IMPORT_MAX_BYTES
    too_large = f"That file is larger than {limit // 1_000_000} MB."
    if upload.size is not None and upload.size > limit:
        raise ImportRefused(too_large)
    copy = tempfile.SpooledTemporaryFile(max_size=_COPY_IN_MEMORY)  # noqa: SIM115  # returned open
    size = 0
    for chunk in upload.chunks():
        size += len(chunk)
        if size > limit:
            copy.close()
            raise ImportRefused(too_large)
        copy.write(chunk)
    copy.seek(0)
    return copy


def import_check(upload: IO[bytes]) -> ImportTotals:
    """Read the whole file and check every field of it, or ImportRefused saying why
    not. Nothing is kept but the counts."""
    totals = ImportTotals()
    for draft in import_drafts(upload):
        totals.conversations += 1
        totals.messages += len(draft.messages)
        del draft  # not held while the next one is built
    return totals


def import_drafts(upload: IO[bytes]) -> Iterator[Draft]:
    """The conversations of an uploaded file (chatsite JSON or zip, ChatGPT's
    conversations.json), one at a time, each checked; ImportRefused at the first thing
    wrong. Deterministic: a file that passed import_check yields the same drafts again."""
    limits = _Limits.current()
    tally = _Tally(limits.conversations)
    upload.seek(0)
    archive = upload.read(4) == b"PK\x03\x04"
    upload.seek(0)
    drafts = (
        _zip_drafts(upload, tally, limits) if archive else _json_drafts(upload, "", tally, limits)
    )
    found = 0
    for draft in drafts:
        found += 1
        yield draft
        del draft  # memory holds the conversation being read, not the last one too
    if not found:
        raise ImportRefused(f"That {'archive' if archive else 'file'} holds no conversations.")


# What a damaged or hostile zip makes zipfile raise (ValueError: a negative seek, a name
# that is not UTF-8).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


def _zip_drafts(upload: IO[bytes], tally: _Tally, limits: _Limits) -> Iterator[Draft]:
    unreadable = "That file is not a readable zip archive."
    try:
        archive = zipfile.ZipFile(upload)
        entries = [i for i in archive.infolist() if i.filename.endswith(".json") and not i.is_dir()]
    except _ZIP_ERRORS as exc:
        raise ImportRefused(unreadable) from exc
    # Checked before inflating anything: a small zip must not unpack to gigabytes (and an
    # entry never inflates past the size it declares: zipfile stops there).
    if sum(i.file_size for i in entries) > limits.bytes:
        raise ImportRefused("That archive unpacks to more than the import limit.")
    if len(entries) > limits.conversations:
        raise ImportRefused("That archive holds too many files.")
    for info in entries:
        if info.flag_bits & 0x1:
            raise ImportRefused("That archive is encrypted.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ImportRefused("That archive uses a compression this site cannot read.")
    for info in entries:
        name = info.filename[:100]
        try:
            handle = archive.open(info)
        except _ZIP_ERRORS as exc:
            raise ImportRefused(unreadable) from exc
        with handle:
            try:
                # The same parser, fed as the entry inflates: nothing is unpacked whole.
                yield from _json_drafts(handle, name, tally, limits)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise ImportRefused(f"{name} in that archive is damaged.") from exc


def _json_drafts(stream: IO[bytes], entry: str, tally: _Tally, limits: _Limits) -> Iterator[Draft]:
    source = _Source(entry)
    events = _events(stream, source.file())
    event, _ = next(events)
    if event == "start_map":
        yield from _chatsite_document(events, source, tally, limits)
    elif event == "start_array":
        yield from _chatgpt_document(events, source, tally, limits)
    else:
        raise source.neither()
    next(events)  # the end: anything after the document is refused by the parser
