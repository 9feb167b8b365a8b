"""Attachments: upload (a chip comes back), remove a pending one, download one's file.

Files are never served under a public URL: the download answers the owner only (anyone
else gets the 404 of a file that does not exist), as a download with its stored type,
never rendered by the browser as a page.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from chatsite.errors import ActionRefused
from chatsite.throttle import throttled
from chatsite.types import account_of

from . import attachment_selectors, attachment_services, attachments

TEMPLATE = "conversations/attachments.html"
UPLOADS_PER_SECOND, UPLOADS_BURST = 2.0, 10


@require_POST
@login_required
@throttled("upload", rate=UPLOADS_PER_SECOND, burst=UPLOADS_BURST)
async def attachment_upload(request: HttpRequest) -> HttpResponse:
    """Each file checked (in a worker thread: PDFs and images cost CPU) and kept as a
    pending attachment; the chips of those accepted, and a sentence for each refused."""
    user = account_of(await request.auser())
    # Parsing the multipart body reads (and may copy) megabytes: not on the event loop.
    uploads = await sync_to_async(request.FILES.getlist, thread_sensitive=False)("file")
    chips = []
    errors = []
    if not uploads:
        errors.append("Choose a file to attach.")
    per_message = settings.CHATSITE_ATTACHMENTS_PER_MESSAGE
    if len(uploads) > per_message:
        errors.append(f"A message may carry {per_message} files at most; attach fewer.")
        uploads = []
    for upload in uploads:
        name = attachments.name_clean(upload.name)
        try:
            # Room first (a cheap read), then the CPU and the storage work in worker
            # threads, then the row in the database thread.
            await sync_to_async(attachment_services.attachment_room_check)(
                owner_id=user.pk, name=name, size=upload.size or 0
            )
            data = await sync_to_async(upload.read, thread_sensitive=False)()
            inspected = await sync_to_async(attachments.inspect, thread_sensitive=False)(
                name=name, data=data
            )
            stored = await sync_to_async(
                attachment_services.attachment_file_store, thread_sensitive=False
            )(owner_id=user.pk, data=inspected.data)
            chips.append(
                await sync_to_async(attachment_services.attachment_create)(
                    owner=user, name=name, inspected=inspected, stored=stored
                )
            )
        except ValidationError as exc:
            errors.append(" ".join(exc.messages))
        except ActionRefused as exc:
            errors.append(exc.user_message)
    # 422 when nothing was taken: htmx swaps it in (base.html's responseHandling).
    status = 422 if errors and not chips else 200
    return render(
        request, f"{TEMPLATE}#uploaded", {"chips": chips, "errors": errors}, status=status
    )


@require_POST
@login_required
def attachment_remove(request: HttpRequest, public_id: str) -> HttpResponse:
    """A pending attachment's chip closed: the file goes."""
    if not attachment_services.attachment_remove(
        owner=account_of(request.user), public_id=public_id
    ):
        raise Http404("No such file.")
    return HttpResponse("")


@require_GET
@login_required
async def attachment_download(request: HttpRequest, public_id: str) -> FileResponse:
    """The owner's file, as a download (a chip's link)."""
    user = await request.auser()
    row = await sync_to_async(attachment_selectors.attachment_get)(user=user, public_id=public_id)
    if row is None:
        raise Http404("No such file.")
    # Opened in a worker thread: storage may be a bucket across the network.
    handle = await sync_to_async(row.file.open, thread_sensitive=False)("rb")
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=row.name,
        content_type=row.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
