"""Values from browsers and sockets, parsed once, strictly.

An id arrives as a JSON number, a string from a form, or something hostile: a float like
1e999 (infinity), a bool, a number too large for the database's integer. Each would
otherwise surface as an OverflowError or a database error deep in a query.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

MAX_PK = 2**63 - 1  # the largest value of a 64-bit signed integer column


def pk_from(value: Any) -> int | None:
    """A positive database id, or None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and 0 < len(value.strip()) <= 19 and value.strip().isascii():
        if not value.strip().isdigit():
            return None
        number = int(value.strip())
    else:
        return None
    return number if 0 < number <= MAX_PK else None


def aware_from(value: Any) -> datetime | None:
    """An ISO 8601 moment with its offset, representable in UTC, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return None
        return moment.astimezone(UTC)  # OverflowError near year 1 or 9999
    except (ValueError, OverflowError):
        return None


def uuid_from(value: Any) -> uuid.UUID | None:
    """A UUID from a form field or a frame, or None for anything else."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None
