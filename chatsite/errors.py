"""The one application error: what a person asked for cannot be done (now).

Services raise it (or a subclass naming the case), and views and consumers show its
`user_message`, a sentence for the page, without knowing which case it was. Django's
ValidationError stays for a form's or a message's bad input.
"""

from __future__ import annotations


class ActionRefused(Exception):
    """Refused; `user_message` says why, `retry_after` (seconds) when waiting would help."""

    default_message = "That cannot be done right now."

    def __init__(self, user_message: str = "", *, retry_after: float | None = None) -> None:
        message = user_message or self.default_message
        super().__init__(message)
        self.user_message = message
        self.retry_after = retry_after
