from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from conversations.grouping import sidebar_sections as _sidebar_sections
from conversations.rendering import render_markdown
from conversations.selectors import MessageView

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    # Safe because render_markdown's output went through the nh3 allow-list.
    return mark_safe(render_markdown(text or ""))  # noqa: S308


@register.filter
def answer_parts(item: MessageView) -> tuple[str, str]:
    """(finished blocks, growing tail) of an answer: a streaming snapshot sets the split."""
    return item.split if item.split is not None else (item.message.content, "")


@register.filter
def sidebar_sections(conversations: Any) -> list[tuple[str, list[Any]]]:
    return _sidebar_sections(conversations)
