"""Reading websocket frames (htmx out-of-band fragments) the way a page applies them."""

from __future__ import annotations

import re
from html.parser import HTMLParser

GROWTH = re.compile(
    r'(?:id="message-(\d+)-tail"|beforeend:#message-(\d+)-blocks"|beforebegin:#message-(\d+)-live-)'
)
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
    return any(
        message_id is None or int(a or b or c) == message_id for a, b, c in GROWTH.findall(frame)
    )


def text_of(frame: str, message_id: int) -> str:
    """The visible text of a message in a frame that carries the whole message."""
    text = element_text(frame, f"message-{message_id}-text")
    assert text is not None, frame
    return norm(text)


class Node:
    """An element of a tiny DOM: enough to apply htmx's out-of-band swaps as a page does."""

    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node | str] = []
        self.parent: Node | None = None

    def adopt(self, children: list[Node | str], at: int | None = None) -> None:
        for child in children:
            if isinstance(child, Node):
                child.parent = self
        at = len(self.children) if at is None else at
        self.children[at:at] = children

    def find(self, element_id: str) -> Node | None:
        for child in self.children:
            if isinstance(child, Node):
                if child.attrs.get("id") == element_id:
                    return child
                found = child.find(element_id)
                if found is not None:
                    return found
        return None

    def text(self) -> str:
        parts = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text())
        joined = "".join(parts)
        return f" {joined} " if self.tag in BLOCK else joined

    def ids(self) -> list[str]:
        out = []
        for child in self.children:
            if isinstance(child, Node):
                if child.attrs.get("id"):
                    out.append(str(child.attrs["id"]))
                out += child.ids()
        return out


BLOCK = {"p", "li", "tr", "td", "th", "div", "pre", "table", "tbody", "thead", "ul", "ol"}
BLOCK |= {f"h{n}" for n in range(1, 7)} | {"blockquote", "br", "hr"}


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#fragment", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].adopt([node])
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].adopt([Node(tag, dict(attrs))])

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].adopt([data])


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree.root


class Dom:
    """A page's elements, changed by frames the way htmx's websocket extension does:
    each top-level element of a frame is swapped out of band (`true`, `innerHTML`,
    `beforeend:#id`, `beforebegin:#id`, `delete`). A swap whose target is missing is
    recorded in `misses` (htmx would log it) and changes nothing."""

    def __init__(self, html: str = "") -> None:
        self.root = parse(html)
        self.misses: list[str] = []

    def apply(self, frame: str) -> None:
        for node in parse(frame).children:
            if not isinstance(node, Node):
                continue
            how = str(node.attrs.pop("hx-swap-oob", None) or "true")
            style, _, selector = how.partition(":")
            element_id = selector[1:] if selector else str(node.attrs.get("id") or "")
            target = self.root.find(element_id)
            if target is None or target.parent is None:
                self.misses.append(how + " " + element_id)
                continue
            parent = target.parent
            at = parent.children.index(target)
            if style == "true":
                parent.children[at] = node
                node.parent = parent
            elif style == "innerHTML":
                target.children = []
                target.adopt(node.children)
            elif style == "beforeend":
                target.adopt(node.children)
            elif style == "beforebegin":
                parent.adopt(node.children, at)
            elif style == "delete":
                del parent.children[at]
            else:
                raise AssertionError(f"a swap this page does not know: {how}")

    def text(self, element_id: str) -> str | None:
        node = self.root.find(element_id)
        return None if node is None else norm(node.text())


class PageView:
    """What a page shows of one answer after applying frames in order."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        self.dom = Dom(
            f'<div id="message-{message_id}-text"><div id="message-{message_id}-blocks"></div>'
            f'<div id="message-{message_id}-tail"></div></div><div id="announcer"></div>'
        )

    def apply(self, frame: str) -> None:
        whole = parse(frame).find(f"message-{self.message_id}-text")
        if whole is not None:
            target = self.dom.root.find(f"message-{self.message_id}-text")
            assert target is not None
            target.children = []
            target.adopt(whole.children)
            return
        self.dom.apply(frame)

    @property
    def text(self) -> str:
        return self.dom.text(f"message-{self.message_id}-text") or ""


def view_of(frames: list[str], message_id: int) -> str:
    view = PageView(message_id)
    for frame in frames:
        view.apply(frame)
    return view.text
