"""Process start and graceful shutdown under daphne.

daphne speaks no ASGI lifespan, but it runs the application inside Twisted's asyncio
reactor, whose system events are the process's start and stop:

* when the reactor runs, the generation supervisor starts (it beats for this process's
  answers and, at once, marks answers left streaming by a dead process as interrupted);
* before the reactor shuts down (SIGTERM or SIGINT), every answer still being written is
  cancelled and saved as interrupted; Twisted waits for that before exiting.
"""

from __future__ import annotations

import asyncio
import logging
import sys

log = logging.getLogger(__name__)


def install() -> bool:
    if "daphne.server" not in sys.modules:
        return False  # not under daphne: the supervisor starts with the first socket
    from twisted.internet import defer, reactor

    from conversations import generation

    def on_start() -> None:
        # Twisted fires "startup" just before the asyncio loop spins: start from inside it.
        reactor._asyncioEventloop.call_soon(generation.supervisor_ensure)  # type: ignore[attr-defined,unused-ignore]

    def before_shutdown() -> defer.Deferred[int]:
        log.info("shutting down: saving answers still being written")
        return defer.Deferred.fromFuture(asyncio.ensure_future(generation.shutdown()))

    reactor.callWhenRunning(on_start)  # type: ignore[attr-defined,unused-ignore]
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined,arg-type,unused-ignore]
    return True
