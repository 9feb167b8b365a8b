"""django-axes, fitted to chatsite: the client address, and a limit per account and another
per address (axes itself compares every lockout parameter with one number).

Settings point here (AXES_CLIENT_IP_CALLABLE, AXES_HANDLER); the sign-up limit uses the
same client address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from django.http import HttpRequest

from . import selectors, services


def client_address(request: HttpRequest) -> str | None:
    """The address limits are counted against: REMOTE_ADDR as the server gives it.

    Never a header by itself: behind a proxy daphne's --proxy-headers puts the client's
    address there. IPv6 clients count per /64, the block one subscriber is usually given
    (otherwise a single host could change address for every try). None when unknown.
    """
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address)
    return str(address)


class SigninFailureHandler(AxesDatabaseHandler):
    """Axes' database handler (it holds across processes), with
    CHATSITE_LOGIN_FAILURES_PER_ACCOUNT and _PER_ADDRESS as two separate limits.

    Axes locks when get_failures() reaches AXES_FAILURE_LIMIT; here get_failures() is the
    number of limits reached, and AXES_FAILURE_LIMIT is 1.
    """

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        lockouts = selectors.signin_lockouts(
            username=get_client_username(request, credentials),
            address=request.axes_ip_address,
            now=request.axes_attempt_time,
        )
        return len(lockouts)

    def reset_user_attempts(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        # Axes would also clear the address's failures: then signing in to one's own
        # account would wipe what that address tried against everyone else's.
        username = get_client_username(request, credentials)
        return services.signin_failures_forget(username=username)
