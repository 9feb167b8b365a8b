"""HTML fragments for websocket frames.

Whole elements are rendered by the same template partials as the page, so a message looks
the same whether it came with the page, an htmx swap or a frame. Each top-level element
carries an id and is swapped out-of-band by htmx's websocket extension.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string
from django.utils.html import escape

from .models import Message

PAGE = "conversations/conversation.html"


def message_html(message: Message, *, note: str = "", is_last: bool = False) -> str:
    context = {"message": message, "note": note, "is_last": is_last}
    return render_to_string(f"{PAGE}#message", context)


def message_note_html(message_id: int, note: str) -> str:
    """The status line of a streaming answer (e.g. "retrying in 2 s")."""
    return (
        f'<p id="message-{message_id}-note" class="message-note" role="status">{escape(note)}</p>'
    )


def message_append_html(message: Message) -> str:
    """A new message, appended to the list (its own id makes later swaps find it)."""
    return f'<div hx-swap-oob="beforeend:#messages">{message_html(message)}</div>'


def text_delta_html(message_id: int, delta: str) -> str:
    """New text for a streaming answer, appended in place: the cost is the delta's size."""
    return f'<div hx-swap-oob="beforeend:#message-{message_id}-text">{escape(delta)}</div>'


def composer_controls_html(*, streaming: bool) -> str:
    return render_to_string(f"{PAGE}#composer_controls", {"streaming": streaming})


def feedback_html(*, error: str = "", accepted_key: str = "") -> str:
    context: dict[str, Any] = {"feedback_error": error, "accepted_key": accepted_key}
    return render_to_string(f"{PAGE}#feedback", context)
