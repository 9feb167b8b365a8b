from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from conversations.grouping import sidebar_sections as _sidebar_sections
from conversations.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    # Safe because render_markdown's output went through the nh3 allow-list.
    return mark_safe(render_markdown(text or ""))  # noqa: S308


@register.filter
def answer_parts(message: Any) -> tuple[str, str]:
    """(finished blocks, growing tail) of an answer: a streaming snapshot sets the split."""
    split = getattr(message, "stream_split", None)
    if split is not None:
        return split
    return (message.content, "")


@register.filter
def sidebar_sections(conversations: Any) -> list[tuple[str, list[Any]]]:
    return _sidebar_sections(conversations)
