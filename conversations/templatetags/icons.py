"""Inline SVG icons: no icon font, no emoji (which renders blank without an emoji font),
no request of their own. Decorative: the button that holds one carries its name."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

# 24 by 24 strokes, drawn for this site. Each is one or more path "d" strings.
PATHS: dict[str, tuple[str, ...]] = {
    "menu": ("M4 6h16", "M4 12h16", "M4 18h16"),
    "plus": ("M12 5v14", "M5 12h14"),
    "more": ("M5 12h.01", "M12 12h.01", "M19 12h.01"),
    "close": ("M6 6l12 12", "M18 6L6 18"),
    "copy": ("M9 9h10v11H9z", "M5 15V4h11"),
    "regenerate": ("M20 11a8 8 0 1 0-2.3 5.7", "M20 5v6h-6"),
    "model": ("M12 3l8 4.5v9L12 21l-8-4.5v-9z", "M12 12l8-4.5", "M12 12v9", "M12 12L4 7.5"),
    "edit": ("M4 20h4L19 9l-4-4L4 16z", "M14 6l4 4"),
    "thumb-up": (
        "M7 11v9H4v-9z",
        "M7 11l4-8a2 2 0 0 1 2.5 2.5L13 10h6a2 2 0 0 1 2 2.3l-1.3 6A2 2 0 0 1 17.7 20H7",
    ),
    "thumb-down": (
        "M7 13V4H4v9z",
        "M7 13l4 8a2 2 0 0 0 2.5-2.5L13 14h6a2 2 0 0 0 2-2.3l-1.3-6A2 2 0 0 0 17.7 4H7",
    ),
    "flag": ("M5 21V4", "M5 4h11l-2 4 2 4H5"),
    "send": ("M12 19V5", "M6 11l6-6 6 6"),
    "stop": ("M7 7h10v10H7z",),
    "pin": ("M9 4h6l-1 5 3 3H7l3-3z", "M12 12v8"),
    "archive": ("M4 5h16v4H4z", "M5 9v10h14V9", "M10 13h4"),
    "trash": ("M4 7h16", "M9 7V4h6v3", "M6 7l1 13h10l1-13"),
    "download": ("M12 4v11", "M7 10l5 5 5-5", "M5 20h14"),
    "share": ("M12 15V4", "M7 8l5-4 5 4", "M5 12v8h14v-8"),
    "sliders": ("M4 7h10", "M18 7h2", "M4 17h4", "M12 17h8", "M14 5v4", "M8 15v4"),
    "paperclip": (
        "M20 11l-8.5 8.5a5 5 0 0 1-7-7L13 4a3.5 3.5 0 0 1 5 5l-8.5 8.5a2 2 0 0 1-3-3L14 7",
    ),
    "file": ("M6 3h8l4 4v14H6z", "M14 3v4h4"),
    "image": ("M4 5h16v14H4z", "M4 16l5-5 4 4 3-3 4 4", "M15 9h.01"),
    "chevron-left": ("M15 6l-6 6 6 6",),
    "chevron-right": ("M9 6l6 6-6 6",),
    "chevron-down": ("M6 9l6 6 6-6",),
    "settings": (
        "M12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6z",
        "M12 2v3",
        "M12 19v3",
        "M2 12h3",
        "M19 12h3",
        "M4.9 4.9l2.1 2.1",
        "M17 17l2.1 2.1",
        "M4.9 19.1L7 17",
        "M17 7l2.1-2.1",
    ),
    "logout": ("M10 5H5v14h5", "M14 8l4 4-4 4", "M18 12H9"),
    "shield": ("M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z",),
    "search": ("M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14z", "M20 20l-4-4"),
    "fold": ("M6 9l6 6 6-6",),
}


@register.simple_tag
def icon(name: str) -> SafeString:
    paths = "".join(format_html('<path d="{}"/>', d) for d in PATHS[name])
    # Presentation attributes, not style: the CSP allows them.
    return format_html(
        '<svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" '
        'stroke="currentColor" stroke-width="2" stroke-linecap="round" '
        'stroke-linejoin="round" aria-hidden="true" focusable="false">{}</svg>',
        SafeString(paths),
    )
