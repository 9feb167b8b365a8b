"""Real Redis (and later PostgreSQL) servers from Debian's packages, started by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import ROOT, free_port


def ensure_package(command: str, *packages: str) -> str:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-debian-packages.sh"), command, *packages],
        check=True,
    )
    found = shutil.which(command) or f"/usr/bin/{command}"
    return found


@contextmanager
def redis_server(tmp_path: Path, port: int | None = None) -> Iterator[str]:
    """A redis-server of its own (on `port`, to restart one where clients expect it)."""
    binary = ensure_package("redis-server", "redis-server")
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
