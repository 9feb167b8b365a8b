"""Process start and graceful shutdown under daphne.

daphne speaks no ASGI lifespan, but it runs the application inside Twisted's asyncio
reactor, whose system events are the process's start and stop:

* when the reactor runs, the generation supervisor starts (it beats for this process's
  answers and, at once, marks answers left streaming by a dead process as interrupted),
  and what the process built to get there is left out of garbage collection from then on
  (`heap_freeze`);
* before the reactor shuts down (SIGTERM or SIGINT), every answer still being written is
  cancelled and saved as interrupted; Twisted waits for that before exiting.

SIGINT needs help. Twisted installs its SIGINT handler only while SIGINT still has Python's
default handler. A process started with SIGINT ignored (a background job of a
non-interactive shell, `cmd &` in a script, passes that on to everything it starts, a CI
step included) kept ignoring it: the kernel discarded the signal, nothing was saved and
daphne ran on. So while the reactor starts, right after Twisted installs its handlers and
before the loop serves anything, SIGINT gets the reactor's handler too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

# What SIGINT may be set to when nobody chose a handler for it on purpose (a debugger's
# handler, or one installed from C, is left alone as Twisted leaves it alone).
_UNHANDLED = (signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler)


def install() -> bool:
    if "daphne.server" not in sys.modules:
        return False  # not under daphne: the supervisor starts with the first socket
    from twisted.internet import defer, reactor

    from conversations.streaming import supervisor

    def on_start() -> None:
        # Twisted fires "startup" just before the asyncio loop spins: start from inside it.
        reactor._asyncioEventloop.call_soon(supervisor.supervisor_ensure)  # type: ignore[attr-defined,unused-ignore]
        heap_freeze()

    def before_shutdown() -> defer.Deferred[int]:
        log.info("shutting down: saving answers still being written")
        return defer.Deferred.fromFuture(asyncio.ensure_future(supervisor.shutdown()))

    # "during startup" triggers run in order: Twisted's own (which installs its signal
    # handlers) was added when the reactor was made, so this one runs right after it.
    reactor.addSystemEventTrigger("during", "startup", sigint_like_sigterm, reactor)  # type: ignore[attr-defined,arg-type,unused-ignore]
    reactor.callWhenRunning(on_start)  # type: ignore[attr-defined,unused-ignore]
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined,arg-type,unused-ignore]
    return True


def heap_freeze() -> int:
    """Leave every object alive now out of garbage collection; how many were left out.

    Modules, settings, templates and URL patterns live as long as the process, and a
    full collection walked them all again (about 200,000 objects): under 50 streaming
    answers one took 113 ms, a pause for every stream at once. After this it walks what
    came later (about 50,000). Collect first, so that garbage of the start is freed
    rather than kept."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def sigint_like_sigterm(reactor: Any) -> bool:
    """Make SIGINT stop the reactor gracefully, as SIGTERM does, whatever the process
    inherited. True when this changed SIGINT's handler."""
    if threading.current_thread() is not threading.main_thread():
        return False  # only the main thread may set handlers (runserver's autoreloader)
    if signal.getsignal(signal.SIGTERM) != reactor.sigTerm:
        return False  # daphne was told not to handle signals: neither do we
    current = signal.getsignal(signal.SIGINT)
    if current == reactor.sigInt or current not in _UNHANDLED:
        return False
    if current == signal.SIG_IGN:
        log.info("SIGINT was ignored by the parent process: it now stops the site gracefully")
    signal.signal(signal.SIGINT, reactor.sigInt)
    return True
