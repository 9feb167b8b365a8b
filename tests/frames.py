"""Reading websocket frames (htmx out-of-band fragments) the way a page applies them."""

from __future__ import annotations

import re
from html.parser import HTMLParser

GROWTH = re.compile(r'(?:id="message-(\d+)-tail"|beforeend:#message-(\d+)-blocks")')
VOID = {"br", "hr", "img", "input", "meta", "link"}


def norm(text: str) -> str:
    return " ".join(text.split())


class _Text(HTMLParser):
    """Text inside the element with a given id (or inside every oob element with a given
    hx-swap-oob value)."""

    def __init__(self, element_id: str | None = None, oob: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.element_id, self.oob = element_id, oob
        self.depth = 0
        self.parts: list[str] = []
        self.found = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            return
        if self.depth:
            self.depth += 1
            return
        values = dict(attrs)
        if (self.element_id and values.get("id") == self.element_id) or (
            self.oob and values.get("hx-swap-oob") == self.oob
        ):
            self.depth = 1
            self.found = True

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in VOID:
            self.depth -= 1
            if not self.depth:
                self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def element_text(html: str, element_id: str) -> str | None:
    parser = _Text(element_id=element_id)
    parser.feed(html)
    return "".join(parser.parts) if parser.found else None


def oob_text(html: str, oob: str) -> str | None:
    parser = _Text(oob=oob)
    parser.feed(html)
    return "".join(parser.parts) if parser.found else None


def is_growth(frame: str, message_id: int | None = None) -> bool:
    return any(message_id is None or int(a or b) == message_id for a, b in GROWTH.findall(frame))


def text_of(frame: str, message_id: int) -> str:
    """The visible text of a message in a frame that carries the whole message."""
    text = element_text(frame, f"message-{message_id}-text")
    assert text is not None, frame
    return norm(text)


class PageView:
    """What a page shows of one answer after applying frames in order."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        self.blocks = ""
        self.tail = ""

    def apply(self, frame: str) -> None:
        whole = element_text(frame, f"message-{self.message_id}-text")
        if whole is not None:
            self.blocks = element_text(frame, f"message-{self.message_id}-blocks") or ""
            self.tail = element_text(frame, f"message-{self.message_id}-tail") or ""
            return
        added = oob_text(frame, f"beforeend:#message-{self.message_id}-blocks")
        if added is not None:
            self.blocks += " " + added
        tail = element_text(frame, f"message-{self.message_id}-tail")
        if tail is not None:
            self.tail = tail

    @property
    def text(self) -> str:
        return norm(self.blocks + " " + self.tail)


def view_of(frames: list[str], message_id: int) -> str:
    view = PageView(message_id)
    for frame in frames:
        view.apply(frame)
    return view.text
