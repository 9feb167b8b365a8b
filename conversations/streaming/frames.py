"""The frame protocol: who listens where, what travels on the channel layer, and in what
order a page may show it. Pure: no Django, no I/O.

Groups: every socket of a conversation listens to its conversation's group, every socket
of a user to the user's group, and to its session's group (signing out closes it).

Messages on the channel layer (their `type` picks the consumer's handler):

* `chat.frame`: HTML for a page. A frame of one answer carries the answer's id and a
  sequence number: 0 for the announcement of the answer, then 1, 2, … for each frame the
  answer publishes; `final` frames carry the whole message in its final state. A frame
  about the conversation (a title, a version switch, a deletion) carries id 0.
* `chat.snapshot`: an answer's text so far and the sequence number it is current to, sent
  to one socket that asked for it (`generation.snapshot`).
* `generation.stop` / `generation.snapshot`: to the channel of a running answer.
* `session.end`: the socket says why and closes for good (suspended, signed out).

`FrameOrder` is what a socket does with them, so that a page never shows text twice or
out of place: frames of an answer it is waiting for a snapshot of are held and only those
newer than the snapshot are sent; a gap in the numbers means a frame went missing on the
way (a reader that fell behind, Redis restarting), and the page is healed with a snapshot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

FRAME = "chat.frame"
SNAPSHOT = "chat.snapshot"
STOP = "generation.stop"
SNAPSHOT_REQUEST = "generation.snapshot"
SESSION_END = "session.end"

# A final frame published by someone other than the answer itself (the supervisor, for
# an answer whose process died): numbered past anything the answer could have sent.
BEYOND_ANY_FRAME = 1 << 62

# Close codes a page understands (htmx's websocket extension does not reconnect on them).
CLOSE_SIGNED_OUT = 4401
CLOSE_SUSPENDED = 4403
CLOSE_GONE = 4404
CLOSE_TOO_MANY = 4429


# --- groups -------------------------------------------------------------------------------


def conversation_group(public_id_hex: str) -> str:
    return f"conversation.{public_id_hex}"


def user_group(user_id: int) -> str:
    """Every open tab of one user (sidebar markers and titles)."""
    return f"user.{user_id}"


def session_group(session_key: str | None) -> str:
    """Every open socket of one signed-in session (closed when it signs out). A digest,
    not the key: the key would let anyone who reads the channel layer sign in."""
    digest = hashlib.sha256((session_key or "").encode()).hexdigest()[:40]
    return f"session.{digest}"


# --- constructors -------------------------------------------------------------------------


def answer_frame(*, message_id: int, seq: int, html: str, final: bool = False) -> dict[str, Any]:
    return {"type": FRAME, "message_id": message_id, "seq": seq, "html": html, "final": final}


def side_frame(*, html: str, gone: bool = False) -> dict[str, Any]:
    """A frame about the conversation, not about one answer (never held for a snapshot).
    `gone`: the conversation was deleted, the socket closes after showing it."""
    frame = answer_frame(message_id=0, seq=0, html=html)
    if gone:
        frame["gone"] = True
    return frame


def snapshot(*, message_id: int, seq: int, html: str) -> dict[str, Any]:
    return {"type": SNAPSHOT, "message_id": message_id, "seq": seq, "html": html}


def snapshot_request(*, reply_to: str) -> dict[str, Any]:
    return {"type": SNAPSHOT_REQUEST, "reply_to": reply_to}


def stop_request() -> dict[str, Any]:
    return {"type": STOP}


def session_end(*, html: str, code: int) -> dict[str, Any]:
    return {"type": SESSION_END, "html": html, "code": code}


# --- order ----------------------------------------------------------------------------------


class Action(Enum):
    SEND = "send"  # show it now
    HOLD = "hold"  # kept until the snapshot it waits for arrives
    HEAL = "heal"  # a frame went missing before it: fetch a snapshot of this answer


@dataclass
class FrameOrder:
    """One socket's view of the answers it relays: which it awaits a snapshot of, and
    the number of the last frame it sent of each."""

    awaiting: int | None = None  # the answer a snapshot was asked of
    held: list[dict[str, Any]] = field(default_factory=list)
    last_seq: dict[int, int] = field(default_factory=dict)

    def await_snapshot(self, message_id: int, held: list[dict[str, Any]] | None = None) -> None:
        self.awaiting = message_id
        self.held = list(held or [])

    def end_wait(self) -> None:
        self.awaiting = None
        self.held = []

    def on_frame(self, frame: dict[str, Any]) -> Action:
        """What to do with a frame; SEND also records it as sent."""
        message_id = frame["message_id"]
        if self.awaiting == message_id:
            if not frame["final"]:
                self.held.append(frame)
                return Action.HOLD
            self.end_wait()  # a final frame is a whole message: it replaces everything
        elif message_id and not frame["final"] and self._missed_before(frame):
            return Action.HEAL
        if message_id:
            if frame["final"]:
                self.last_seq.pop(message_id, None)
            else:
                self.last_seq[message_id] = frame["seq"]
        return Action.SEND

    def on_snapshot(self, snap: dict[str, Any]) -> list[dict[str, Any]] | None:
        """None for a late snapshot (a final frame already said everything); else the
        snapshot is to be sent, then these held frames, in order, through on_frame."""
        if self.awaiting != snap["message_id"]:
            return None
        newer = [f for f in self.held if f["seq"] > snap["seq"]]
        self.end_wait()
        self.last_seq[snap["message_id"]] = snap["seq"]
        return newer

    def _missed_before(self, frame: dict[str, Any]) -> bool:
        # Frames of one answer are numbered from its announcement (0); a page that joined
        # later starts from its snapshot's number.
        last = self.last_seq.get(frame["message_id"])
        return bool(frame["seq"] != (0 if last is None else last + 1))
