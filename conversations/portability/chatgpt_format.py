"""ChatGPT's conversations.json read into drafts: a list of conversations, each a tree of
nodes ("mapping") linked both ways (parent, children). Only user and assistant text is
kept; other nodes (system, tools, hidden) are skipped and their children re-attached to
the nearest kept ancestor. Branches (several children) become versions. Pure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from ..models import Message
from .reading import (
    Draft,
    DraftMessage,
    ImportRefused,
    _describe,
    _Events,
    _flag,
    _identifier,
    _keys,
    _Limits,
    _moment,
    _opens,
    _past,
    _Source,
    _Tally,
    _text,
    _value,
)


@dataclass(slots=True)
class _Node:
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    role: str | None = None
    text: str = ""
    hidden: bool = False
    model: str = ""
    created_at: datetime | None = None
    kept: bool = False
    text_field: str = "message.content.text"  # where the text came from, for a refusal


def _chatgpt_document(
    events: _Events, source: _Source, tally: _Tally, limits: _Limits
) -> Iterator[Draft]:
    number = 0
    while True:
        event, value = next(events)
        if event == "end_array":
            return
        number += 1
        tally.conversation()
        if event != "start_map":
            # Read past it first: a list nested absurdly deep is refused as such.
            found = _describe(_past(events, event) if event == "start_array" else value)
            if number == 1:
                raise source.neither()
            where = source.conversation(number)
            raise ImportRefused(f"{where} is not a ChatGPT conversation, but {found}.")
        # Without a message tree the first one says the file is no ChatGPT export at all.
        neither = source.neither() if number == 1 else None
        draft = _chatgpt_conversation(events, source.conversation(number), limits, neither)
        if draft is not None:
            yield draft


def _chatgpt_conversation(
    events: _Events, where: str, limits: _Limits, neither: ImportRefused | None
) -> Draft | None:
    draft = Draft(title="", model="")
    nodes: dict[str, _Node] | None = None
    current: str | None = None
    for key in _keys(events):
        if key == "mapping":
            if _opens(events, "start_map", where, "mapping"):
                nodes = _chatgpt_mapping(events, where, limits)
        elif key == "title":
            draft.title = _text(_value(events), where, "title", 200)
        elif key == "create_time":
            draft.created_at = _moment(_value(events), where, "create_time")
        elif key == "update_time":
            draft.updated_at = _moment(_value(events), where, "update_time")
        elif key == "current_node":
            current = _identifier(_value(events), where, "current_node")
        else:
            _value(events)
    if nodes is None:
        raise neither or ImportRefused(f"{where} has no message tree (mapping).")
    nearest = _chatgpt_walk(nodes, draft)
    if not draft.messages:
        return None
    draft.current = nearest.get(current) if current is not None else None
    return draft


def _chatgpt_mapping(events: _Events, where: str, limits: _Limits) -> dict[str, _Node]:
    nodes: dict[str, _Node] = {}
    references = 0
    for key in _keys(events):
        if len(nodes) >= limits.messages:
            raise ImportRefused(
                f"{where} has more than {limits.messages:,} messages; at most "
                f"{limits.messages:,} can be imported in one conversation."
            )
        at = f'{where}, node "{key[:40]}"'
        if key in nodes:
            raise ImportRefused(f"{at} appears twice.")
        _opens(events, "start_map", at, "the node", null=False)
        node = _Node()
        problem: str | None = None
        for name in _keys(events):
            if name == "parent":
                node.parent = _identifier(_value(events), at, "parent")
            elif name == "children":
                if not _opens(events, "start_array", at, "children"):
                    continue
                while True:
                    event, value = next(events)
                    if event == "end_array":
                        break
                    references += 1
                    # A tree of n nodes holds n - 1 links: past what the largest allowed
                    # tree holds, refuse at once rather than read (and walk) padding.
                    if references >= limits.messages:
                        raise ImportRefused(
                            f"{where}: its children lists name more messages than a "
                            f"conversation of at most {limits.messages:,} messages can hold."
                        )
                    if event != "string":
                        if event == "start_map" or event == "start_array":
                            value = _past(events, event)
                        found = _describe(value)
                        raise ImportRefused(f"{at}: children must list node ids, not {found}.")
                    node.children.append(value)
            elif name == "message":
                problem = _chatgpt_message(events, at, node)
            else:
                _value(events)
        if node.role in (Message.Role.USER, Message.Role.ASSISTANT):
            if problem:
                raise ImportRefused(problem)
            node.kept = bool(node.text.strip()) and not node.hidden
        if node.kept and len(node.text) > limits.chars:
            raise ImportRefused(
                f"{at}: {node.text_field} is longer than {limits.chars:,} characters."
            )
        if not node.kept:
            node.text = ""  # tool output and the like: not kept, not held
        nodes[key] = node
    if references > max(len(nodes) - 1, 0):
        raise ImportRefused(
            f"{where}: its children lists name {references:,} messages, more than a tree "
            f"of {len(nodes):,} messages can hold."
        )
    return nodes


def _chatgpt_message(events: _Events, at: str, node: _Node) -> str | None:
    """Fill the node from its message. Returns what is wrong with the content's shape,
    which matters only if the node is a user's or assistant's (tools' content varies)."""
    if not _opens(events, "start_map", at, "message"):
        return None
    problem: str | None = None
    texts: list[str] = []
    images = 0
    has_parts = False
    text = ""
    for name in _keys(events):
        if name == "author":
            if _opens(events, "start_map", at, "message.author"):
                for inner in _keys(events):
                    if inner == "role":
                        node.role = _text(_value(events), at, "message.author.role", 64) or None
                    else:
                        _value(events)
        elif name == "content":
            if not _opens(events, "start_map", at, "message.content"):
                continue
            for inner in _keys(events):
                if inner == "parts":
                    event, value = next(events)
                    if event == "start_array":
                        has_parts = True
                        while True:
                            event, value = next(events)
                            if event == "end_array":
                                break
                            if event == "string":
                                texts.append(value)
                            elif event == "start_map":
                                images += 1  # an image or a file: a marker, not its data
                                _past(events, event)
                            elif event == "start_array":
                                _past(events, event)  # anything else is no text
                    elif event != "null":
                        if event == "start_map":
                            value = _past(events, event)
                        found = _describe(value)
                        problem = f"{at}: message.content.parts must be a list, not {found}."
                elif inner == "text":
                    value = _value(events)
                    if isinstance(value, str):
                        text = value
                    elif value is not None:
                        found = _describe(value)
                        problem = f"{at}: message.content.text must be text, not {found}."
                else:
                    _value(events)
        elif name == "metadata":
            if _opens(events, "start_map", at, "message.metadata"):
                for inner in _keys(events):
                    if inner == "model_slug":
                        slug = _text(_value(events), at, "message.metadata.model_slug", 10_000)
                        node.model = slug[:200]
                    elif inner == "is_visually_hidden_from_conversation":
                        node.hidden = _flag(_value(events), at, f"message.metadata.{inner}")
                    else:
                        _value(events)
        elif name == "create_time":
            node.created_at = _moment(_value(events), at, "message.create_time")
        else:
            _value(events)
    if has_parts:
        text = "\n\n".join(t for t in texts if t) + ("\n\n[image]" * images if images else "")
        node.text_field = "message.content.parts"
    node.text = text.replace("\x00", "") if "\x00" in text else text
    return problem


def _chatgpt_walk(nodes: dict[str, _Node], draft: Draft) -> dict[str, str | None]:
    """Breadth first from the roots (parents before children), each node once: linear in
    the nodes and links, and a cycle cannot loop. Returns each node's nearest kept
    ancestor (or itself)."""
    roots = [k for k, node in nodes.items() if node.parent is None or node.parent not in nodes]
    queue: deque[tuple[str, str | None]] = deque((root, None) for root in roots)
    nearest: dict[str, str | None] = {}
    while queue:
        key, ancestor = queue.popleft()
        if key in nearest:
            continue
        node = nodes[key]
        if node.kept and node.role is not None:
            assistant = node.role == Message.Role.ASSISTANT
            draft.messages.append(
                DraftMessage(
                    key=key,
                    parent=ancestor,
                    role=node.role,
                    content=node.text,
                    model=node.model if assistant else "",
                    created_at=node.created_at,
                )
            )
            if assistant and not draft.model:
                draft.model = node.model
            ancestor = key
        nearest[key] = ancestor
        queue.extend((c, ancestor) for c in node.children if c in nodes and c not in nearest)
    return nearest
