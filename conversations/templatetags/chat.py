from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from accounts.quotas import estimate_tokens
from conversations.grouping import sidebar_sections as _sidebar_sections
from conversations.message_selectors import MessageView
from conversations.rendering import render_markdown

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
def answer_blocks(item: MessageView) -> SafeString:
    """The finished blocks of an answer: as its generation rendered them, when it did."""
    if item.body_html is not None:
        # Safe: rendering.render()'s output, block by block.
        return mark_safe(item.body_html)  # noqa: S308
    return markdown(answer_parts(item)[0])


@register.filter
def answer_tail(item: MessageView) -> SafeString:
    """The growing block of a streaming answer, as its generation shows it (the frames
    that follow add to exactly this), else the tail's text rendered."""
    if item.tail_html is not None:
        # Safe: GrowingBlock's HTML is nh3-cleaned pieces inside its own markup.
        return mark_safe(item.tail_html)  # noqa: S308
    return markdown(answer_parts(item)[1])


@register.filter
def sidebar_sections(conversations: Any) -> list[tuple[str, list[Any]]]:
    return _sidebar_sections(conversations)


@register.filter
def usage_text(message: Any) -> str:
    """An answer's tokens as the upstream reported them; when it reported none (llama.cpp
    never does in streams), an estimate from the text, marked with "≈": never a 0 that
    reads as nothing."""
    if message.role != "assistant" or message.status == "streaming":
        return ""
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        prompt = "?" if message.prompt_tokens is None else f"{message.prompt_tokens:,}"
        completion = "?" if message.completion_tokens is None else f"{message.completion_tokens:,}"
        return f"{prompt} in · {completion} out"
    if not message.content:
        return ""
    return f"≈ {estimate_tokens(len(message.content)):,} tokens out"
