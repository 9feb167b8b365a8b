"""`python -m chatsite.serve [daphne's arguments]`: daphne on uvloop.

daphne makes its event loop when `daphne.server` is imported, with asyncio's policy: the
policy is set first. uvloop runs the same Twisted reactor and the same application with a
loop written in C (the loop itself was 14-22% of a busy process; README, Performance).
`CHATSITE_UVLOOP=0` keeps asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import os


def main() -> None:
    if os.environ.get("CHATSITE_UVLOOP", "1") != "0":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface  # imports daphne.server: after the policy

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
