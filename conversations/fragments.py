"""HTML fragments for websocket frames.

Whole elements are rendered by the same template partials as the page, so a message looks
the same whether it came with the page, an htmx swap or a frame. Each top-level element
carries an id and is swapped out-of-band by htmx's websocket extension.
"""

from __future__ import annotations

import re
from typing import Any

from django.template.loader import render_to_string
from django.utils.html import escape

from .message_selectors import MessageView
from .models import Conversation
from .rendering import plain_text

PAGE = "conversations/conversation.html"
SIDEBAR = "conversations/sidebar.html"


_FIRST_TAG = re.compile(r"<([a-z]+)\b")


def _out_of_band(html: str, *, user_frame: bool = False) -> str:
    """A partial as the page renders it, marked to replace its twin by id when it comes
    in a frame (and, for user-wide frames, to be dropped where the page lacks it)."""
    extra = " data-user-frame" if user_frame else ""
    return _FIRST_TAG.sub(rf'<\1{extra} hx-swap-oob="true"', html, count=1)


def message_html(item: MessageView, *, note: str = "", is_last: bool = False) -> str:
    """A whole message, as the page renders it."""
    context = {"item": item, "note": note, "is_last": is_last}
    return render_to_string(f"{PAGE}#message", context)


def message_final_html(item: MessageView) -> str:
    """An answer in its final state, and the composer unlocked."""
    return message_html(item, is_last=True) + composer_controls_html(streaming=False)


def message_list_html(messages: list[MessageView]) -> str:
    """The whole path of messages, replacing the list's content (versions switched)."""
    return render_to_string(f"{PAGE}#message_list", {"messages": messages})


def answer_growth_html(message_id: int, finished_html: str, tail_html: str, *, whole: bool) -> str:
    """A streaming answer's frame: finished blocks appended once, then the growing block:
    its whole content (`whole`, a new block), or the swaps that add to it (GrowingBlock).

    Its size and cost depend on the new text, never on the answer or the block.
    """
    html = ""
    if finished_html:  # rendering.render() of the finished blocks
        html += f'<div hx-swap-oob="beforeend:#message-{message_id}-blocks">{finished_html}</div>'
        html += announce_html(plain_text(finished_html))
    if whole:
        return (
            html + f'<div id="message-{message_id}-tail" hx-swap-oob="innerHTML">{tail_html}</div>'
        )
    return html + tail_html


def announce_html(text: str) -> str:
    return f'<div id="announcer" hx-swap-oob="innerHTML">{escape(text)}</div>' if text else ""


def message_note_html(message_id: int, note: str) -> str:
    """The status line of a streaming answer (e.g. "retrying in 2 s")."""
    return (
        f'<p id="message-{message_id}-note" class="message-note" role="status">{escape(note)}</p>'
    )


def message_append_html(item: MessageView) -> str:
    """A new message, appended to the list (its own id makes later swaps find it)."""
    return f'<div hx-swap-oob="beforeend:#messages">{message_html(item)}</div>'


def composer_controls_html(*, streaming: bool) -> str:
    return render_to_string(f"{PAGE}#composer_controls", {"streaming": streaming})


def feedback_html(*, error: str = "", accepted_key: str = "") -> str:
    context: dict[str, Any] = {"feedback_error": error, "accepted_key": accepted_key}
    return render_to_string(f"{PAGE}#feedback", context)


def conversation_header_html(conversation: Conversation) -> str:
    """The page header of a conversation whose title changed (its own tabs): the same
    heading as conversation.html's title_area, its class included (without it the new
    title was an unstyled h1 filling a phone's top bar)."""
    title = escape(conversation.display_title)
    return f'<h1 id="conversation-title" class="chat-title" hx-swap-oob="true">{title}</h1>'


def nav_title_html(conversation: Conversation) -> str:
    """Its sidebar entry, in every tab of the owner (dropped where the entry is not shown)."""
    title = escape(conversation.display_title)
    return (
        f'<span id="nav-title-{conversation.public_id}" hx-swap-oob="true" data-user-frame>'
        f"{title}</span>"
    )


def nav_live_html(public_id: Any, *, live: bool) -> str:
    """The sidebar's live marker of a conversation, on or off, in every tab of the owner."""
    html = render_to_string(
        "conversations/live_marker.html", {"public_id": public_id, "live": live}
    )
    return _out_of_band(html, user_frame=True)


def conversation_usage_html(usage: dict[str, int]) -> str:
    """The conversation's token total, after an answer reported its usage."""
    return _out_of_band(render_to_string(f"{PAGE}#usage_total", {"usage": usage}))


def conversation_gone_html() -> str:
    return render_to_string(f"{PAGE}#gone", {})


def nav_gone_html(conversation: Conversation) -> str:
    return f'<li id="nav-item-{conversation.public_id}" hx-swap-oob="delete" data-user-frame></li>'


def quota_notice_html(allowance: Any) -> str:
    """What is left of the user's quota, shown by the composer once it runs low."""
    text = allowance.text if allowance is not None and allowance.low else ""
    return _out_of_band(render_to_string(f"{PAGE}#quota_notice", {"quota_text": text}))


def session_end_html(text: str) -> str:
    """Sent to a tab just before its socket is closed for good (the user was suspended)."""
    return (
        f'<div id="composer-feedback" hx-swap-oob="true" class="feedback error" role="alert">'
        f"{escape(text)}</div>"
        '<div id="composer-controls" class="composer-controls" data-streaming="false" '
        'hx-swap-oob="true"></div>'
    )
